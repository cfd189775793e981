"""The websocket of one engine.io session: checked, uncompressed, written directly, and
detached from aiohttp once the handshake is answered.

**Write directly, in order and bounded.** :class:`ChatWebSocket` replaces engine.io's
aiohttp websocket wrapper. A frame is written straight to the transport only while the
connection is idle: nothing in its send queue, no writer holding a packet taken but not yet
written, and at most :data:`~chatapp.sendqueue.WRITE_HIGH_WATER` bytes waiting in its
transport buffer. Otherwise the packet joins the queue behind what is there, and the writer
sends it in turn under flow control. On a detached websocket (below) the writer is a task
that the queue starts when a packet arrives and that ends when the queue is empty, so an
idle connection has none (an upgraded connection keeps engine.io's writer, idle while it
waits in ``get()``). So nothing overtakes a queued packet, and a client that stops reading
stops being idle once its buffer backs up: from then on its packets queue, and
:class:`~chatapp.sendqueue.SendQueue`'s bound drops it.

**Cork.** The frames written directly to a connection in one turn of the event loop are
joined and written at its end (:meth:`~chatapp.sessions.Sessions.cork`), one system call
for all of them; until then they count against ``WRITE_HIGH_WATER``.

**No permessage-deflate.** The websocket is prepared with ``compress=False``, as Node's
socket.io does by default. Compressing every frame once per connection cost more CPU than
all the rest of a delivery, a deflate context costs ~300 KB per connection, and a frame
shared by all members cannot be compressed per connection. Chat frames are small; a client
offering the extension gets uncompressed frames (RFC 7692 allows it).

**Memory per connection.** A connection that starts on the websocket is detached from
aiohttp once aiohttp has answered the handshake (:meth:`ChatWebSocket._detach`): the
:class:`ChatWebSocket` becomes the transport's protocol and does what engine.io's
``AsyncSocket._websocket_handler`` does, in callbacks and timers, and aiohttp's request
handling finishes. An idle connection keeps no task, no suspended coroutine chain, no HTTP
request, headers or parser (an upgrade from long-polling keeps aiohttp's websocket and runs
engine.io's own handler).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
from collections.abc import Iterator
from typing import Any, Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from .fastpaths import SelfCheckFailed
from .frames import decodable, socketio_message, text_frame, ws_frame
from .sendqueue import WRITE_HIGH_WATER, SendQueue

log = logging.getLogger(__name__)


class WebSocketHost(Protocol):
    """What a :class:`ChatWebSocket` needs of the server it serves
    (:class:`~chatapp.sessions.Sessions`)."""

    #: engine.io sid -> its websocket, while one serves it.
    websockets: dict[str, ChatWebSocket]

    def may_write_at_once(self) -> bool:
        """Whether an idle connection's frame may be written now rather than corked."""

    def cork(self, ws: ChatWebSocket) -> None:
        """Have ``ws``'s direct frames written at the end of this turn of the event loop."""

    def detached_closed(self, transport: asyncio.BaseTransport) -> None:
        """A detached websocket's TCP connection closed."""

    @property
    def detaching(self) -> bool:
        """Whether a connection that starts on the websocket is detached from aiohttp (the
        ``detach`` fast path, on once :func:`check_detach` passed)."""


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

    While it runs it is registered in its host's ``websockets`` under the engine.io sid,
    so that ``Sessions.put`` can write to it (:meth:`write_now`) and ``Sessions.close``
    can drop its TCP connection (:meth:`abort`).

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

    def __init__(self, handler: Any, server: Any, host: WebSocketHost) -> None:
        super().__init__(handler, server)
        self._host = host
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
        links = self._host.websockets
        links[sid] = self
        sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        try:
            await sock.prepare(request)
        except BaseException:
            self.open = False
            if links.get(sid) is self:
                del links[sid]
            raise
        if self.socket.connected or not self._host.detaching:
            # An upgrade from long-polling (or the detach fast path is off): engine.io's
            # own handler serves it to its end.
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
        taken = detach(request, sock, self)
        if taken is None:
            return False
        self.transport, self._reader, self._frames = taken
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
            self._host.detached_closed(self.transport)
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
        for msg in parsed_messages(frames):
            self._on_message(msg)
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
            self._write(ws_frame(0xA, msg.data))
            return
        if self._ended or kind not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        data = msg.data
        pkt = socketio_message(data) if kind == WSMsgType.TEXT else None
        if pkt is None:
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
            self._receiver = asyncio.get_running_loop().create_task(self._receive_waiting())
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
        links = self._host.websockets
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
        if self._write(ws_frame(0x8, struct.pack("!H", code))):
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
            frame = ws_frame(0x2, message)
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
        self.uncork()  # what was written directly goes before the close frame
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
        """Write ``pkt``'s frame to the transport (now, or corked until the end of this
        turn of the event loop) if the connection is idle; else False.

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
            if self._host.may_write_at_once():
                transport.write(frame)
                return True
            self._corked = [frame]
            self._host.cork(self)
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


# -- taking a connection over from aiohttp -----------------------------------------------------


def detach(
    request: web.BaseRequest, sock: web.WebSocketResponse, protocol: asyncio.Protocol
) -> tuple[asyncio.Transport, Any, Any] | None:
    """Make ``protocol`` the protocol of the connection of ``request``, whose websocket
    handshake ``sock`` has answered, and have aiohttp forget the connection.

    Returns the transport, aiohttp's websocket reader (feed it what the transport
    receives) and the queue it parses into (read it with :func:`parsed_messages`); None
    if the connection is gone. ``protocol`` must have ``_reading_paused``,
    ``pause_reading()`` and ``resume_reading()``: the queue drives them (flow control).
    """
    handler: Any = request.protocol  # aiohttp's RequestHandler
    transport: Any = handler.transport
    if transport is None or transport.is_closing():
        return None
    # The handler holds the websocket reader as its payload parser since the handshake
    # (the response keeps it too from aiohttp 3.14 on, not before).
    reader: Any = handler._payload_parser
    frames: Any = sock._reader
    if reader is None or frames is None:
        raise RuntimeError("aiohttp's websocket reader is not where detach looks for it")
    frames._protocol = protocol  # its flow control pauses and resumes the protocol
    transport.set_protocol(protocol)
    # aiohttp forgets the connection as if it had been lost, except that the transport
    # and the websocket reader are ours now: it neither closes the one nor ends the other.
    handler._payload_parser = None
    handler.transport = None
    handler.connection_lost(None)
    # aiohttp closes a websocket response when its handler returns: already closed, this
    # one writes nothing.
    sock._set_closed()
    if not transport.is_reading():
        transport.resume_reading()
    return transport, reader, frames


def parsed_messages(frames: Any) -> Iterator[Any]:
    """The messages aiohttp's reader has parsed into ``frames`` so far, each taken once."""
    while frames._buffer:
        # read() returns without suspending while messages wait (and keeps the queue's
        # size and its reader's flow control right, which popping would not).
        reading = frames.read()
        try:
            reading.send(None)
        except StopIteration as done:
            yield done.value
        except Exception:
            return
        else:  # cannot happen: a message was waiting
            reading.close()
            return


