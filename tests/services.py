"""Fixtures for tests that need the real Redis and PostgreSQL, and a TCP proxy to cut them.

``CHATAPP_TEST_REDIS_URL`` and ``CHATAPP_TEST_DATABASE_URL`` name the services (defaults:
the local ones). Each test gets its own Redis key prefix and its own PostgreSQL schema,
removed afterwards, so tests never see each other's data, even when run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from redis import asyncio as aioredis

from .support import Server

T = TypeVar("T")
REDIS_URL = os.environ.get("CHATAPP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get(
    "CHATAPP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def with_schema(url: str, schema: str) -> str:
    """``url`` whose connections keep history in ``schema`` (as documented in deploy.md)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_port(url: str, port: int) -> str:
    """``url`` pointed at 127.0.0.1:``port`` (a proxy in front of the real service)."""
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{port}"))


def service_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default


def _require(problem: str | None) -> None:
    from .conftest import require_service  # conftest imports these fixtures

    require_service(problem is None, problem or "")


async def _redis_available() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} is not reachable ({exc}); set CHATAPP_TEST_REDIS_URL"
    finally:
        await client.aclose()
    return None


async def _postgres_available() -> str | None:
    try:
        conn = await asyncpg.connect(DATABASE_URL, timeout=5)
    except Exception as exc:
        return (
            f"PostgreSQL at {DATABASE_URL} is not reachable ({exc}); set CHATAPP_TEST_DATABASE_URL"
        )
    await conn.close()
    return None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run set-up or clean-up on a private loop: these fixtures are synchronous so that
    parametrised fixtures can pick them with ``request.getfixturevalue``."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _delete_keys(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


Cleanup = Callable[[], Coroutine[Any, Any, None]]


@pytest.fixture
def after_servers() -> Iterator[list[Cleanup]]:
    """Clean-ups that must wait until every server of the test has stopped.

    ``start_server`` asks for this fixture, so pytest tears it down after the servers
    whatever order a test names its fixtures in: a schema dropped under a running server
    would make it log errors the test did not cause.
    """
    cleanups: list[Cleanup] = []
    yield cleanups
    for cleanup in reversed(cleanups):
        _run(cleanup())


@pytest.fixture
def redis_prefix(after_servers: list[Cleanup]) -> str:
    """A fresh Redis key prefix (also the fan-out channel's), deleted after the test."""
    _require(_run(_redis_available()))
    prefix = f"chatapp-test-{uuid.uuid4().hex[:12]}"
    after_servers.append(lambda: _delete_keys(prefix))
    return prefix


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``--db`` of each backend, not created yet: a SQLite file, a PostgreSQL schema
    (for the tests that every store must pass)."""
    if request.param == "sqlite":
        return str(tmp_path / "chat.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def pg_url(after_servers: list[Cleanup]) -> str:
    """A PostgreSQL URL whose history goes to a fresh schema, dropped after the test."""
    _require(_run(_postgres_available()))
    schema = f"chatapp_test_{uuid.uuid4().hex[:12]}"
    after_servers.append(lambda: _drop_schema(schema))
    return with_schema(DATABASE_URL, schema)


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 whose link to the service can be cut and restored.

    While cut it accepts connections and drops them at once, and it resets the ones
    open, which is what clients of a restarting or unreachable service see. Stalled, it
    keeps every connection and forwards nothing (a service that hangs). For Redis it
    can also *deafen* the open subscriber connections: they stay open and accept commands,
    but nothing published reaches them any more (a listener that died silently); and it
    can reset just those, leaving the way to Redis open.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.cut = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._subscribers: set[asyncio.StreamWriter] = set()  # their client sides
        self._deaf: set[asyncio.StreamWriter] = set()
        self._withheld = bytearray()
        self.stalled = False

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def sever(self) -> None:
        self.cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut = False

    def stall(self) -> None:
        """Forward nothing more either way, on open connections and new ones, and close
        none: a service that stopped answering (paused, or a network that drops
        everything), which only timeouts notice."""
        self.stalled = True

    def deafen_subscribers(self) -> int:
        """Stop delivering to the subscriber connections open now; return how many."""
        self._deaf |= self._subscribers
        return len(self._subscribers)

    def deafened(self) -> int:
        """How many deafened subscriber connections are still open."""
        return len(self._deaf)

    def subscribers(self) -> int:
        """How many subscriber connections are open."""
        return len(self._subscribers)

    def withheld(self, data: bytes) -> int:
        """How many times ``data`` was kept from deafened subscribers."""
        return bytes(self._withheld).count(data)

    def reset_subscribers(self) -> int:
        """Reset the subscriber connections open now, as Redis does to a client it kills
        (CLIENT KILL, output buffer limit) or a middlebox to a flow it forgot. The proxy
        stays up, so they can reconnect at once. Return how many."""
        subscribers = list(self._subscribers)
        for writer in subscribers:
            writer.transport.abort()
        return len(subscribers)

    async def close(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, client=writer),
                self._pipe(up_reader, writer, client=writer),
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
            self._subscribers.discard(writer)
            self._deaf.discard(writer)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        upstream = writer is not client
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if upstream and b"SUBSCRIBE" in data.upper():
                    self._subscribers.add(client)
                if not upstream and client in self._deaf:
                    self._withheld += data
                    continue
                if self.stalled:
                    continue
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[type[TcpProxy]]:
    """Start TcpProxy instances with ``await tcp_proxy(host, port).start()``; closed after."""
    proxies: list[TcpProxy] = []

    class Tracked(TcpProxy):
        async def start(self) -> TcpProxy:
            proxies.append(self)
            return await super().start()

    yield Tracked
    for proxy in proxies:
        await proxy.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Wait until ``check()`` holds, polling: for states no event announces (a heartbeat
    expiry, a readiness flip). Fails with ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def is_ready(server: Server) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/readyz") as resp:
        return resp.status == 200


StartCluster = Callable[..., Awaitable[list[Server]]]


@pytest.fixture
async def cluster(
    start_server: Callable[..., Awaitable[Server]],
    redis_prefix: str,
    pg_url: str,
    tcp_proxy: type[TcpProxy],
) -> AsyncIterator[StartCluster]:
    """Start ``n`` processes on their own ports sharing one Redis prefix and one schema.

    They are stopped before the prefix, the schema and any proxy a test made go away, so
    that they leave nothing behind (start_server still checks their exit and logs).
    """
    started: list[Server] = []

    async def start(
        n: int, *extra: str, redis_url: str = REDIS_URL, db: str = pg_url
    ) -> list[Server]:
        flags = (
            *("--db", db, "--redis-url", redis_url, "--redis-prefix", redis_prefix),
            *("--message-burst", "100000", "--message-rate", "100000"),
            *extra,
        )
        servers = list(await asyncio.gather(*(start_server(*flags) for _ in range(n))))
        started.extend(servers)

        async def ready() -> bool:
            # Receiving from Redis too: what one process emits reaches the others.
            return all([await is_ready(server) for server in servers])

        await eventually(ready, what="every process to be ready (/readyz)")
        return servers

    yield start
    codes = await asyncio.gather(*(server.stop() for server in started), return_exceptions=True)
    for rc in codes:
        if isinstance(rc, BaseException):
            raise rc
