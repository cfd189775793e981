"""TCP connections: read timeouts, the per-address cap, the descriptor limit.

Attackers here come from 127.0.0.2 (any 127/8 address is the local host), so that the
probes from 127.0.0.1 count as another client address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
from pathlib import Path

import aiohttp
import pytest

from .conftest import ServerFactory
from .raw import POLL_PATH, RawSocket, rss_bytes, settle_fds
from .services import eventually
from .support import Server

ATTACKER = "127.0.0.2"
#: Generous: how long a test waits for the server to close a connection.
CLOSE_WAIT = 10.0


class Conn:
    """A raw TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: Server, source: str = ATTACKER) -> Conn:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_by_server(self, timeout: float = CLOSE_WAIT) -> bytes:
        """Wait for the server to close the connection; return what it sent before."""
        received = b""
        async with asyncio.timeout(timeout):
            try:
                while chunk := await self.reader.read(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        return received

    def close(self) -> None:
        self.writer.transport.abort()


def request_head(server: Server, method: str, path: str, **headers: str) -> bytes:
    host = server.url.removeprefix("http://")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(conn: Conn) -> tuple[int, bytes]:
    head = await conn.reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await conn.reader.readexactly(length)


async def polling_session(server: Server) -> str:
    async with aiohttp.ClientSession(server.url) as http, http.get(POLL_PATH) as r:
        return str(json.loads((await r.text())[1:])["sid"])


# -- timeouts -------------------------------------------------------------------------------


async def test_idle_and_half_sent_heads_are_closed_after_the_header_timeout(
    start_server: ServerFactory,
) -> None:
    server = await start_server("--header-timeout", "0.5", "--ping-interval", "1")
    sid = await polling_session(server)
    idle = await Conn.open(server)
    half = await Conn.open(server)
    await half.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    kept = await Conn.open(server)
    await kept.send(request_head(server, "GET", "/healthz"))
    assert (await read_response(kept))[0] == 200
    # Answered and kept alive; then idle, it is closed like the others.
    assert await idle.closed_by_server() == b""
    assert await half.closed_by_server() == b""
    assert await kept.closed_by_server() == b""
    # A request in time is answered as always, even when answering takes longer than the
    # header timeout: this long-poll waits for the first ping, a second away.
    prompt = await Conn.open(server, "127.0.0.1")  # the session's own address
    await prompt.send(request_head(server, "GET", f"{POLL_PATH}&sid={sid}"))
    assert await read_response(prompt) == (200, b"2")
    prompt.close()


async def test_a_body_that_does_not_arrive_in_time_is_cut_off(start_server: ServerFactory) -> None:
    server = await start_server("--body-timeout", "0.5")
    sid = await polling_session(server)
    # A polling POST, whose body chatapp reads itself.
    slow = await Conn.open(server, "127.0.0.1")  # the session's own address
    await slow.send(
        request_head(server, "POST", f"{POLL_PATH}&sid={sid}", Content_Length="1000") + b"40"
    )
    assert await slow.closed_by_server() == b""
    # The cut-off polling request ended its session.
    async with aiohttp.ClientSession(server.url) as http, http.get(f"{POLL_PATH}&sid={sid}") as r:
        assert r.status == 400
    log = server.log()
    assert (
        "from 127.0.0.1: the body of POST /socket.io/ did not arrive within --body-timeout (0.5 s)"
        in log
    )
    # A body nobody reads (answered 405 at once) is not waited for at all.
    ignored = await Conn.open(server)
    await ignored.send(request_head(server, "POST", "/api/rooms", Content_Length="1000"))
    assert (await read_response(ignored))[0] == 405
    assert await ignored.closed_by_server() == b""


# -- connections per address ----------------------------------------------------------------


async def served(server: Server, source: str = ATTACKER) -> bool:
    """Whether a new connection from ``source`` is served (False: refused with 503)."""
    conn = await Conn.open(server, source)
    try:
        await conn.send(request_head(server, "GET", "/healthz"))
        status, _ = await read_response(conn)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    finally:
        conn.close()
    assert status in (200, 503), status
    return status == 200


async def until_served(server: Server) -> None:
    """Wait (up to about 10 s) until a connection from the attacker's address is served."""
    for _ in range(200):
        if await served(server):
            return
        await asyncio.sleep(0.05)  # the server frees a slot when it sees the close: poll
    raise AssertionError("the address never got a connection slot back")


async def test_connections_past_the_per_address_limit_are_refused(
    start_server: ServerFactory,
) -> None:
    server = await start_server("--max-tcp-connections-per-ip", "4")
    connector = aiohttp.TCPConnector(local_addr=(ATTACKER, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        # Two websockets, which chatapp serves without aiohttp once they are open, and two
        # connections that send nothing: four from the attacker's address.
        sockets = [RawSocket(http), RawSocket(http)]
        for n, ws in enumerate(sockets):
            await ws.connect(server.url, {"name": f"ws{n}"})
        idle = [await Conn.open(server), await Conn.open(server)]
        # Every further connection from that address is refused at once.
        for _ in range(20):
            extra = await Conn.open(server)
            refusal = await extra.closed_by_server()
            assert refusal.startswith(b"HTTP/1.1 503 "), refusal
            assert refusal.endswith(b"too many connections from your address\n")
        # Other addresses are served; the counted connections too.
        assert await served(server, "127.0.0.1")
        assert (await sockets[1].call(1, "history", {}))["ok"] is True
        # A closed websocket frees its slot, and so does a closed connection.
        await sockets[0].close()
        await until_served(server)
        idle[0].close()
        await until_served(server)
        for conn in idle[1:]:
            conn.close()
        await sockets[1].close()
    log = server.log()
    assert "refusing connections from 127.0.0.2: 4 open (--max-tcp-connections-per-ip is 4)" in log
    assert log.count("refusing connections from") == 1  # one line per address and minute


# -- descriptors ----------------------------------------------------------------------------

#: The soft limit of open descriptors many systems start services with.
COMMON_SOFT_LIMIT = 1024


def common_soft_limit() -> None:
    """In the server's process, before it starts: the soft limit most systems default to."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (COMMON_SOFT_LIMIT, hard))


def open_file_limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise RuntimeError("no open-file limit in /proc")


def hard_limit_above(needed: int) -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit of open descriptors here is {hard}, under {needed}")
    return hard


async def test_the_descriptor_limit_is_raised_to_the_hard_limit(
    start_server: ServerFactory,
) -> None:
    hard = hard_limit_above(COMMON_SOFT_LIMIT + 1)
    server = await start_server(preexec_fn=common_soft_limit)
    assert server.proc is not None
    assert open_file_limits(server.proc.pid) == (hard, hard)
    assert f"raised the limit from {COMMON_SOFT_LIMIT} to {hard}" in server.log()


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``, as ``ss`` reports it (Send-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[2])


async def test_the_listen_backlog_holds_a_crowd_reconnecting_at_once(
    start_server: ServerFactory,
) -> None:
    # asyncio's default of 100 made the kernel drop the SYNs of a restarted server's
    # clients coming back together; they waited seconds to retry.
    server = await start_server()
    port = int(server.url.rsplit(":", 1)[1])
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert listen_backlog(port) == min(1024, somaxconn)


async def test_a_thousand_idle_connections_from_one_address_do_not_shut_out_others(
    start_server: ServerFactory, make_client
) -> None:
    # The attack as reported: 1100 connections that send nothing, from one address,
    # against a server started with the common soft limit of 1024 descriptors. They are
    # held open for the whole test (--header-timeout 60).
    attackers = 1100
    hard = hard_limit_above(2 * attackers)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds them all
    server = await start_server("--header-timeout", "60", preexec_fn=common_soft_limit)
    assert server.proc is not None
    conns: list[Conn] = []
    try:

        async def attack() -> None:
            with contextlib.suppress(TimeoutError, OSError):  # not even accepted
                conns.append(await asyncio.wait_for(Conn.open(server), 5))

        for _ in range(0, attackers, 100):
            await asyncio.gather(*(attack() for _ in range(100)))
        # Another address still gets pages, the API and Socket.IO.
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(server.url, timeout=timeout) as http:
            for path in ("/", "/r/team", "/api/rooms", "/healthz"):
                async with http.get(path) as r:
                    assert r.status == 200, path
        client = make_client()
        await client.connect(server.url, name="bystander")
        assert (await client.send("still here"))["ok"] is True
        # The attacker holds at most its share; the rest were refused and closed.
        fds = await settle_fds(server.proc.pid, 128 + 50)
        assert fds <= 128 + 50, f"{fds} descriptors open"
    finally:
        for conn in conns:
            conn.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "refusing connections from 127.0.0.2: 128 open" in server.log()


# -- polling bodies -------------------------------------------------------------------------


async def test_megabyte_polling_posts_are_refused_before_their_bodies_are_read(
    start_server: ServerFactory,
) -> None:
    # The reported attack, against the default limits: 300 polling POSTs from one address
    # that announce 1 MB each and send it in pieces. The per-address limit refuses all but
    # 128 connections; the polling body limit (--max-frame-bytes, 64 KiB: it fits chat
    # traffic, and clients are told it as maxPayload) refuses the POSTs on the others
    # before their bodies are read.
    server = await start_server()
    assert server.proc is not None
    connector = aiohttp.TCPConnector(local_addr=(ATTACKER, 0))  # the session's own address
    async with (
        aiohttp.ClientSession(server.url, connector=connector) as http,
        http.get(POLL_PATH) as r,
    ):
        opened = json.loads((await r.text())[1:])
    assert opened["maxPayload"] == 65536
    head = request_head(
        server, "POST", f"{POLL_PATH}&sid={opened['sid']}", Content_Length=str(1_000_000)
    )
    base = rss_bytes(server.proc.pid)
    conns = [await Conn.open(server) for _ in range(300)]

    async def refused() -> bool:
        return "refusing connections from 127.0.0.2: 128 open" in server.log()

    # The kernel completes a connect before the server accepts it (the backlog is 1024):
    # the heads go out once the server holds its 128, or it could answer and close the
    # first ones before it accepts the last, and never reach the limit.
    await eventually(refused, what="the per-address limit to refuse the rest")
    for conn in conns:
        await conn.send(head)
    # All of each body but its last byte: the requests stay open, as trickled ones do.
    body = b"4" * (1_000_000 - 1)
    for start in range(0, len(body), 65536):
        for conn in conns:
            if not conn.writer.is_closing():
                conn.writer.write(body[start : start + 65536])
        for conn in conns:
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()
    await until_read_by_server(server.port, conns)
    growth = rss_bytes(server.proc.pid) - base
    answers = [await answer(conn) for conn in conns]
    # Memory, not time: buffering those bodies would take 128 MB (300 MB without the
    # per-address limit); a connection holds at most aiohttp's read buffers.
    assert growth < 64 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB"
    # Refused: 503 (past the per-address limit) or 413, or reset after that answer (the
    # server reads nothing more, so the client's further sending resets the connection).
    assert set(answers) <= {503, 413, None}, answers
    log = server.log()
    assert "a polling request of 1000000 bytes from 127.0.0.2 is over --max-frame-bytes" in log
    assert log.count("is over --max-frame-bytes") == 1  # one line per address and minute


def tcp_queues(port: int) -> int:
    """Bytes in transit to the server on ``port``: not yet acknowledged by its kernel, or
    not yet read by the process (the queues of /proc/net/tcp)."""
    total = 0
    with open("/proc/net/tcp") as table:
        for row in list(table)[1:]:
            fields = row.split()
            local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
            tx, rx = (int(n, 16) for n in fields[4].split(":"))
            if remote == port:
                total += tx  # a client's socket
            elif local == port:
                total += rx  # the server's end
    return total


async def until_read_by_server(port: int, conns: list[Conn]) -> None:
    """Wait (up to 30 s) until the server has read everything the clients sent."""
    for _ in range(300):
        buffered = sum(c.writer.transport.get_write_buffer_size() for c in conns)
        if buffered + tcp_queues(port) == 0:
            return
        await asyncio.sleep(0.1)  # polling the kernel's queues: there is no event
    raise AssertionError("the server did not read what it was sent")


async def answer(conn: Conn) -> int | None:
    """The status the server answered on ``conn``; None if the connection was reset."""
    try:
        return (await read_response(conn))[0]
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    finally:
        conn.close()
