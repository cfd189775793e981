"""Raw Engine.IO / Socket.IO peers for tests that must misbehave below the client library,
/proc readings of the server process (memory and descriptors), and an app served in the
test's own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from .support import EVENT_TIMEOUT

WS_PATH = "/socket.io/?EIO=4&transport=websocket"
POLL_PATH = "/socket.io/?EIO=4&transport=polling"


def ws_frame(text: str) -> bytes:
    """A masked client-to-server websocket text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 65536:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawSocket:
    """An engine.io websocket spoken by hand. Answers pings only if ``pong`` is set."""

    def __init__(self, http: aiohttp.ClientSession, pong: bool = True) -> None:
        self.http = http
        self.pong = pong
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.open: dict[str, Any] = {}

    async def start(self, url: str, **headers: str) -> RawSocket:
        self.ws = await self.http.ws_connect(url + WS_PATH, headers=headers, max_msg_size=0)
        first = await self.recv()
        assert first.startswith("0"), first
        self.open = json.loads(first[1:])
        return self

    async def connect(self, url: str, auth: dict[str, Any] | None = None) -> dict[str, Any]:
        """Open the websocket and the Socket.IO namespace; return the welcome."""
        await self.start(url)
        await self.send("40" + json.dumps(auth or {}))
        connected = await self.recv()
        assert connected.startswith("40{"), connected
        return await self.event("welcome")

    async def send(self, frame: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def recv(self, timeout: float = EVENT_TIMEOUT) -> str:
        """The next text frame; raises ConnectionError once the server has closed."""
        assert self.ws is not None
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "2" and self.pong:
                    await self.ws.send_str("3")
                    continue
                return str(msg.data)
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue
            raise ConnectionError(f"websocket closed: {msg.type.name}")

    async def event(self, name: str, timeout: float = EVENT_TIMEOUT) -> Any:
        while True:
            frame = await self.recv(timeout)
            if frame.startswith("42"):
                event, *args = json.loads(frame[2:])
                if event == name:
                    return args[0] if args else None

    async def call(self, ack_id: int, event: str, *args: Any) -> Any:
        await self.send(f"42{ack_id}" + json.dumps([event, *args]))
        while True:
            frame = await self.recv()
            if frame.startswith(f"43{ack_id}["):
                return json.loads(frame[2 + len(str(ack_id)) :])[0]

    async def closed_by_server(self, timeout: float = EVENT_TIMEOUT) -> bool:
        """Read until the server closes the connection (True), or ``timeout`` passes."""
        try:
            while True:
                await self.recv(timeout)
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def settle(read: Callable[[], int], target: int, timeout: float = 30) -> int:
    """Read a /proc figure until it is at most ``target`` (or time is up); return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = read()
    while value > target and loop.time() < deadline:
        await asyncio.sleep(0.1)  # polling /proc: there is no event to wait for
        value = read()
    return value


async def settle_fds(pid: int, target: int, timeout: float = 30) -> int:
    """Wait until the process has at most ``target`` descriptors open; return the count."""
    return await settle(lambda: fd_count(pid), target, timeout)


class SlowReader:
    """A websocket client that joins a room and then never reads its socket again.

    Its receive buffer is small, so that the server's send path backs up quickly; it can
    still send frames (events it will never read the answers of).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, url: str, local_address: str = "127.0.0.1", **auth: Any) -> SlowReader:
        """Connect from ``local_address`` (another 127.0.0.x is another client address)."""
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((local_address, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, int(port)))
        request = (
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        received = b""
        while b'"sid"' not in received.partition(b"\r\n\r\n")[2]:  # the OPEN packet
            chunk = await loop.sock_recv(sock, 4096)
            assert chunk, "closed during the handshake"
            received += chunk
        assert received.startswith(b"HTTP/1.1 101")
        await loop.sock_sendall(sock, ws_frame("40" + json.dumps(auth)))
        return cls(sock)

    async def send(self, text: str) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, ws_frame(text))

    def close(self) -> None:
        self.sock.close()

    async def is_dropped(self) -> bool:
        """Drain what the server sent; True once the server has closed or reset it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), 10)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


# -- an app served in the test's own process -------------------------------------------------


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[web.AppRunner]:
    """Serve ``app`` in this process and event loop (so tests can step the loop and look at
    the server's objects); its runner. On exit every request handler has finished."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """:func:`serving`, giving the URL."""
    async with serving(app) as runner:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"


async def joined(
    http: aiohttp.ClientSession, url: str, room: str
) -> aiohttp.ClientWebSocketResponse:
    """A websocket (no long-polling first) with its Socket.IO connection made in ``room``
    and the welcome read."""
    ws = await http.ws_connect(url + WS_PATH)
    assert (await ws.receive_str()).startswith("0")
    await ws.send_str("40" + json.dumps({"room": room}))
    assert (await ws.receive_str()).startswith("40")
    assert (await ws.receive_str()).startswith('42["welcome"')
    return ws


async def upgraded(
    http: aiohttp.ClientSession, url: str, room: str
) -> aiohttp.ClientWebSocketResponse:
    """A session opened on long-polling, its Socket.IO connection made in ``room`` and the
    welcome polled, then upgraded to a websocket (the probe, then UPGRADE)."""
    async with http.get(url + POLL_PATH) as r:
        sid = json.loads((await r.text())[1:])["sid"]
    poll = f"{url}{POLL_PATH}&sid={sid}"
    async with http.post(poll, data="40" + json.dumps({"room": room})) as r:
        assert r.status == 200
    polled = ""
    while '"welcome"' not in polled:
        async with http.get(poll) as r:
            polled += await r.text()
    ws = await http.ws_connect(f"{url}{WS_PATH}&sid={sid}")
    await ws.send_str("2probe")
    assert await ws.receive_str() == "3probe"
    await ws.send_str("5")
    assert await ws.receive_str() == "6"  # the NOOP that ends a long-poll
    return ws
