"""The WebSocket layer below Engine.IO, spoken frame by frame (RFC 6455): pings are answered,
fragments are joined, a close is answered, a broken frame closes its own connection with the
right code, and everyone else keeps chatting."""

from __future__ import annotations

import asyncio
import json
import os
import struct

from chatapp.settings import load_settings

from .conftest import ServerFactory
from .raw import WS_PATH
from .support import EVENT_TIMEOUT, Server
from .test_raw_transport import bystanders_chat

#: Whether the servers these tests start detach their websockets from aiohttp (the
#: ``detach`` fast path, on unless CHATAPP_FAST_PATHS turns the fast paths off).
DETACHING = load_settings(
    [], {k: v for k, v in os.environ.items() if k == "CHATAPP_FAST_PATHS"}
).fast_paths

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client-to-server frame."""
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = bytes([first, 0x80 | n])
    elif n < 1 << 16:
        header = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Wire:
    """A websocket client written against the RFC, on a plain TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: Server) -> Wire:
        host, port = server.url.removeprefix("http://").rstrip("/").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), EVENT_TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        wire = cls(reader, writer)
        opcode, data = await wire.recv()
        assert (opcode, data[:1]) == (TEXT, b"0"), (opcode, data)
        return wire

    async def join(self, name: str) -> None:
        """Open the Socket.IO namespace in the lobby and wait for the welcome."""
        await self.send_text("40" + json.dumps({"name": name}))
        await self.until(lambda op, data: op == TEXT and data.startswith(b'42["welcome"'))

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.writer.write(client_frame(opcode, payload, fin))

    async def send_text(self, text: str) -> None:
        self.send(TEXT, text.encode())
        await self.writer.drain()

    async def recv(self) -> tuple[int, bytes]:
        """The next frame from the server; (-1, b"") when it closed the TCP connection."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), EVENT_TIMEOUT)
        except asyncio.IncompleteReadError:
            return -1, b""
        assert head[0] & 0x80, "the server sends final frames"
        assert not head[1] & 0x80, "the server does not mask"
        n = head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return head[0] & 0x0F, await self.reader.readexactly(n)

    async def until(self, match) -> tuple[int, bytes]:
        """Frames until one matches (engine.io pings are answered on the way)."""
        while True:
            opcode, data = await self.recv()
            assert opcode != -1, "the server closed the connection"
            if (opcode, data) == (TEXT, b"2"):
                await self.send_text("3")
            elif match(opcode, data):
                return opcode, data

    async def closed_with(self, answer: bool = True) -> int | None:
        """Read up to the server's close frame and answer it (unless this side started the
        closing handshake); its status code, once the server closed TCP too.

        None if the connection was reset: off the detach fast path, aiohttp ends the
        connection right after its close frame, and a client still sending (or answering
        the close) may see a reset instead (docs/protocol.md).
        """
        try:
            _opcode, data = await self.until(lambda op, _: op == CLOSE)
            (code,) = struct.unpack("!H", data[:2])
            if answer:
                self.send(CLOSE, data[:2])
            rest = await asyncio.wait_for(self.reader.read(), EVENT_TIMEOUT)
        except ConnectionResetError:
            assert not DETACHING, "a detached websocket waits for the client's close"
            return None
        assert rest == b"", "nothing follows a close frame"
        return int(code)

    def close(self) -> None:
        self.writer.close()


async def test_pings_are_answered_with_their_payload(server: Server) -> None:
    wire = await Wire.open(server)
    await wire.join("pinger")
    wire.send(PING, b"are you there")
    _opcode, data = await wire.until(lambda op, _: op == PONG)
    assert data == b"are you there"
    wire.close()


async def test_fragments_are_joined_and_pings_between_them_answered(server: Server) -> None:
    wire = await Wire.open(server)
    await wire.join("fragments")
    packet = b'421["message",{"text":"in three pieces"}]'
    wire.send(TEXT, packet[:5], fin=False)
    wire.send(PING, b"meanwhile")
    wire.send(CONTINUATION, packet[5:20], fin=False)
    wire.send(CONTINUATION, packet[20:])
    await wire.writer.drain()
    assert await wire.until(lambda op, _: op == PONG) == (PONG, b"meanwhile")
    _, ack = await wire.until(lambda op, data: op == TEXT and data.startswith(b"431"))
    reply = json.loads(ack[3:])[0]
    assert reply["ok"] is True and reply["message"]["text"] == "in three pieces"
    wire.close()


async def test_a_close_is_answered_and_the_client_leaves(server: Server, make_client) -> None:
    watcher = make_client()
    await watcher.connect(server.url, name="watcher")
    wire = await Wire.open(server)
    await wire.join("leaver")
    await watcher.wait_for("presence", lambda p: p.get("joined") == "leaver")
    wire.send(CLOSE, struct.pack("!H", 1000) + b"bye")
    assert await wire.closed_with(answer=False) == 1000
    await watcher.wait_for("presence", lambda p: p.get("left") == "leaver")


async def test_broken_frames_close_their_connection_with_the_right_code(
    start_server: ServerFactory, make_client
) -> None:
    server = await start_server("--max-frame-bytes", "65536")
    cases = [
        ("reserved opcode", lambda w: w.send(0x3, b"?"), 1002),
        ("continuation without a start", lambda w: w.send(CONTINUATION, b"x"), 1002),
        ("ping longer than 125 bytes", lambda w: w.send(PING, b"p" * 126), 1002),
        ("text that is not UTF-8", lambda w: w.send(TEXT, b"42\xff\xfe"), 1007),
        ("over --max-frame-bytes", lambda w: w.send(TEXT, b"4" + b"x" * 70_000), 1009),
    ]
    for what, send, code in cases:
        wire = await Wire.open(server)
        await wire.join("broken")
        send(wire)
        await wire.writer.drain()
        assert await wire.closed_with() in (code, None if not DETACHING else code), what
        wire.close()
    await bystanders_chat(server, make_client)


async def test_a_malformed_engineio_packet_gets_a_normal_close(server: Server) -> None:
    wire = await Wire.open(server)
    await wire.join("garbled")
    await wire.send_text("b!!!not base64")
    assert await wire.closed_with() == 1000
    assert "malformed engine.io frame" in server.log()
