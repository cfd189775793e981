"""The one module that reaches into python-socketio / python-engineio / aiohttp internals.

Everything else in chatapp uses the public API of those libraries and the classes and
functions here (:class:`Engine`, :class:`LocalManager`, :class:`RedisManager`,
:func:`decodable`, :func:`library_logger`). What is policy (limits, the feed, the Redis
self-check) lives in ``transport.py`` and ``fanout.py``; this module only provides the
hooks, so that a library upgrade has one place to re-check.

Four needs bring us below the public API.

**The hot path.** Through the public API a message to a room of N members costs N tasks,
N queue puts, N writer wake-ups, N UTF-8 encodings and WebSocket frames and, when a browser
negotiated permessage-deflate, N compressions. Here it costs one encoding and one frame,
then at most one ``transport.write`` per member and turn of the event loop:

* ordering we control: a packet is handed to each recipient synchronously
  (:meth:`Engine.put`), so the order in which the feed decides equals the order on every
  wire (``AsyncManager.emit`` spawns a task per recipient and returns control in between).
  Every other event without callback (presence, typing, :class:`LocalManager`) and every
  packet python-socketio sends to one client (acks, CONNECT; ``AsyncServer._send_packet``)
  takes the same path;
* encode once: the Socket.IO packet, its engine.io wrapper, its UTF-8 bytes and its
  WebSocket frame are built once per message (:class:`FramedPacket`, which keeps only the
  frame);
* write directly, in order and bounded: :class:`ChatWebSocket` replaces engine.io's aiohttp
  websocket wrapper. A frame is written straight to the transport only while the
  connection is idle: nothing in its send queue, no writer holding a packet taken but not
  yet written, and at most :data:`WRITE_HIGH_WATER` bytes waiting in its transport buffer.
  Otherwise the packet joins the queue behind what is there, and the writer sends it in
  turn under flow control. On a detached websocket (below) the writer is a task that the
  queue starts when a packet arrives and that ends when the queue is empty, so an idle
  connection has none (an upgraded connection keeps engine.io's writer, idle while it
  waits in ``get()``). So nothing
  overtakes a queued packet, and a client that stops reading stops being idle once its
  buffer backs up: from then on its packets queue, and :class:`SendQueue`'s bound drops it;
* cork: the frames written directly to a connection in one turn of the event loop are
  joined and written at its end (:meth:`Engine.cork`), one system call for all of them;
  until then they count against :data:`WRITE_HIGH_WATER`;
* no permessage-deflate: the websocket is prepared with ``compress=False``, as Node's
  socket.io does by default. Compressing every frame once per connection cost more CPU
  than all the rest of a delivery, a deflate context costs ~300 KB per connection, and a
  frame shared by all members cannot be compressed per connection. Chat frames are small;
  a client offering the extension gets uncompressed frames (RFC 7692 allows it).

**Memory per connection.** A connection that starts on the websocket is detached from
aiohttp once aiohttp has answered the handshake (:meth:`ChatWebSocket._detach`): the
:class:`ChatWebSocket` becomes the transport's protocol and does what engine.io's
``AsyncSocket._websocket_handler`` does, in callbacks and timers, and aiohttp's request
handling finishes. An idle connection keeps no task, no suspended coroutine chain, no HTTP
request, headers or parser (an upgrade from long-polling keeps aiohttp's websocket and runs
engine.io's own handler).

**Memory of a closed connection.** It is freed by reference counting as soon as the
connection is over, not at the cycle collector's next full pass (rare: ``cli`` raises its
thresholds and freezes what start-up built), which could be long after a client left
megabytes queued. So nothing a connection's objects form may be a cycle, and nothing
long-lived may keep them: a detached :class:`ChatWebSocket` drops aiohttp's reader queue
(which points back at it) when its connection is lost; an upgraded one ends engine.io's
loop with ``None`` rather than an exception (which its task would keep together with the
loop's frames); the heartbeat timer holds its session weakly; the send queue is emptied
when the transport ends; and the walk over the sessions' heartbeats (:meth:`Engine.adopt`
starts it; engine.io's own, ``monitor_clients``, is off) holds session ids, where
engine.io's held a copy of its session table.

**Hardening** (the policy is ``transport.TransportGuard``): checking each websocket frame
before engine.io decodes it (:meth:`ChatWebSocket.wait`; engine.io raises on some inputs),
checking polling bodies before engine.io reads them (:meth:`Engine.check_requests`),
seeing engine.io's connect/message/disconnect events before python-socketio does
(:meth:`Engine.intercept`), bounding each send queue (:meth:`Engine.adopt`), closing
a session and dropping its TCP connection (:meth:`Engine.close`), and the libraries' log
lines (:func:`library_logger`, :class:`RedisManager`'s logger).

**Redis** (the policy is ``fanout.FeedRedisManager``): :class:`RedisManager` hands over
what ``AsyncRedisManager`` keeps to itself: publishing (``_publish`` replaced), what the
listener hears (``_listen`` wrapped), each subscription of the listener (Redis's
confirmation, which python-socketio discards), and the listener task (started early,
restarted); and it closes the clients python-socketio replaces when it reconnects.

Internals used, checked by ``tests/test_internals.py`` against :data:`TESTED_VERSIONS`, the
versions ``pyproject.toml`` pins (update the three together, after reading the new code):

* python-engineio: ``AsyncServer._async`` (the aiohttp driver's ``translate_request`` and
  ``websocket`` entries; ``WebSocket(handler, server)`` with ``handler``, ``server``,
  ``_sock``, ``environ``, ``send``, ``wait``, ``close``, and ``handler`` bound to its
  ``AsyncSocket``), ``.handlers``, ``.sockets``, ``.max_http_buffer_size``,
  ``.ping_interval``, ``.ping_timeout``, ``.reason``; what
  ``AsyncSocket._websocket_handler`` does (repeated by a detached :class:`ChatWebSocket`,
  whose writer runs only while the queue holds packets), that its writer waits in
  ``queue.get()`` and that its loop ends when ``wait()`` returns None; what
  ``AsyncServer._service_task`` does (repeated by :meth:`Engine._watch_sessions`), and
  that ``monitor_clients=False`` turns it off; ``.create_queue`` (replaced on the server, so
  that every ``AsyncSocket.queue`` is a :class:`SendQueue`, which has exactly the queue
  methods engine.io calls); ``AsyncSocket`` itself (no ``__slots__``: a session's class is
  changed to :class:`ChatSocket`, in the connect event, before ``_handle_connect`` makes
  the first ``schedule_ping()`` call), what its ``schedule_ping`` / ``_send_ping`` /
  ``send`` do (repeated by :class:`ChatSocket` with a timer), ``.last_ping``,
  ``AsyncSocket.receive()``,
  ``.close(wait=, abort=, reason=)``, ``.sid``, ``.connected``, ``.closed``,
  ``.closing``, ``.upgraded``, ``.upgrading``; ``packet.Packet`` (``packet_type``,
  ``binary``, ``encoded_packet=``) and which text it fails to decode, and that
  long-polling's ``Payload.encode`` asks each packet for ``encode(b64=True)``;
  ``exceptions.UnknownPacketError`` / ``SocketIsClosedError``; the "Cannot send to sid
  %s" log line of ``AsyncServer.send_packet``;
* python-socketio: ``AsyncServer._send_packet`` and ``.packet_class`` (with
  ``binary=False``), ``.eio``,
  ``.manager_initialized``; ``AsyncManager.emit``'s signature and behaviour, ``.json``,
  ``.rooms``, ``.get_participants``, ``.eio_sid_from_sid``, ``.sid_from_eio_sid``,
  ``.is_connected``, ``.basic_enter_room``, ``.disconnect(ignore_queue=)``; the
  ``AsyncPubSubManager._handle_emit -> super().emit`` call chain, ``.thread`` /
  ``._thread`` / ``._publish`` / ``._listen`` / ``.initialize()``;
  ``AsyncRedisManager.redis`` / ``.pubsub`` (made anew by ``_redis_connect`` before each
  subscription), its ``_listen -> _redis_listen_with_retries -> _redis_connect`` call
  chain and its ``extra={"redis_exception": ...}`` log calls;
* aiohttp: ``WebSocketResponse(compress=...)``, ``.send_frame``, ``.closed`` (set before
  the close frame is written), and that its writer writes an uncompressed frame to the
  transport synchronously, keeping nothing back, so a frame written straight to the
  transport cannot land inside another (upgraded connections). To detach: the response's
  ``_parser`` (``WebSocketReader``) and ``_reader`` (``WebSocketDataQueue``: ``_protocol``,
  whose ``_reading_paused`` / ``pause_reading`` / ``resume_reading`` it drives, ``_buffer``,
  ``read()`` returning without suspending while a message waits, ``exception()``);
  ``_set_closed()``, after which ``close()`` / ``write_eof()`` write nothing; the request
  handler's ``transport`` and ``_payload_parser``, and that its ``connection_lost(None)``
  forgets the connection in the server and touches the transport and the reader only
  through those two; that ``start()`` leaves the transport alone once force-closed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import logging
import struct
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import socketio
from aiohttp import WSCloseCode, WSMsgType, web
from engineio import async_socket as eio_socket
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet as sio_packet

log = logging.getLogger(__name__)

#: Versions this module was written and tested against (pinned exactly in pyproject.toml):
#: their private code is copied, overridden or relied on here.
TESTED_VERSIONS = {"python-socketio": "5.18.1", "python-engineio": "4.15.1", "aiohttp": "3.14.5"}

#: Bytes a connection may have waiting in its transport's write buffer for a frame to
#: still be written directly (asyncio's default high-water mark). Above it the connection
#: is not idle: packets wait in its send queue, whose writer blocks on aiohttp's flow
#: control, and a client that does not read fills that queue up to its bound.
WRITE_HIGH_WATER = 64 * 1024

RequestCheck = Callable[[web.Request, dict[str, Any]], Awaitable[dict[str, Any]]]


# -- what engine.io can decode --------------------------------------------------------------


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


def _frame(opcode: int, payload: bytes) -> bytes:
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
    return _frame(0x1, payload)


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
    if isinstance(data, str | bytes | bytearray):
        return len(data) + PACKET_OVERHEAD
    return PACKET_OVERHEAD


# -- the send queue -------------------------------------------------------------------------


#: Why a send queue gave up on its client (passed to its ``on_overflow``).
OVER_PACKETS = "packets"  # more than its ``limit`` of packets
OVER_BYTES = "bytes"  # more than its ``max_bytes``
OVER_TOTAL = "total"  # it held the most when all queues together passed the Backlog's limit


class Backlog:
    """The bytes all send queues hold together, and the bound on them.

    A packet queued for several connections (a room message) is in memory once and counts
    once. When the total passes ``limit`` (0: no bound), the queue holding the most bytes
    gives up on its client, then the next, until the total is back under the limit.
    """

    __slots__ = ("bytes", "limit", "queues")

    def __init__(self, limit: int = 0) -> None:
        self.bytes = 0
        self.limit = limit
        #: The queues holding anything: the candidates when the total is over the limit.
        self.queues: weakref.WeakSet[SendQueue] = weakref.WeakSet()

    def hold(self, pkt: Any, size: int) -> None:
        holders = getattr(pkt, "holders", None)
        if holders is None:
            self.bytes += size
        else:
            if not holders:
                self.bytes += size
            pkt.holders = holders + 1

    def release(self, pkt: Any, size: int) -> None:
        holders = getattr(pkt, "holders", None)
        if holders is None:
            self.bytes -= size
        else:
            pkt.holders = holders - 1
            if holders == 1:
                self.bytes -= size

    def shed(self) -> None:
        """Give up on the clients holding the most until the total is under the limit."""
        while self.limit and self.bytes > self.limit:
            fullest = max(self.queues, key=lambda queue: queue.bytes, default=None)
            if fullest is None or not fullest.bytes:
                return
            fullest._overflow(OVER_TOTAL)


class SendQueue:
    """An engine.io send queue that gives up on a client that does not read: after
    ``limit`` unsent packets or ``max_bytes`` unsent bytes, or when the :class:`Backlog`
    of all queues is over its limit and this queue holds the most.

    It replaces engine.io's ``asyncio.Queue`` (``AsyncServer.create_queue``) and has
    exactly what engine.io and chatapp call on ``AsyncSocket.queue``: ``put``,
    ``put_nowait``, ``get`` (also under ``wait_for``), ``get_nowait`` (raising
    ``asyncio.QueueEmpty``), ``qsize``, ``empty``, ``task_done`` and ``join``. An
    ``asyncio.Queue`` costs three deques and an Event per connection, most of them idle
    for the connection's life; here storage, getters and joiners are made when needed.

    ``limit`` and ``max_bytes`` 0 mean unbounded (a new session's, until
    :meth:`Engine.adopt`). A packet is refused once the queue holds either bound, so it
    holds at most ``max_bytes`` plus one packet. On overflow the queued packets are dropped
    (the client gets them again through ``since`` when it reconnects) and ``on_overflow``
    runs once, with the reason (:data:`OVER_PACKETS`, :data:`OVER_BYTES`,
    :data:`OVER_TOTAL`); from then on only the engine.io CLOSE packet and the writer's
    ``None`` sentinel are still taken.
    """

    __slots__ = (
        "__weakref__",
        "_backlog",
        "_getters",
        "_items",
        "_joiners",
        "_on_overflow",
        "_unfinished",
        "bytes",
        "consumer",
        "limit",
        "max_bytes",
        "overflowed",
    )

    def __init__(
        self,
        limit: int = 0,
        on_overflow: Callable[[str], None] | None = None,
        max_bytes: int = 0,
        backlog: Backlog | None = None,
    ) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.overflowed = False
        #: The bytes of the packets waiting here (:func:`packet_size`).
        self.bytes = 0
        self._backlog = backlog
        self._on_overflow = on_overflow
        self._items: collections.deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        #: Called when a packet arrives and no reader waits in :meth:`get`: how
        #: :class:`ChatWebSocket` starts its writer only when there is something to write.
        self.consumer: Callable[[], None] | None = None

    def __del__(self, _size: Callable[[Any], int] = packet_size) -> None:
        # A session can end with packets still here (a long-poll that never came back):
        # the backlog must not count them for ever. (``_size`` is bound now: this may run
        # while the interpreter is tearing the module down.)
        if self._items and self._backlog is not None:
            for item in self._items:
                self._backlog.release(item, _size(item))

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def waiting(self) -> bool:
        """Whether a reader waits in :meth:`get` (engine.io's writer or a long-poll)."""
        return bool(self._getters) and any(not g.done() for g in self._getters or ())

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def put_nowait(self, item: Any) -> None:
        if not (
            item is None
            or (isinstance(item, eio_packet.Packet) and item.packet_type == eio_packet.CLOSE)
        ):
            if self.overflowed:
                return
            if self.limit and self.qsize() >= self.limit:
                self._overflow(OVER_PACKETS)
                return
            if self.max_bytes and self.bytes >= self.max_bytes:
                self._overflow(OVER_BYTES)
                return
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1
        size = packet_size(item)
        self.bytes += size
        backlog = self._backlog
        if backlog is not None:
            backlog.hold(item, size)
            if size and self.bytes == size:  # it held nothing until now
                backlog.queues.add(self)
        if not (self._getters and self._wake_next()) and self.consumer is not None:
            self.consumer()
        if backlog is not None and backlog.limit and backlog.bytes > backlog.limit:
            backlog.shed()

    def _taken(self, item: Any) -> None:
        size = packet_size(item)
        self.bytes -= size
        backlog = self._backlog
        if backlog is not None:
            backlog.release(item, size)
            if size and not self.bytes:
                backlog.queues.discard(self)

    def clear(self) -> None:
        """Drop every packet waiting here (its client will not get them: it catches up with
        ``since`` when it reconnects), as if each had been taken and sent."""
        items, self._items = self._items, None
        while items:
            self._taken(items.popleft())
            self.task_done()

    def _overflow(self, reason: str) -> None:
        self.overflowed = True
        self.clear()
        if self._on_overflow is not None:
            self._on_overflow(reason)

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                # Cancelled (engine.io's long-poll reads under wait_for): as asyncio.Queue.
                getter.cancel()
                if self._getters is not None:
                    with contextlib.suppress(ValueError):
                        self._getters.remove(getter)
                    if not self._getters:
                        self._getters = None
                if self._items and not getter.cancelled():
                    # Woken by a put but cannot take it: wake the next reader instead.
                    self._wake_next()
                raise
        return self.get_nowait()

    def _wake_next(self) -> bool:
        """Wake the first reader still waiting; False if there was none."""
        getters = self._getters
        woken = False
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                woken = True
                break
        if not getters:
            self._getters = None
        return woken

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None  # an idle connection keeps no deque
        self._taken(item)
        return item

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners:
            for joiner in self._joiners:
                if not joiner.done():
                    joiner.set_result(None)
            self._joiners = None

    async def join(self) -> None:
        if self._unfinished == 0:
            return
        joiner = asyncio.get_running_loop().create_future()
        if self._joiners is None:
            self._joiners = []
        self._joiners.append(joiner)
        try:
            await joiner
        finally:
            if self._joiners is not None and joiner in self._joiners:
                self._joiners.remove(joiner)
                if not self._joiners:
                    self._joiners = None


# -- the heartbeat ----------------------------------------------------------------------------


class ChatSocket(eio_socket.AsyncSocket):  # type: ignore[misc]
    """engine.io's session, whose heartbeat is a timer instead of a task.

    engine.io starts a task per ping (``schedule_ping`` -> ``_send_ping``, which sleeps
    ``ping_interval``), so every idle connection keeps one suspended. Here the same wait is
    one ``call_later`` handle; what it then does is what ``_send_ping`` does: unless the
    session is closing or closed, stamp ``last_ping`` and queue a PING (``send()`` would
    first check the ping timeout, which the fresh stamp passes). The timer holds the
    session weakly: a session that ended is freed at once, with whatever its queue held,
    not up to ``ping_interval`` later. engine.io creates its sessions itself, so
    :meth:`Engine.adopt` turns each into this class.
    """

    last_ping: float | None  # set by engine.io: when the last ping was sent

    def schedule_ping(self) -> None:
        # As engine.io: only after the previous ping was answered (or for the first one).
        if self.last_ping:
            self.last_ping = None
            asyncio.get_running_loop().call_later(
                self.server.ping_interval, _ping_if_alive, weakref.ref(self)
            )

    def _ping(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.queue.put_nowait(eio_packet.Packet(eio_packet.PING))


def _ping_if_alive(session: weakref.ref[ChatSocket]) -> None:
    socket = session()
    if socket is not None:
        socket._ping()


# -- the websocket wrapper --------------------------------------------------------------------


#: Received engine.io packets a connection may have waiting for its handler before we stop
#: reading from it (the client's TCP buffer then fills up and it is slowed down).
INBOUND_HIGH_WATER = 32
#: Seconds a client has to answer our WebSocket close frame before the TCP connection is
#: closed anyway.
CLOSE_TIMEOUT = 2.0


class ChatWebSocket(eio_aiohttp.WebSocket, asyncio.Protocol):  # type: ignore[misc]
    """engine.io's aiohttp websocket wrapper: checked, uncompressed, directly writable, and,
    for a connection that starts on the websocket, served without aiohttp after the
    handshake.

    While it runs it is registered in its :class:`Engine`'s ``websockets`` under the
    engine.io sid, so that :meth:`Engine.put` can write to it (:meth:`write_now`) and
    :meth:`Engine.close` can drop its TCP connection (:meth:`abort`).

    **A connection that starts on the websocket** (the JS client's default, and every bot
    that skips long-polling) is *detached* from aiohttp once aiohttp has answered the
    handshake (:meth:`_detach`): this object becomes the transport's protocol, frames are
    parsed by the websocket reader aiohttp made for the handshake (so nothing it already
    read is lost) and handled in callbacks, and aiohttp's request handling finishes. An
    idle connection then keeps no task, no suspended coroutine, no HTTP request and
    headers, no HTTP parser: a transport, this object, its reader, engine.io's session,
    two timers. What ``AsyncSocket._websocket_handler`` does per frame is done here: each
    packet goes to ``AsyncSocket.receive`` in order, by a task that runs only while
    packets wait (:meth:`_receive_waiting`); a client silent for ``ping_interval +
    ping_timeout`` is dropped (:meth:`_watch_silence`); at the end the writer sends what is
    queued and closes, then the session is closed (:meth:`_finish`). As aiohttp's
    websocket does by default, pings are answered, a close frame is answered and ends the
    connection, and a protocol error closes with its code.

    **An upgrade from long-polling** keeps aiohttp's websocket and runs engine.io's own
    handler, which calls :meth:`wait`, :meth:`send` and :meth:`close`.
    """

    def __init__(self, handler: Any, server: Any, engine: Engine) -> None:
        super().__init__(handler, server)
        self._engine = engine
        # engine.io passes its AsyncSocket's bound ``_websocket_handler``.
        self.socket: Any = handler.__self__
        self.transport: asyncio.Transport | None = None
        self.ip = "?"
        self.open = False  # serving: frames may be written directly
        self._detached = False  # this object is the transport's protocol
        # The writer of a detached connection: runs only while packets wait in the send
        # queue.
        self._writer: asyncio.Task[None] | None = None
        self._finished = False  # the writer took the None sentinel, or the send failed
        # Reading a detached connection: aiohttp's reader, the queue it parses into, the
        # packets waiting for engine.io, and the task handing them over.
        self._reader: Any = None
        self._frames: Any = None
        self._inbound: collections.deque[eio_packet.Packet] | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._reading_paused = False  # read by aiohttp's queue too
        self._ended = False  # no more packets are taken; _finish runs or ran
        self._finishing: asyncio.Task[None] | None = None
        self._close_sent = False
        self._closer: asyncio.TimerHandle | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        # The silence watch.
        self._watch: asyncio.TimerHandle | None = None
        self._limit = self._heard = 0.0
        # Frames written directly in this turn of the event loop, sent together at its end
        # (one system call for all the messages a connection gets in a turn).
        self._corked: list[bytes] | None = None
        self._corked_bytes = 0

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.BaseRequest = environ["aiohttp.request"]
        self.environ = environ
        self.ip = environ.get("REMOTE_ADDR", "?")
        # Registered before the handshake, so that closing the session can drop it at once.
        self.transport = request.transport
        sid = self.socket.sid
        links = self._engine.websockets
        links[sid] = self
        sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        try:
            await sock.prepare(request)
        except BaseException:
            self.open = False
            if links.get(sid) is self:
                del links[sid]
            raise
        if self.socket.connected:
            # An upgrade from long-polling: engine.io's own handler serves it to its end.
            self._sock = sock
            self.open = True
            try:
                await self.handler(self)
            finally:
                self.open = False
                if links.get(sid) is self:
                    del links[sid]
                if self.socket.closed:
                    # What its writer could not send is freed with it, now. (After a
                    # failed upgrade the session goes on over long-polling.)
                    self.socket.queue.clear()
            return sock
        if self._detach(request, sock):
            # engine.io keeps the environ for the session's life; the request, and through
            # it aiohttp's per-connection state, must not stay reachable from there.
            environ.pop("aiohttp.request", None)
            self._start()
        else:
            # The connection was lost during the handshake.
            if links.get(sid) is self:
                del links[sid]
            await self.socket.close(
                wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE
            )
        return sock

    # -- detached serving --------------------------------------------------------------------

    def _detach(self, request: web.BaseRequest, sock: web.WebSocketResponse) -> bool:
        """Take the connection over from aiohttp after its handshake; False if it is gone."""
        protocol: Any = request.protocol  # aiohttp's RequestHandler
        transport = protocol.transport
        if transport is None or transport.is_closing():
            return False
        self.transport = transport
        self._reader, self._frames = sock._parser, sock._reader
        self._frames._protocol = self  # its flow control pauses and resumes us
        transport.set_protocol(self)
        # aiohttp forgets the connection as if it had been lost, except that the transport
        # and the websocket reader are ours now: it neither closes the one nor ends the other.
        protocol._payload_parser = None
        protocol.transport = None
        protocol.connection_lost(None)
        # aiohttp closes a websocket response when its handler returns: already closed,
        # this one writes nothing.
        sock._set_closed()
        if not transport.is_reading():
            transport.resume_reading()
        self._detached = True
        return True

    def _start(self) -> None:
        socket = self.socket
        server = self.server
        socket.connected = socket.upgraded = True
        self.open = True
        # No writer task while the connection is idle: the queue starts one when a packet
        # arrives, and it ends when the queue is empty. The OPEN packet is waiting already.
        queue: SendQueue = socket.queue
        queue.consumer = self._start_writer
        if queue.qsize():
            self._start_writer()
        # engine.io gives up on a client silent for ping_interval + ping_timeout. One timer
        # per connection, moved on lazily, does that instead of a timeout per frame.
        loop = asyncio.get_running_loop()
        self._limit = server.ping_interval + server.ping_timeout
        self._heard = loop.time()
        self._watch = loop.call_at(self._heard + self._limit, self._watch_silence)
        self._take_frames()  # what aiohttp's reader parsed before we took over

    def data_received(self, data: bytes) -> None:
        if self._frames is None or self._frames.exception() is not None:
            # The reader failed and takes nothing more. What still comes (the rest of an
            # oversized frame, the client's answer to our close) is read and dropped until
            # the client closes its side: closing with unread data would reset the
            # connection, and the client might lose our close frame.
            return
        if self._heard:
            self._heard = asyncio.get_running_loop().time()
        self._reader.feed_data(data)
        self._take_frames()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self._engine.detached_closed(self.transport)
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        self._end()
        # Nothing is read or written any more. aiohttp's reader queue points back at this
        # object (its flow control): a cycle that would keep the connection, its session
        # and whatever its send queue holds until the collector's next full pass.
        self._frames = self._reader = None
        self.transport = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _take_frames(self) -> None:
        """Handle every message aiohttp's reader has parsed, then any error it hit."""
        frames = self._frames
        while frames._buffer:
            # read() returns without suspending while messages wait (and keeps the
            # queue's size and its reader's flow control right, which popping would not).
            reading = frames.read()
            try:
                reading.send(None)
            except StopIteration as done:
                self._on_message(done.value)
            except Exception:
                break
            else:  # cannot happen: a message was waiting
                reading.close()
                break
        exc = frames.exception()
        if exc is not None and not self._close_sent:
            code = getattr(exc, "code", WSCloseCode.PROTOCOL_ERROR)
            if code == WSCloseCode.MESSAGE_TOO_BIG:
                log.warning(
                    "a frame from %s is over --max-frame-bytes (%d); closing its connection",
                    self.ip,
                    self.server.max_http_buffer_size,
                )
            self._end()
            self._send_close(code)
            transport = self.transport
            if transport is not None and not transport.is_closing() and transport.can_write_eof():
                transport.write_eof()  # nothing follows our close frame

    def _on_message(self, msg: Any) -> None:
        kind = msg.type
        if kind == WSMsgType.CLOSE:
            if not self._close_sent:
                self._end()
                self._send_close(WSCloseCode.OK)
            if self.transport is not None:
                self.transport.close()  # the closing handshake is complete
            return
        if kind == WSMsgType.PING:
            self._write(_frame(0xA, msg.data))
            return
        if self._ended or kind not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        data = msg.data
        if kind == WSMsgType.TEXT and not decodable(data):
            log.warning("malformed engine.io frame from %s; closing its connection", self.ip)
            self._end()
            return
        try:
            pkt = eio_packet.Packet(encoded_packet=data)
        except Exception:
            # decodable() lets through only what engine.io decodes; this is a backstop.
            log.warning("malformed engine.io frame from %s; closing its connection", self.ip)
            self._end()
            return
        if self._inbound is None:
            self._inbound = collections.deque()
        self._inbound.append(pkt)
        if self._receiver is None:
            self._receiver = asyncio.ensure_future(self._receive_waiting())
        elif len(self._inbound) >= INBOUND_HIGH_WATER:
            self.pause_reading()

    async def _receive_waiting(self) -> None:
        """Hand the received packets to engine.io one after another, as engine.io's
        websocket loop does; end when none waits."""
        socket = self.socket
        inbound = self._inbound
        try:
            while inbound and not self._ended:
                pkt = inbound.popleft()
                try:
                    await socket.receive(pkt)
                except eio_exceptions.UnknownPacketError:
                    pass
                except eio_exceptions.SocketIsClosedError:
                    self._end()
                except Exception:
                    log.exception("engine.io connection %s: error handling a packet", socket.sid)
                pkt = None
                if socket.closed:  # e.g. the client sent engine.io's CLOSE
                    self._end()
        finally:
            self._receiver = None
            self._inbound = inbound if inbound else None
            if not self._ended:
                self.resume_reading()

    def _watch_silence(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._heard + self._limit
        if self._receiver is not None:
            # Still handling what it sent: silence counts from when that is done.
            self._watch = loop.call_at(loop.time() + self._limit, self._watch_silence)
        elif loop.time() < due:
            self._watch = loop.call_at(due, self._watch_silence)
        else:
            self._watch = None
            self._end()

    def _end(self) -> None:
        """Take no more packets from this connection and wind it down (:meth:`_finish`)."""
        if self._ended or not self._detached:
            return
        self._ended = True
        self.open = False
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._heard = 0.0
        self._finishing = asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        socket = self.socket
        receiver = self._receiver
        if receiver is not None:
            # It stops after the packet it is handling.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await receiver
        queue: SendQueue = socket.queue
        await queue.put(None)  # the writer sends what is queued, then closes
        writer = self._writer
        queue.consumer = None
        if writer is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer
        links = self._engine.websockets
        if links.get(socket.sid) is self:
            del links[socket.sid]
        await socket.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        # As engine.io does when its websocket handler returns: the session is over.
        sockets = self.server.sockets
        if socket.closed and sockets.get(socket.sid) is socket:
            del sockets[socket.sid]
        # What the writer could not send is freed now, not when the session is.
        queue.clear()
        self._finishing = None

    def _write(self, frame: bytes) -> bool:
        """Write a frame after what was written directly; False if the connection is gone."""
        self.uncork()
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(frame)
        return True

    def _send_close(self, code: int) -> None:
        """Start the closing handshake: our close frame, then the TCP connection is closed
        when the client answers, or after :data:`CLOSE_TIMEOUT`."""
        if self._close_sent:
            return
        self._close_sent = True
        if self._write(_frame(0x8, struct.pack("!H", code))):
            assert self.transport is not None
            self._closer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT, self.transport.close
            )

    async def _drain(self) -> None:
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # -- engine.io's interface -----------------------------------------------------------------

    def abort(self) -> bool:
        """Drop the TCP connection at once; False if it was already gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.abort()
        return True

    async def wait(self) -> Any:
        """The next frame's data (upgraded connections). At the end (closed, or a frame
        engine.io cannot take): None once upgraded, OSError during the upgrade."""
        msg = await self._sock.receive()
        if msg.type == WSMsgType.TEXT:
            if decodable(msg.data):
                return msg.data
            log.warning("malformed engine.io frame from %s; closing its connection", self.ip)
        elif msg.type == WSMsgType.BINARY:
            return msg.data
        elif msg.type == WSMsgType.ERROR and getattr(msg.data, "code", None) == (
            WSCloseCode.MESSAGE_TOO_BIG
        ):
            log.warning(
                "a frame from %s is over --max-frame-bytes (%d); closing its connection",
                self.ip,
                self.server.max_http_buffer_size,
            )
        if self.socket.upgraded:
            # engine.io's loop ends at None ("closed by the client"). An exception would
            # end it too, but its task keeps it, and its traceback the loop's frames (this
            # object, the session and its queue): a cycle only the collector frees.
            return None
        raise OSError("websocket closed")

    async def send(self, message: Any) -> None:
        self.uncork()  # what was written directly goes first
        payload = getattr(message, "payload", None)
        if not self._detached:
            if payload is None:
                await super().send(message)
            else:
                await self._sock.send_frame(payload, WSMsgType.TEXT)
            return
        if payload is not None:
            frame = text_frame(payload)
        elif isinstance(message, bytes):
            frame = _frame(0x2, message)
        else:
            frame = text_frame(message.encode("utf-8"))
        await self._send_frame(frame)

    async def _send_frame(self, frame: bytes) -> None:
        """Write a frame on a detached connection, then wait while the transport's buffer
        is over its high-water mark."""
        if self._close_sent or not self._write(frame):
            raise ConnectionResetError("websocket closed")
        await self._drain()

    async def close(self) -> None:
        if not self._detached:
            await super().close()
        else:
            self._send_close(WSCloseCode.OK)

    # -- the writer of a detached connection ---------------------------------------------------

    def _start_writer(self) -> None:
        if self._writer is None and not self._finished:
            self._writer = asyncio.ensure_future(self._write_queued(self.socket.queue))

    async def _write_queued(self, queue: SendQueue) -> None:
        """Send what waits in the send queue, in order; end when it is empty (the
        connection is idle again) or at the ``None`` sentinel (then close)."""
        try:
            while True:
                try:
                    pkt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                queue.task_done()
                if pkt is None:
                    break
                frame = getattr(pkt, "frame", None)
                if frame is not None:
                    await self._send_frame(frame)
                else:
                    await self.send(pkt.encode())
                pkt = frame = None  # keep no packet alive while waiting
        except Exception:
            pass  # the connection broke; the reader notices and cleans up
        finally:
            # Synchronous with the empty-queue check above: from here direct writes may go.
            self._writer = None
        self._finished = True
        self.uncork()
        await self.close()

    # -- direct writes -------------------------------------------------------------------------

    def writer_idle(self) -> bool:
        """Whether no writer holds or is about to take a packet: a detached connection's
        writer is not running, or engine.io's writer (upgraded connections) waits in
        ``queue.get()``."""
        if self._detached:
            return self._writer is None and not self._finished
        return bool(self.socket.queue.waiting())

    def write_now(self, pkt: eio_packet.Packet) -> bool:
        """Write ``pkt``'s frame to the transport if the connection is idle; else False.

        Idle means nothing can be ahead of the frame: the send queue is empty, no writer
        holds a packet (:meth:`writer_idle`), and the transport buffer is not backed up. A
        connection that is not idle gets the packet through its queue, under its bound.
        """
        frame: bytes | None = getattr(pkt, "frame", None)
        socket = self.socket
        if (
            frame is None
            or not self.open
            or self._close_sent
            or (self._sock is not None and self._sock.closed)  # set before aiohttp's close frame
            or socket.closing
            or socket.closed
            or socket.upgrading
            or not socket.upgraded
        ):
            return False
        queue = socket.queue
        if queue.qsize() or queue.overflowed or not self.writer_idle():
            return False
        transport = self.transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() + self._corked_bytes > WRITE_HIGH_WATER
        ):
            return False
        if self._corked is None:
            self._corked = [frame]
            self._engine.cork(self)
        else:
            self._corked.append(frame)
        self._corked_bytes += len(frame)
        return True

    def uncork(self) -> None:
        """Write the frames :meth:`write_now` took in this turn of the loop, in one write."""
        frames = self._corked
        if frames is None:
            return
        self._corked = None
        self._corked_bytes = 0
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the connection is gone; its client catches up with ``since``
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


# -- one server's hooks ---------------------------------------------------------------------


class Engine:
    """chatapp's hooks in one python-socketio AsyncServer, and what is built on them.

    Created once per server; it replaces the aiohttp driver's ``translate_request`` and
    ``websocket`` entries and ``AsyncServer._send_packet``. The rest of chatapp reaches
    engine.io sessions and python-socketio's connection state only through its methods.
    """

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._eio = sio.eio
        #: engine.io sid -> its websocket, while one serves it.
        self.websockets: dict[str, ChatWebSocket] = {}
        self._corked: list[ChatWebSocket] = []
        self._check_request: RequestCheck | None = None
        driver = self._eio._async
        self._translate = driver["translate_request"]
        # A copy: the driver table is a module-level dict of engine.io's, shared by servers.
        self._eio._async = {
            **driver,
            "translate_request": self._translate_request,
            "websocket": self._websocket,
        }
        # Every Socket.IO packet sent to one client (acks, CONNECT, ...) takes the same
        # path as room frames, so it neither wakes a writer nor overtakes them.
        self._send_binary_packet = sio._send_packet
        sio._send_packet = self._send_packet
        #: What every send queue holds, together (its limit is set by the transport guard).
        self.backlog = Backlog()
        # engine.io's own session monitor (``monitor_clients``) must be off: see _monitor.
        self._monitor: asyncio.Task[None] | None = None
        # Every session's send queue (engine.io makes it with server.create_queue()).
        self._eio.create_queue = self._create_queue
        self._detached_close: Callable[[asyncio.BaseTransport], None] | None = None

    def _create_queue(self) -> SendQueue:
        return SendQueue(backlog=self.backlog)

    def _websocket(self, handler: Any, server: Any) -> ChatWebSocket:
        return ChatWebSocket(handler, server, self)

    def cork(self, ws: ChatWebSocket) -> None:
        """Have ``ws``'s direct frames written at the end of this turn of the event loop.

        Callbacks run in the order they were scheduled, so this runs before any writer
        task that a later packet to ``ws`` starts (and a writer uncorks first anyway).
        """
        if not self._corked:
            asyncio.get_running_loop().call_soon(self._uncork_all)
        self._corked.append(ws)

    def _uncork_all(self) -> None:
        corked, self._corked = self._corked, []
        for ws in corked:
            ws.uncork()

    def on_detached_close(self, callback: Callable[[asyncio.BaseTransport], None]) -> None:
        """Have ``callback(transport)`` called when a detached websocket's TCP connection
        closes. The websocket is then its transport's protocol: aiohttp, and whatever
        wraps aiohttp's protocol, no longer hear of that connection."""
        self._detached_close = callback

    def detached_closed(self, transport: asyncio.BaseTransport) -> None:
        if self._detached_close is not None:
            self._detached_close(transport)

    # -- hooks for the transport guard ------------------------------------------------------

    def check_requests(self, check: RequestCheck) -> None:
        """Run ``check(request, environ)`` on every request to /socket.io/ before engine.io
        reads it; it returns the environ engine.io gets, or raises an HTTP error."""
        self._check_request = check

    async def _translate_request(self, request: web.Request) -> dict[str, Any]:
        environ: dict[str, Any] = self._translate(request)
        if self._check_request is not None:
            environ = await self._check_request(request, environ)
        return environ

    def intercept(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Put ``handler`` in place of python-socketio's handler of engine.io ``event``
        (connect, message, disconnect); returns that handler, for ``handler`` to call."""
        previous: Callable[..., Any] = self._eio.handlers[event]
        self._eio.on(event, handler)
        return previous

    def adopt(
        self, eio_sid: str, limit: int, max_bytes: int, on_overflow: Callable[[str], None]
    ) -> None:
        """Make a new session a :class:`ChatSocket` and bound its :class:`SendQueue` (in
        packets and bytes; ``on_overflow`` gets the reason); call from the engine.io
        connect event (engine.io schedules the first ping after it)."""
        socket = self._eio.sockets.get(eio_sid)
        if socket is None:
            return
        if type(socket) is eio_socket.AsyncSocket:
            socket.__class__ = ChatSocket  # adds methods only: no state to convert
        queue = socket.queue
        assert isinstance(queue, SendQueue), "made by Engine._create_queue"
        queue.limit = limit
        queue.max_bytes = max_bytes
        queue._on_overflow = on_overflow
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch_sessions())

    async def _watch_sessions(self) -> None:
        """What engine.io's service task does (``monitor_clients``, turned off in the
        server): visit every session once per ``ping_timeout``, closing one whose client
        stopped answering pings and forgetting one that closed.

        engine.io walks a copy of its session table, and its loop variable keeps the
        session it last visited while it sleeps: a session that ended stayed alive, with
        what its queue held, for up to ``ping_timeout`` after its connection. This walk
        holds only session ids.
        """
        eio = self._eio
        while True:
            sids = list(eio.sockets)
            if not sids:
                await asyncio.sleep(eio.ping_timeout)
                continue
            pause = eio.ping_timeout / len(sids)
            for sid in sids:
                socket = eio.sockets.get(sid)
                try:
                    if socket is None:
                        pass
                    elif socket.closed:
                        del eio.sockets[sid]
                    elif not socket.closing:
                        await socket.check_ping_timeout()
                except Exception:
                    log.exception("engine.io session %s: error checking its heartbeat", sid)
                socket = None
                await asyncio.sleep(pause)

    def has_session(self, eio_sid: str) -> bool:
        return eio_sid in self._eio.sockets

    def websocket(self, eio_sid: str) -> ChatWebSocket | None:
        return self.websockets.get(eio_sid)

    async def close(self, eio_sid: str, reason: str, abort: bool = False) -> None:
        """Close one engine.io session; ``abort`` drops its TCP connection too."""
        socket = self._eio.sockets.get(eio_sid)
        if socket is not None and not socket.closed:
            await socket.close(wait=False, abort=abort, reason=reason)
        ws = self.websockets.get(eio_sid)
        if abort and ws is not None:
            # A client that does not read leaves the writer blocked on a full TCP buffer,
            # and only dropping the connection frees it.
            ws.abort()

    def abort_websockets(self) -> int:
        """Drop every websocket still open (at shutdown, after the clients had their grace)."""
        websockets = list(self.websockets.values())
        self.websockets.clear()
        return sum(ws.abort() for ws in websockets)

    async def close_all(self, grace: float) -> None:
        """Close every engine.io connection, waiting up to ``grace`` s for them to flush.

        Engine.IO-level closing (no Socket.IO DISCONNECT) makes clients reconnect by
        themselves. ``AsyncServer.disconnect()`` is not used because it waits for each send
        queue to drain, forever if that connection's writer has already ended.
        """
        eio = self._eio
        sockets = list(eio.sockets.values())
        for socket in sockets:
            await socket.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
            # The JS client ignores engine.io's CLOSE on a WebSocket (only its polling
            # transport acts on it), and engine.io keeps the WebSocket open until its writer
            # idles out (~20 s). None after CLOSE ends the writer, which closes the socket.
            socket.queue.put_nowait(None)
        joins = [asyncio.ensure_future(s.queue.join()) for s in sockets]
        if joins:
            _, pending = await asyncio.wait(joins, timeout=grace)
            for join in pending:
                join.cancel()
        eio.sockets.clear()
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor

    # -- Socket.IO connection state -------------------------------------------------------------

    def eio_sid(self, sid: str) -> str | None:
        """The engine.io session behind Socket.IO connection ``sid`` (namespace "/")."""
        eio_sid: str | None = self._sio.manager.eio_sid_from_sid(sid, "/")
        return eio_sid

    def sid(self, eio_sid: str) -> str | None:
        """The Socket.IO connection (namespace "/") on engine.io session ``eio_sid``."""
        sid: str | None = self._sio.manager.sid_from_eio_sid(eio_sid, "/")
        return sid

    def is_connected(self, sid: str) -> bool:
        """Whether python-socketio has accepted connection ``sid`` (its connect handler
        returned) and not yet disconnected it."""
        return bool(self._sio.manager.is_connected(sid, "/"))

    def is_open(self, sid: str) -> bool:
        """Whether the connection behind Socket.IO ``sid`` still has a live transport."""
        eio_sid = self.eio_sid(sid)
        socket = self._eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket is not None and not socket.closed

    def enter_room(self, sid: str, room: str) -> None:
        """Put local connection ``sid`` in ``room`` now (``AsyncServer.enter_room`` awaits,
        and with Redis publishes the change to every process)."""
        self._sio.manager.basic_enter_room(sid, "/", room)

    async def forget(self, sid: str) -> None:
        """Drop python-socketio's record of ``sid`` without sending it anything (for a
        connection whose transport closed before its connect handler returned)."""
        await self._sio.manager.disconnect(sid, "/", ignore_queue=True)

    # -- sending --------------------------------------------------------------------------------

    async def _send_packet(self, eio_sid: str, pkt: sio_packet.Packet) -> None:
        encoded = pkt.encode()
        if isinstance(encoded, str):
            self.put(eio_sid, FramedPacket(encoded))
        else:
            await self._send_binary_packet(eio_sid, pkt)

    def packet(self, event: str, data: Any) -> FramedPacket:
        """Encode a server event once, for any number of recipients."""
        pkt = self.encode("/", [event, data])
        assert pkt is not None, "chat events carry no binary data"
        return pkt

    def encode(self, namespace: str, data: list[Any]) -> FramedPacket | None:
        """Encode an EVENT packet once; None if it has binary attachments."""
        # binary=False skips python-socketio's walk of the whole payload looking for bytes;
        # bytes make the JSON encoder raise instead.
        pkt = self._sio.packet_class(sio_packet.EVENT, namespace=namespace, data=data, binary=False)
        try:
            return FramedPacket(pkt.encode())
        except TypeError:
            return None

    def put(self, eio_sid: str, pkt: eio_packet.Packet) -> bool:
        """Send ``pkt`` to one connection after everything sent to it before; False if gone.

        Written at once if the connection is idle (:meth:`ChatWebSocket.write_now`), else
        queued, which may overflow the queue and drop a client that does not read.
        """
        ws = self.websockets.get(eio_sid)
        if ws is not None and ws.write_now(pkt):
            return True
        socket = self._eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return False
        socket.queue.put_nowait(pkt)
        return True


# -- client managers ------------------------------------------------------------------------


class LocalManager(socketio.AsyncManager):  # type: ignore[misc]
    """AsyncManager whose emits without callback are encoded once and handed over in order.

    Subclasses take events before local delivery by overriding :meth:`route`. Both this
    process's emits and, with :class:`RedisManager`, those of other processes arrive here.
    """

    engine: Engine | None = None

    def route(self, event: str, data: Any, namespace: str) -> bool:
        """Take an event without callback before local delivery; True if it was taken."""
        return False

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> Any:
        namespace = namespace or "/"
        if callback is None:
            if self.route(event, data, namespace):
                return None
            if self.engine is not None and self._send(event, data, namespace, to or room, skip_sid):
                return None
        return await super().emit(
            event,
            data,
            namespace,
            room=room,
            skip_sid=skip_sid,
            callback=callback,
            to=to,
            **kwargs,
        )

    def _send(self, event: str, data: Any, namespace: str, room: Any, skip_sid: Any) -> bool:
        """``AsyncManager.emit`` without callback, encoded once and handed over in order.

        False if the event has binary attachments (left to python-socketio).
        """
        assert self.engine is not None
        if namespace not in self.rooms:
            return True
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        pkt = self.engine.encode(namespace, [event, *args])
        if pkt is None:
            return False
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid not in skip:
                self.engine.put(eio_sid, pkt)
        return True


class _RedisLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """python-socketio's Redis manager logs outages as errors with the cause in ``extra``.

    chatapp rides them out (history, self-check, readiness), so they are warnings here,
    with the cause in the line.
    """

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        cause = (kwargs.get("extra") or {}).get("redis_exception")
        return (f"{msg} ({cause})" if cause else msg), kwargs

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.warning(msg, *args, **kwargs)


class RedisManager(socketio.AsyncRedisManager, LocalManager):  # type: ignore[misc]
    """AsyncRedisManager with its publishing, its listener's input and its listener task
    handed to the subclass, and whose local deliveries go through :class:`LocalManager`.

    The MRO puts LocalManager (and any manager class a subclass lists after this one)
    between AsyncPubSubManager and AsyncManager: AsyncPubSubManager delivers both this
    process's emits and those heard from Redis with ``super().emit``.
    """

    # Set by python-socketio: the listener task and the clients it listens with.
    thread: asyncio.Task[None] | None
    redis: Any
    pubsub: Any

    def __init__(
        self, url: str, channel: str, logger: logging.Logger, redis_options: dict[str, Any]
    ) -> None:
        super().__init__(
            url, channel=channel, logger=_RedisLog(logger, {}), redis_options=redis_options
        )
        self._closing: set[asyncio.Task[None]] = set()  # replaced listener clients

    # -- what subclasses implement --------------------------------------------------------------

    def outgoing(self, data: dict[str, Any]) -> None:
        """Publish ``data`` (a dict for the channel) without blocking the caller."""
        raise NotImplementedError

    def heard(self, message: Any) -> bool:
        """See a message from the channel first; True if it is not for python-socketio."""
        return False

    def subscribed(self) -> None:
        """Redis confirmed a subscription of the listener (the first, or after it lost the
        previous one): it hears the channel from now on."""

    # -- hooks ----------------------------------------------------------------------------------

    async def _publish(self, data: dict[str, Any]) -> None:
        # AsyncRedisManager's own retries against an unreachable Redis while the emitting
        # handler (and the sender's ack) waits.
        self.outgoing(data)

    async def _listen(self) -> AsyncIterator[Any]:
        async for message in super()._listen():
            if not self.heard(message):
                yield message

    def _redis_connect(self) -> None:
        # python-socketio's listener calls this before each (re)subscription, and leaves
        # the clients it replaces open.
        stale = [client for client in (self.pubsub, self.redis) if client is not None]
        super()._redis_connect()
        # Unlike python-socketio's, this pubsub passes on subscribe confirmations, so that
        # _redis_listen_with_retries sees every subscription.
        self.pubsub = self.redis.pubsub()
        if stale:
            # After a read error redis-py reconnects and re-subscribes the old connection,
            # then raises: nobody would read it, and Redis would keep sending to it.
            task = asyncio.create_task(_close_clients(stale), name="fanout-close-stale")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        async for message in super()._redis_listen_with_retries():
            if message["type"] == "subscribe":
                self.subscribed()
            else:
                yield message

    def dumps(self, data: dict[str, Any]) -> str:
        """``data`` as the channel carries it (the server's JSON module)."""
        return str(self.json.dumps(data))

    def start_listening(self) -> None:
        """Start the listener now; python-socketio would wait for the first connection."""
        if not self.server.manager_initialized:
            self.server.manager_initialized = True
            self.initialize()

    async def restart_listener(self) -> None:
        await self.stop_listener()
        self.thread = self.server.start_background_task(self._thread)

    async def stop_listener(self) -> None:
        """Stop the listener task and close its clients (a restart makes new ones)."""
        thread = getattr(self, "thread", None)
        self.thread = None
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await thread
        # The listener builds fresh clients when it (re)subscribes; close the old ones.
        await _close_clients([c for c in (self.pubsub, self.redis) if c is not None])
        self.pubsub = self.redis = None

    async def close_listener(self) -> None:
        """Stop the listener for good, once the clients it replaced are closed too."""
        await self.stop_listener()
        await asyncio.gather(*self._closing, return_exceptions=True)


async def _close_clients(clients: list[Any]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.aclose(), 1.0)


# -- the libraries' logging -------------------------------------------------------------------


class _LibraryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """python-engineio/-socketio's logger, made fit for a server facing the network.

    They log every packet at INFO (with its data, which may hold an access token), so
    anything below WARNING is dropped. With ``demote``, engine.io's ``error()`` calls,
    which all report a client's protocol mistakes (bad origin, stale session id...), become
    warnings; tracebacks (``exception()``) stay errors.
    """

    def __init__(self, name: str, demote: bool) -> None:
        super().__init__(logging.getLogger(name), {})
        self.demote = demote

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING or msg == "Cannot send to sid %s":
            # That one is a broadcast racing a disconnect: expected, and not actionable.
            return
        if self.demote and level == logging.ERROR and not kwargs.get("exc_info"):
            level = logging.WARNING
        super().log(level, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


def library_logger(name: str, *, demote: bool = False) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The ``logger=`` / ``engineio_logger=`` to hand to ``socketio.AsyncServer``."""
    return _LibraryLog(name, demote)
