"""What the fast write path (chatapp/sessions.py, chatapp/websocket.py) must keep true on the wire.

Room frames are written straight to a connection's transport when nothing is ahead of
them, and queued behind engine.io's own packets otherwise. These tests read the raw
Engine.IO frames, in wire order, to check that nothing overtakes anything: the welcome
comes before the room's messages, each of a sender's acks comes right after its own
message, a slow reader gets everything in order once it reads again, and a client that
offers permessage-deflate (as browsers do) is served uncompressed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .support import EVENT_TIMEOUT, Server

WS_PATH = "/socket.io/?EIO=4&transport=websocket"


class Wire:
    """A Socket.IO client spoken by hand over aiohttp's websocket, keeping every frame."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.frames: list[str] = []
        self._next_ack = 0

    async def connect(self, url: str, compress: int = 0, **auth: Any) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(url + WS_PATH, compress=compress, max_msg_size=0)
        assert (await self.recv()).startswith("0")
        await self.ws.send_str("40" + json.dumps(auth))
        assert (await self.recv()).startswith("40{")
        first = await self.recv()
        assert first.startswith('42["welcome"'), f"the first event must be the welcome: {first}"
        welcome: dict[str, Any] = json.loads(first[2:])[1]
        return welcome

    async def recv(self, timeout: float = EVENT_TIMEOUT) -> str:
        assert self.ws is not None
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            if msg.data == "2":  # engine.io ping
                await self.ws.send_str("3")
                continue
            self.frames.append(msg.data)
            return str(msg.data)

    async def send_message(self, text: str) -> int:
        """Send a chat message asking for an ack; return the ack id."""
        assert self.ws is not None
        ack_id = self._next_ack
        self._next_ack += 1
        await self.ws.send_str(f"42{ack_id}" + json.dumps(["message", {"text": text}]))
        return ack_id

    async def read_until(self, done: Any, timeout: float = 30) -> None:
        async def loop() -> None:
            while not done():
                await self.recv()

        await asyncio.wait_for(loop(), timeout)

    def parsed(self) -> list[tuple[str, Any]]:
        """("message", msg) and ("ack", (ack id, payload)) in wire order; others skipped."""
        out: list[tuple[str, Any]] = []
        for frame in self.frames:
            if frame.startswith('42["message"'):
                out.append(("message", json.loads(frame[2:])[1]))
            elif frame.startswith("43"):
                ack_id, _, rest = frame[2:].partition("[")
                out.append(("ack", (int(ack_id), json.loads("[" + rest)[0])))
        return out

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def test_acks_and_broadcasts_keep_their_order_per_connection(
    server: Server, make_client
) -> None:
    """A sender's ack follows its own message at once: nothing is written in between.

    The server queues the ack right after handing the message to every member, with no
    await in between, and room messages go out in id order; so on the sender's wire the
    ack comes directly after the message it acknowledges. A broadcast written directly
    past a queued ack (the bug this guards against) would land between them.
    """
    # One of the others starts on long-polling and upgrades: engine.io's own handler
    # serves it, and frames may be written past its writer too.
    others = [make_client() for _ in range(2)] + [make_client(transports=["polling", "websocket"])]
    for i, client in enumerate(others):
        await client.connect(server.url, room="order", name=f"other{i}")
    per_sender = 60
    async with aiohttp.ClientSession() as http:
        wires = [Wire(http) for _ in range(2)]
        for i, wire in enumerate(wires):
            await wire.connect(server.url, room="order", name=f"wire{i}")

        async def pipeline(wire: Wire, tag: str) -> None:
            for n in range(per_sender):
                await wire.send_message(f"{tag}-{n}")

        async def burst(client: Any, tag: str) -> None:
            await asyncio.gather(*(client.send(f"{tag}-{n}") for n in range(per_sender)))

        await asyncio.gather(
            *(pipeline(w, f"w{i}") for i, w in enumerate(wires)),
            *(burst(c, f"c{i}") for i, c in enumerate(others)),
        )
        total = per_sender * (len(wires) + len(others))
        for wire in wires:
            await wire.read_until(
                lambda w=wire: (
                    sum(1 for k, _ in w.parsed() if k == "message") >= total
                    and sum(1 for k, _ in w.parsed() if k == "ack") >= per_sender
                )
            )
            events = wire.parsed()
            ids = [m["id"] for kind, m in events if kind == "message"]
            assert ids == list(range(1, total + 1)), "every message once, in id order"
            acks = 0
            for i, (kind, value) in enumerate(events):
                if kind != "ack":
                    continue
                acks += 1
                ack_id, ack = value
                assert ack["ok"] is True, ack
                assert i > 0, "an ack before its message"
                before_kind, before = events[i - 1]
                assert before_kind == "message" and before["id"] == ack["message"]["id"], (
                    f"ack {ack_id} for message {ack['message']['id']} came after "
                    f"{before_kind} {before}"
                )
            assert acks == per_sender
            await wire.close()
        for client in others:
            await client.wait_for("message", count=total)
            assert client.message_ids() == list(range(1, total + 1))
        assert others[-1].sio.transport() == "websocket", "the upgrade happened"


