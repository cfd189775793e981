"""The documented deployments, tested with the documented nginx configurations.

docs/deploy/nginx-*.conf are rendered here with only their ports swapped, and run by a real
nginx (Debian's package; .ci/test installs it) in front of real chatapp processes.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import socketio

from .conftest import require_service
from .services import StartCluster, eventually
from .support import ROOT, Client, Server

DOCS = ROOT / "docs" / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
INSTALLED = os.path.exists(NGINX)

#: nginx's own settings for a test run: everything in the test's directory, and a log of
#: which chatapp process served which client address.
MAIN_CONF = """
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_processes 1;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$remote_addr $upstream_addr $status';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    include {dir}/chatapp.conf;
}}
"""


def render(doc: str, port: int, backends: list[Server]) -> str:
    """The documented configuration with our ports: nothing else changes."""
    text = (DOCS / doc).read_text()
    text, listens = re.subn(r"listen 8080;", f"listen 127.0.0.1:{port};", text)
    servers = "".join(f"    server 127.0.0.1:{b.port};\n" for b in backends)
    text, upstreams = re.subn(r"(    server 127\.0\.0\.1:808\d;\n)+", servers, text)
    assert (listens, upstreams) == (1, 1), f"{doc} no longer has the expected shape"
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


StartNginx = Callable[[str, list[Server]], Awaitable[str]]


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[StartNginx]:
    require_service(INSTALLED, "nginx is not installed (apt-get install nginx)")
    procs: list[asyncio.subprocess.Process] = []
    workdir = tmp_path / "nginx"

    async def start(doc: str, backends: list[Server]) -> str:
        workdir.mkdir()
        port = free_port()
        (workdir / "chatapp.conf").write_text(render(doc, port, backends))
        user = "user root;" if os.geteuid() == 0 else ""
        (workdir / "nginx.conf").write_text(MAIN_CONF.format(dir=workdir, user=user))
        proc = await asyncio.create_subprocess_exec(
            NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-g", "daemon off;"
        )
        procs.append(proc)
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                assert proc.returncode is None, (workdir / "error.log").read_text()
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return f"http://127.0.0.1:{port}"
        raise AssertionError("nginx did not start listening")

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGQUIT)
            await asyncio.wait_for(proc.wait(), 10)
    if (workdir / "error.log").exists():
        errors = [
            line
            for line in (workdir / "error.log").read_text().splitlines()
            if "[error]" in line or "[emerg]" in line or "[crit]" in line
        ]
        assert not errors, "\n".join(errors)


@pytest.fixture
async def from_address() -> AsyncIterator[Callable[[str], aiohttp.ClientSession]]:
    """HTTP sessions whose connections leave from a given loopback address (127.0.0.x), so
    that nginx sees several client addresses."""
    sessions: list[aiohttp.ClientSession] = []

    def session(address: str) -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        sessions.append(s)
        return s

    yield session
    for s in sessions:
        await s.close()


def upstreams_by_client(log: Path) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        address, upstream, _status = line.split()
        if upstream != "-":
            seen.setdefault(address, set()).add(upstream)
    return seen


async def exchange(clients: list[Client]) -> None:
    """Everyone sends two messages; everyone gets all of them once, in id order."""

    async def send(i: int, client: Client) -> None:
        for n in range(2):
            assert (await client.send(f"{i}.{n}"))["ok"]

    await asyncio.gather(*(send(i, c) for i, c in enumerate(clients)))
    total = 2 * len(clients)
    for client in clients:
        await client.wait_for("message", count=total)
        assert client.message_ids() == list(range(1, total + 1))


async def test_sticky_sessions_carry_long_polling_across_processes(
    cluster: StartCluster,
    nginx: StartNginx,
    make_client: Callable[..., Client],
    from_address: Callable[[str], aiohttp.ClientSession],
    tmp_path: Path,
) -> None:
    servers = await cluster(2)
    url = await nginx("nginx-sticky.conf", servers)
    addresses = [f"127.0.0.{i}" for i in range(2, 10)]
    clients = [make_client(transports=["polling"], http_session=from_address(a)) for a in addresses]
    # And one that starts with long-polling and upgrades to a websocket.
    session = from_address("127.0.0.10")
    upgrading = make_client(transports=["polling", "websocket"], http_session=session)
    for i, client in enumerate([*clients, upgrading]):
        welcome = await client.connect(url, room="team", name=f"user{i}")
    assert len(welcome["users"]) == 9  # presence across both processes
    await exchange([*clients, upgrading])

    seen = upstreams_by_client(tmp_path / "nginx" / "access.log")
    # Each client address always reached the same process, and both processes had some.
    assert all(len(ups) == 1 for ups in seen.values()), seen
    assert {u for ups in seen.values() for u in ups} == {f"127.0.0.1:{s.port}" for s in servers}


async def test_websocket_only_needs_no_stickiness(
    cluster: StartCluster,
    nginx: StartNginx,
    make_client: Callable[..., Client],
    tmp_path: Path,
) -> None:
    servers = await cluster(2, "--transports", "websocket")
    url = await nginx("nginx-websocket.conf", servers)
    clients = [make_client(transports=["websocket"]) for _ in range(4)]
    for i, client in enumerate(clients):
        await client.connect(url, room="team", name=f"user{i}")
    await exchange(clients)
    # Round robin spread one client address over both processes (nginx logs a websocket
    # request when it ends).
    for client in clients:
        await client.close()
    log = tmp_path / "nginx" / "access.log"

    async def logged() -> bool:
        return len(log.read_text().splitlines()) >= len(clients)

    await eventually(logged, what="nginx to log the closed websockets")
    (ups,) = upstreams_by_client(log).values()
    assert ups == {f"127.0.0.1:{s.port}" for s in servers}

    # Long-polling would break without stickiness, so it is refused outright.
    polling = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await polling.connect(url, transports=["polling"], wait_timeout=5)