class _Echo(asyncio.Protocol):
    """The far end of :func:`check_detach`: answers each text message in upper case."""

    def __init__(self) -> None:
        self.taken: tuple[asyncio.Transport, Any, Any] | None = None
        self._reading_paused = False

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False

    def data_received(self, data: bytes) -> None:
        assert self.taken is not None
        transport, reader, frames = self.taken
        reader.feed_data(data)
        for msg in parsed_messages(frames):
            if msg.type == WSMsgType.TEXT:
                transport.write(text_frame(msg.data.upper().encode()))
            elif msg.type == WSMsgType.CLOSE:
                transport.write(ws_frame(0x8, struct.pack("!H", WSCloseCode.OK)))
                transport.close()


async def check_detach() -> None:
    """The ``detach`` fast path's self-check: detach a websocket on a loopback connection
    from the installed aiohttp, then exchange messages and the closing handshake over it,
    and see that aiohttp's request handling is over."""
    loop = asyncio.get_running_loop()
    echo = _Echo()
    handled: asyncio.Future[bool] = loop.create_future()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(compress=False)
        await sock.prepare(request)
        try:
            echo.taken = detach(request, sock, echo)
        except Exception as exc:
            handled.set_exception(exc)
            raise
        handled.set_result(echo.taken is not None)
        return sock

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = runner.server
        assert server is not None
        port = runner.addresses[0][1]
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/", autoping=False) as ws,
        ):
            if not await handled:
                raise SelfCheckFailed("the connection was gone after the handshake")
            for text in ("ping", "x" * 70_000):
                await ws.send_str(text)
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT or msg.data != text.upper():
                    raise SelfCheckFailed(f"sent {text[:8]!r}, got {msg.type.name} back")
            if server.connections:
                raise SelfCheckFailed("aiohttp still holds the detached connection")
            await ws.close()
            if ws.close_code != WSCloseCode.OK:
                raise SelfCheckFailed(f"the closing handshake ended with {ws.close_code}")
    finally:
        await runner.cleanup()
