"""TCP connections: read timeouts, the per-address cap, the descriptor limit.

Attackers here come from 127.0.0.2 (any 127/8 address is the local host), so that the
probes from 127.0.0.1 count as another client address.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from .conftest import ServerFactory
from .raw import POLL_PATH
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
    prompt = await Conn.open(server)
    await prompt.send(request_head(server, "GET", f"{POLL_PATH}&sid={sid}"))
    assert await read_response(prompt) == (200, b"2")
    prompt.close()


async def test_a_body_that_does_not_arrive_in_time_is_cut_off(start_server: ServerFactory) -> None:
    server = await start_server("--body-timeout", "0.5")
    sid = await polling_session(server)
    # A polling POST (read by chatapp itself) and a POST nobody reads (answered 405 at
    # once; aiohttp would read and drop the rest of the body for another 10 s).
    slow_poll = await Conn.open(server)
    await slow_poll.send(
        request_head(server, "POST", f"{POLL_PATH}&sid={sid}", Content_Length="1000") + b"40"
    )
    slow_other = await Conn.open(server)
    await slow_other.send(request_head(server, "POST", "/api/rooms", Content_Length="1000"))
    assert (await read_response(slow_other))[0] == 405
    await slow_other.send(b"x" * 10)
    assert await slow_poll.closed_by_server() == b""
    assert await slow_other.closed_by_server() == b""
    # The cut-off polling request ended its session.
    async with aiohttp.ClientSession(server.url) as http, http.get(f"{POLL_PATH}&sid={sid}") as r:
        assert r.status == 400
    log = server.log()
    assert "did not arrive within --body-timeout (0.5 s)" in log
    assert log.count("--body-timeout") == 1  # one line per address and minute
