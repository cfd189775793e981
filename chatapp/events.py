"""The ``events`` fast path: a client's Socket.IO event of the usual shape goes straight to
its handler.

python-socketio hands every packet a client sends through a general path: decode it into a
``Packet`` (namespace, attachments, id, JSON), dispatch it by type, look the connection up,
find the handler among the namespace's and the catch-alls, call it, then build the ACK
packet, walking the answer for bytes. Nearly every packet a chat client sends is an event
to the default namespace, with an ack id, no attachments, for a handler of its own: a
text such as ``42["message",{...}]``. :class:`Events` decodes that shape with the
server's JSON codec and calls the handler itself, with the same arguments and the same ack
python-socketio would give; anything else (another namespace, binary attachments, an
event with no handler of its own, malformed input, a connection python-socketio does not
know) is left to python-socketio, unchanged. In a closed loop of small rooms,
python-socketio's general path was about a tenth of the event loop's samples
(docs/benchmarks.md).

:func:`check_events` is the self-check: the decoding agrees with python-socketio's on
sample packets, and a real loopback client's event and ack take this path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import socketio
from aiohttp import web
from socketio import packet as sio_packet

from .fastpaths import SelfCheckFailed, loopback

#: Engine.io's text of a Socket.IO EVENT packet starts with its type, ``2``.
EVENT = "2"
#: Ack ids longer than this go to python-socketio, which bounds them itself.
MAX_ID_DIGITS = 15
#: Event names python-socketio keeps for itself (and the catch-all's): never dispatched here.
RESERVED = frozenset({"connect", "disconnect", "*"})
DIGITS = frozenset("0123456789")


class Events:
    """Dispatches a client's plain events to their handlers, for one ``AsyncServer``."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._loads: Callable[[str], Any] = sio.packet_class.json.loads
        # Checked here, once: what call() relies on is there, with the expected types.
        handlers = sio.handlers
        pending = sio._binary_packet
        if not isinstance(handlers, dict) or not isinstance(pending, dict):
            raise SelfCheckFailed("AsyncServer.handlers or ._binary_packet is not a dict")
        self._pending: dict[str, Any] = pending
        self._async: dict[Callable[..., Any], bool] = {}  # handler -> a coroutine function?

    def decode(self, data: Any) -> tuple[int | None, list[Any]] | None:
        """``(ack id, [event, *args])`` for an event of the usual shape, else None."""
        if type(data) is not str or data[:1] != EVENT:
            return None
        i = 1
        end = len(data)
        while i < end and data[i] in DIGITS:
            i += 1
        if i == end or data[i] != "[" or i - 1 > MAX_ID_DIGITS:
            return None  # a namespace, attachments, no payload or a long id
        try:
            payload = self._loads(data[i:])
        except (ValueError, RecursionError):
            return None  # python-socketio's decoder meets the same and answers it
        if type(payload) is not list or not payload or type(payload[0]) is not str:
            return None
        return (int(data[1:i]) if i > 1 else None), payload

    def call(self, eio_sid: str, data: Any) -> Coroutine[Any, Any, None] | None:
        """The handling of ``data`` from ``eio_sid`` (handler, then ack), to await; None if
        python-socketio must handle it."""
        if eio_sid in self._pending:
            return None  # python-socketio takes what follows a binary event as attachments
        decoded = self.decode(data)
        if decoded is None:
            return None
        ack_id, payload = decoded
        event = payload[0]
        if event in RESERVED:
            return None
        handler = self._sio.handlers.get("/", {}).get(event)
        if handler is None:
            return None
        is_async = self._async.get(handler)
        if is_async is None:
            is_async = self._async[handler] = asyncio.iscoroutinefunction(handler)
        if not is_async:
            return None
        manager = self._sio.manager
        sid = manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or not manager.is_connected(sid, "/"):
            return None  # python-socketio logs and drops it
        return self._run(handler, sid, payload[1:], eio_sid, ack_id)

    async def _run(
        self,
        handler: Callable[..., Awaitable[Any]],
        sid: str,
        args: list[Any],
        eio_sid: str,
        ack_id: int | None,
    ) -> None:
        answer = await handler(sid, *args)
        if ack_id is None:
            return
        # As python-socketio acks: a tuple is several arguments, None none.
        data = [] if answer is None else list(answer) if isinstance(answer, tuple) else [answer]
        sio = self._sio
        # binary=False: chat answers are JSON; bytes would make the encoder raise.
        pkt = sio.packet_class(sio_packet.ACK, namespace="/", id=ack_id, data=data, binary=False)
        await sio._send_packet(eio_sid, pkt)


#: Packets whose decoding must agree with python-socketio's: (text, plain event or not).
SAMPLES = (
    ('2["echo",{"a":[1,"x"]}]', True),
    ('27["echo","x",2]', True),
    ('20["echo"]', True),
    ('2123456789012345["echo"]', True),
    ('2/chat,3["echo"]', False),
    ('21-["echo",{"_placeholder":true,"num":0}]', False),
    ("2", False),
    ('2["echo"', False),
    ("2[]", False),
    ("2[1]", False),
    ('3["echo"]', False),
)


async def check_events() -> None:
    """The ``events`` fast path's self-check: its decoding agrees with python-socketio's,
    and a loopback client's event reaches its handler with the right sid and arguments and
    is acked, through :class:`Events`, with python-socketio's handling of the rest intact."""
    sio = socketio.AsyncServer(async_mode="aiohttp")
    events = Events(sio)
    for text, plain in SAMPLES:
        decoded = events.decode(text)
        if (decoded is not None) != plain:
            raise SelfCheckFailed(f"{text!r} decoded as {decoded}")
        if decoded is None:
            continue
        pkt = sio.packet_class(encoded_packet=text)
        if (pkt.packet_type, pkt.namespace, pkt.id, pkt.data) != (
            sio_packet.EVENT,
            None,
            decoded[0],
            decoded[1],
        ):
            raise SelfCheckFailed(f"python-socketio decodes {text!r} otherwise")

    seen: list[tuple[str, tuple[Any, ...]]] = []

    @sio.on("echo")  # type: ignore[untyped-decorator]
    async def echo(sid: str, *args: Any) -> Any:
        seen.append((sid, args))
        return args[0] if len(args) == 1 else args

    taken: list[str] = []
    library_message = sio.eio.handlers["message"]

    async def message(eio_sid: str, data: Any) -> None:
        handling = events.call(eio_sid, data)
        if handling is None:
            await library_message(eio_sid, data)
        else:
            taken.append(data)
            await handling

    sio.eio.on("message", message)
    app = web.Application()
    sio.attach(app)
    async with loopback(sio, app) as (url, client):
        await client.connect(url, transports=["websocket"])
        sent = {"text": "é", "n": [1, 2]}
        if await client.call("echo", sent, timeout=5) != sent:
            raise SelfCheckFailed("an event's ack came back wrong")
        if await client.call("echo", ("a", "b"), timeout=5) not in (("a", "b"), ["a", "b"]):
            raise SelfCheckFailed("an ack of two values came back wrong")
        if await client.call("echo", b"\x00", timeout=5) != b"\x00":
            raise SelfCheckFailed("a binary event's ack came back wrong")
        if [sid for sid, _ in seen] != [client.get_sid()] * 3 or seen[0][1] != (sent,):
            raise SelfCheckFailed(f"the handler was called with {seen}")
        if len(taken) != 2:
            raise SelfCheckFailed(f"the fast path took {len(taken)} of 2 plain events")