async def test_joining_during_a_stream_gets_welcome_then_every_later_message(
    server: Server, make_client
) -> None:
    sender = make_client()
    await sender.connect(server.url, room="stream", name="sender")
    count = 150
    async with aiohttp.ClientSession() as http:
        joiners = [Wire(http) for _ in range(4)]

        # The joins land while the burst is being sent and delivered.
        burst = asyncio.gather(*(sender.send(f"m{n}") for n in range(count)))
        welcomes = await asyncio.gather(
            *(w.connect(server.url, room="stream", name=f"late{i}") for i, w in enumerate(joiners))
        )
        await burst
        for wire, welcome in zip(joiners, welcomes, strict=True):
            seen = [m["id"] for m in welcome["history"]]
            first = seen[-1] + 1 if seen else 1
            await wire.read_until(
                lambda w=wire, first=first: (
                    sum(1 for k, _ in w.parsed() if k == "message") >= count - first + 1
                )
            )
            live = [m["id"] for kind, m in wire.parsed() if kind == "message"]
            assert live == list(range(first, count + 1)), "no gap and no repeat after welcome"
            await wire.close()


async def test_a_client_offering_permessage_deflate_is_served_uncompressed(
    server: Server, make_client
) -> None:
    other = make_client()
    await other.connect(server.url, room="deflate", name="plain")
    async with aiohttp.ClientSession() as http:
        wire = Wire(http)
        await wire.connect(server.url, compress=15, room="deflate", name="browserlike")
        assert wire.ws is not None and wire.ws.compress == 0, "deflate must not be negotiated"
        ack_id = await wire.send_message("compressed? no")
        await other.send("and back")
        await wire.read_until(lambda: len(wire.parsed()) >= 3)
        kinds = [(k, v["text"] if k == "message" else v[0]) for k, v in wire.parsed()]
        assert kinds == [("message", "compressed? no"), ("ack", ack_id), ("message", "and back")]
        assert await other.wait_for("message", count=2)
        await wire.close()


# -- a reader that stops reading ----------------------------------------------------------


async def _raw_websocket(url: str, rcvbuf: int) -> tuple[asyncio.StreamReader, Any]:
    """A websocket over a plain socket with a small receive buffer (no client library
    reading ahead for us), handshake done. Returns the reader and the writer."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def _read_frame(reader: asyncio.StreamReader) -> str:
    first, second = await reader.readexactly(2)
    assert first == 0x81, f"expected a final text frame, got {first:#x}"
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return (await reader.readexactly(n)).decode()


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    header = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    return header + mask + body


async def test_a_slow_reader_gets_everything_in_order_and_holds_nobody_up(
    server: Server, make_client
) -> None:
    """Frames for a client that does not keep up wait in its queue, behind what is there.

    While it does not read, far more is sent to its room than the kernel buffers hold;
    then it reads while more keeps coming, so frames are ready for it at every stage of
    its connection's backlog draining.
    """
    reader, writer = await _raw_websocket(server.url, rcvbuf=4096)
    try:
        assert (await _read_frame(reader)).startswith("0")
        writer.write(_masked_text("40" + json.dumps({"room": "slow", "name": "sleepy"})))
        assert (await _read_frame(reader)).startswith("40{")
        assert (await _read_frame(reader)).startswith('42["welcome"')
        sender, watcher = make_client(), make_client()
        await sender.connect(server.url, room="slow", name="sender")
        await watcher.connect(server.url, room="slow", name="watcher")
        text = "\U0001d11e" * 1990  # 4 bytes each in UTF-8: fills buffers fast

        async def send(first: int, last: int) -> None:
            for start in range(first, last, 50):
                batch = range(start, min(start + 50, last))
                await asyncio.gather(*(sender.send(f"{n} {text}") for n in batch))

        await send(0, 600)
        # The others were served in full while the slow reader was not reading.
        await watcher.wait_for("message", count=600)
        count = 1200
        ids: list[int] = []

        async def read_all() -> None:
            while len(ids) < count:
                frame = await asyncio.wait_for(_read_frame(reader), EVENT_TIMEOUT)
                if frame == "2":
                    writer.write(_masked_text("3"))
                elif frame.startswith('42["message"'):
                    ids.append(json.loads(frame[2:])[1]["id"])

        await asyncio.gather(read_all(), send(600, count))
        assert ids == list(range(1, count + 1))
    finally:
        writer.close()
