"""engine.io packets and WebSocket frames, encoded once for any number of recipients.

Through python-socketio's public API a message to a room of N members costs N encodings of
the Socket.IO packet, its engine.io wrapper, its UTF-8 bytes and its WebSocket frame. Here
they are built once per message (:class:`FramedPacket`, which keeps only the frame) and
the same bytes go to every member. Also here: which text engine.io can decode
(:func:`decodable`), checked before engine.io sees a frame or a polling body.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

from engineio import packet as eio_packet

# -- what engine.io can decode --------------------------------------------------------------


def socketio_message(text: str) -> eio_packet.Packet | None:
    """The engine.io MESSAGE packet of a frame that carries a Socket.IO packet (``4``, then
    a digit: nearly every frame a client sends), as engine.io's decoder makes it; None for
    any other text, which goes to that decoder.

    engine.io never reads a payload with a leading digit as JSON: it tries, has a
    ValueError raised and keeps the text. This skips the attempt and the raise.
    """
    if text[:1] == "4" and text[1:2].isnumeric():
        return eio_packet.Packet(eio_packet.MESSAGE, text[1:])
    return None


def decodable(text: str) -> bool:
    """Whether this text is an engine.io packet engine.io decodes into something sensible.

    Its decoder raises on some of the rest (no type, JSON nested past the recursion
    limit) and turns others into nonsense (an unknown type, base64 it half ignores).
    """
    if not text:
        return False
    if text[0] == "b":
        try:
            base64.b64decode(text[1:], validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    if text[0] not in "0123456":
        return False
    if len(text) > 1 and not text[1].isnumeric():
        # engine.io tries the rest as JSON and copes with ValueError, not with nesting
        # deep enough to exhaust the recursion limit.
        try:
            json.loads(text[1:])
        except RecursionError:
            return False
        except ValueError:
            pass
    return True


# -- packets encoded and framed once ----------------------------------------------------------


class _EncodedText(str):
    """An engine.io packet's text encoding, carrying its UTF-8 bytes."""

    payload: bytes


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final WebSocket frame (RFC 6455 5.2) of ``opcode`` holding ``payload``."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame holding ``payload`` (UTF-8)."""
    return ws_frame(0x1, payload)


class FramedPacket(eio_packet.Packet):  # type: ignore[misc]
    """An engine.io MESSAGE packet, encoded and framed once for any number of recipients.

    It keeps nothing but its WebSocket frame: what a websocket is sent, and what the bytes
    waiting for a client are counted in (:func:`packet_size`). Keeping the text too, as a
    ``str`` and as UTF-8, made a queued packet cost four to ten times its frame (a ``str``
    takes 4 bytes per character once it holds an emoji). The text long-polling sends, and
    an upgraded websocket's writer asks for, is made from the frame when ``encode()`` is
    called.
    """

    def __init__(self, data: str) -> None:
        # Not Packet.__init__: it would keep ``data``.
        self.packet_type = eio_packet.MESSAGE
        self.binary = False
        self.encode_cache = None
        payload = (str(eio_packet.MESSAGE) + data).encode("utf-8")
        self.frame = text_frame(payload)
        self._payload_at = len(self.frame) - len(payload)
        #: Send queues holding this packet (a room message waits in every backed-up
        #: member's queue, and counts once in the :class:`Backlog`).
        self.holders = 0

    @property
    def data(self) -> str:
        """The Socket.IO packet (engine.io's ``data``), made again from the frame."""
        return self.frame[self._payload_at + 1 :].decode("utf-8")

    def encode(self, b64: bool = False) -> _EncodedText:
        payload = self.frame[self._payload_at :]
        text = _EncodedText(payload.decode("utf-8"))
        text.payload = payload
        return text


#: What a queued packet that is not a :class:`FramedPacket` (engine.io's own, binary
#: attachments) is counted as, on top of its data.
PACKET_OVERHEAD = 64


def packet_size(pkt: Any) -> int:
    """The bytes ``pkt`` holds while it waits in a send queue (its frame, or its data)."""
    if pkt is None:
        return 0
    frame = getattr(pkt, "frame", None)
    if frame is not None:
        return len(frame)
    data = getattr(pkt, "data", None)
    if isinstance(data, str):
        # In UTF-8, as it goes on the wire (isascii() is free for a str that is).
        return (len(data) if data.isascii() else len(data.encode())) + PACKET_OVERHEAD
    if isinstance(data, bytes | bytearray):
        return len(data) + PACKET_OVERHEAD
    return PACKET_OVERHEAD
