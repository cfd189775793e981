from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import engineio
import pytest
import socketio

from .services import Cleanup, after_servers, cluster, db, pg_url, redis_prefix, tcp_proxy
from .support import Client, Server

ServerFactory = Callable[..., Awaitable[Server]]
ClientFactory = Callable[..., Client]
#: Flags that lift the per-connection and per-address rate limits.
NO_RATE_LIMITS = (
    "--message-burst",
    "100000",
    "--message-rate",
    "100000",
    "--event-burst",
    "100000",
    "--event-rate",
    "100000",
    "--ip-burst",
    "10000000",
    "--ip-rate",
    "10000000",
)
# Fixtures for the tests that need Redis and PostgreSQL (tests/services.py).
__all__ = ["after_servers", "cluster", "db", "pg_url", "redis_prefix", "tcp_proxy"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
async def start_server(
    tmp_path: Path, after_servers: list[Cleanup]
) -> AsyncIterator[ServerFactory]:
    """Start ``python -m chatapp`` with extra flags; each is stopped and checked at the end.

    A server must exit 0 on SIGTERM and log no ERROR line or traceback, unless the test
    set ``allow_errors``.
    """
    servers: list[Server] = []

    async def start(*args: str, workdir: Path | None = None, **kw: object) -> Server:
        server = Server(workdir or tmp_path, *args, **kw)  # type: ignore[arg-type]
        servers.append(server)
        return await server.start()

    yield start
    # Stop them all before checking any, so that a failed check leaves no process behind.
    codes = await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)
    for server, rc in zip(servers, codes, strict=True):
        if isinstance(rc, BaseException):
            raise rc
        assert rc == 0 or server.allow_errors, f"server exited {rc}\n{server.log()}"
        if not server.allow_errors:
            assert not server.bad_log_lines(), server.log()


@pytest.fixture
def packet_json() -> Iterator[None]:
    """For tests that build the app in this process: ``json=`` sets a class attribute of
    both packet classes; undo it after the test."""
    saved = socketio.packet.Packet.json, engineio.packet.Packet.json
    yield
    socketio.packet.Packet.json, engineio.packet.Packet.json = saved


@pytest.fixture
async def server(start_server: ServerFactory) -> Server:
    """A server whose rate limits do not get in the way of tests that send a lot."""
    return await start_server(*NO_RATE_LIMITS)


@pytest.fixture
async def make_client(start_server: ServerFactory) -> AsyncIterator[ClientFactory]:
    # Depending on start_server makes clients close before any server stops.
    clients: list[Client] = []

    def make(**kw: object) -> Client:
        client = Client(**kw)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def require_service(available: bool, reason: str) -> None:
    """Skip a test needing an external service on a bare machine; fail under CI=true."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)
