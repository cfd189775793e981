"""The engine.io sessions and Socket.IO connections of one server, and the write path to them.

:class:`Sessions` makes the python-socketio ``AsyncServer`` and holds every hook into it:
the rest of chatapp reaches engine.io sessions and python-socketio's connection state only
through its methods.

**Ordering we control.** Through the public API a message to a room of N members costs N
tasks, N queue puts, N writer wake-ups, N encodings and WebSocket frames. Here it costs one
encoding and one frame (:mod:`chatapp.frames`), then at most one ``transport.write`` per
member and turn of the event loop. A packet is handed to each recipient synchronously
(:meth:`Sessions.put`), so the order in which the feed decides equals the order on every
wire (``AsyncManager.emit`` spawns a task per recipient and returns control in between).
Every other event without callback (presence, typing, ``managers.LocalManager``) takes
the same path; so does every packet python-socketio sends to one client (acks, CONNECT;
``AsyncServer._send_packet``) with the ``direct`` fast path on, which also writes straight
to an idle connection's transport (:meth:`ChatWebSocket.write_now`), corked per turn of
the loop. With it off, every packet goes through the connection's send queue and its
writer, in the same order (python-socketio's own ``_send_packet`` queues without
suspending, as :meth:`Sessions.put` does).

**Memory of a closed connection.** It is freed by reference counting as soon as the
connection is over, not at the cycle collector's next full pass (rare: ``cli`` raises its
thresholds and freezes what start-up built), which could be long after a client left
megabytes queued. So nothing a connection's objects form may be a cycle, and nothing
long-lived may keep them: a detached ``ChatWebSocket`` drops aiohttp's reader queue (which
points back at it) when its connection is lost; an upgraded one ends engine.io's loop with
``None`` rather than an exception (which its task would keep together with the loop's
frames); the send queue is emptied when the transport ends; and with the ``heartbeat``
fast path, the heartbeat timer holds its session weakly (``heartbeat.ChatSocket``) and
the walk over the sessions' heartbeats (:meth:`Sessions.adopt` starts it, in place of
engine.io's) holds session ids, where engine.io's holds a copy of its session table (so,
without it, an ended session and its emptied queue may live up to ``ping_timeout`` more).

**Hardening** (the policy is ``transport.TransportGuard``): checking each websocket frame
before engine.io decodes it (``ChatWebSocket.wait``; engine.io raises on some inputs),
checking polling bodies before engine.io reads them (:meth:`Sessions.check_requests`),
seeing engine.io's connect/message/disconnect events before python-socketio does
(:meth:`Sessions.intercept`), bounding each send queue (:meth:`Sessions.adopt`), closing a
session and dropping its TCP connection (:meth:`Sessions.close`), and the libraries' log
lines (``liblog.library_logger``).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import aiohttp
import socketio
from aiohttp import WSMsgType, web
from engineio import async_socket as eio_socket
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .events import Events
from .fastpaths import FastPaths, SelfCheckFailed, loopback
from .frames import FramedPacket, text_frame
from .heartbeat import ChatSocket
from .sendqueue import Backlog, SendQueue
from .sessionids import SessionIds
from .tasks import cancel_and_wait
from .websocket import ChatWebSocket

log = logging.getLogger(__name__)

RequestCheck = Callable[[web.Request, dict[str, Any]], Awaitable[dict[str, Any]]]
#: Frames a calm turn of the event loop writes to idle connections at once, before it corks
#: the rest (:meth:`Sessions.may_write_at_once`): a message to all of a room of 20 or 50.
WRITE_AT_ONCE = 64
#: A turn of the event loop is calm when no frames were offered or written in this many
#: seconds before it.
CALM_GAP = 0.001
#: The client manager a :class:`Sessions` makes its server with.
ManagerT = TypeVar("ManagerT")


class LibraryMismatch(Exception):
    """An installed library lacks a hook that chatapp's limits and checks need (they have
    no stock path: a server without them would not be safe to run)."""

    def __init__(self, library: str, missing: str) -> None:
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "(version unknown)"
        super().__init__(
            f"{library} {version} is not one chatapp can enforce its limits with: {missing}; "
            "install the versions .ci/constraints.txt lists"
        )


class Sessions(Generic[ManagerT]):
    """One python-socketio AsyncServer with chatapp's hooks in it, and what is built on them.

    It makes the server (``sio``) with the client manager ``client_manager(self)`` returns
    (``manager``) and the ``options`` of ``socketio.AsyncServer``, then replaces the aiohttp
    driver's ``translate_request`` and ``websocket`` entries and ``create_queue`` (and, with
    the ``direct`` fast path, ``AsyncServer._send_packet``: :meth:`use_fast_paths`).
    ``detached_close(transport)`` is called when a detached websocket's TCP connection
    closes: the websocket is then its transport's protocol, and aiohttp, and whatever wraps
    aiohttp's protocol, no longer hear of that connection.
    """

    def __init__(
        self,
        client_manager: Callable[[Sessions[ManagerT]], ManagerT],
        fast_paths: FastPaths,
        detached_close: Callable[[asyncio.BaseTransport], None] | None = None,
        **options: Any,
    ) -> None:
        #: engine.io sid -> its websocket, while one serves it.
        self.websockets: dict[str, ChatWebSocket] = {}
        self._corked: list[ChatWebSocket] = []
        #: Seconds without frames offered or written after which a turn is calm.
        self.calm_gap = CALM_GAP
        self._offered = 0  # frames offered to idle connections in this turn of the loop
        self._last_frames = -CALM_GAP  # when a turn last offered or wrote frames
        self._calm = False
        self._check_request: RequestCheck | None = None
        self._detached_close = detached_close
        self._fast = fast_paths
        self._events: Events | None = None  # the events fast path, once on
        #: What every send queue holds, together (its limit is set by the transport guard).
        self.backlog = Backlog()
        # The manager delivers through this object, which hooks into the server: the
        # manager is made first, with it, and the server with the manager.
        self.manager = client_manager(self)
        sio = socketio.AsyncServer(
            client_manager=self.manager,
            async_mode="aiohttp",
            # engine.io watches the sessions' heartbeats unless the heartbeat fast path
            # does it without keeping ended ones (use_fast_paths, _watch_sessions).
            monitor_clients=True,
            **options,
        )
        self.sio = sio
        self._eio = sio.eio
        try:
            driver = self._eio._async
            self._translate = driver["translate_request"]
            # The limits need each request's address and body, and each websocket frame,
            # before engine.io reads them: the public API has no place for that.
            if "websocket" not in driver or not callable(self._translate):
                raise KeyError("websocket")
        except (AttributeError, KeyError, TypeError) as exc:
            raise LibraryMismatch(
                "python-engineio", f"its aiohttp driver table (AsyncServer._async) has no {exc}"
            ) from None
        # A copy: the driver table is a module-level dict of engine.io's, shared by servers.
        self._eio._async = {
            **driver,
            "translate_request": self._translate_request,
            "websocket": self._websocket,
        }
        # chatapp's session walk, in place of engine.io's with the heartbeat fast path.
        self._monitor: asyncio.Task[None] | None = None
        # Every session's send queue (engine.io makes it with server.create_queue()).
        self._eio.create_queue = self._create_queue
        # engine.io's and Socket.IO's session ids (both call server.generate_id()).
        self._eio.generate_id = SessionIds().next

    @property
    def detaching(self) -> bool:
        return "detach" in self._fast

    @property
    def direct(self) -> bool:
        """Whether frames go straight to idle connections (the ``direct`` fast path, on once
        :func:`check_direct` passed)."""
        return "direct" in self._fast

    def use_fast_paths(self) -> None:
        """Put the fast paths on that passed their self-checks (after ``FastPaths.start``,
        before the first connection)."""
        if "heartbeat" in self._fast:
            # engine.io starts its walk at its first request: chatapp's runs instead.
            self._eio.start_service_task = False
        if self.direct:
            # Every Socket.IO packet sent to one client (acks, CONNECT, ...) takes the same
            # path as room frames, so it neither wakes a writer nor overtakes them.
            self._library_send_packet = self.sio._send_packet
            self.sio._send_packet = self._send_packet
        if "events" in self._fast:
            self._events = Events(self.sio)

    def event_call(self, eio_sid: str, data: Any) -> Coroutine[Any, Any, None] | None:
        """With the ``events`` fast path, the handling of a client's plain Socket.IO event
        (its handler, then its ack), to await; None if python-socketio must handle
        ``data`` (see :mod:`chatapp.events`)."""
        events = self._events
        return None if events is None else events.call(eio_sid, data)

    def _create_queue(self) -> SendQueue:
        return SendQueue(backlog=self.backlog)

    def _websocket(self, handler: Any, server: Any) -> ChatWebSocket:
        return ChatWebSocket(handler, server, self)

    def may_write_at_once(self) -> bool:
        """Whether an idle connection's frame may go to its transport now, not at the end
        of this turn of the event loop (:meth:`cork`).

        In a calm turn, one that begins :attr:`calm_gap` seconds or more after frames were
        last offered or written, the first :data:`WRITE_AT_ONCE` frames may: a message
        reaches its first readers without waiting until it is offered to all of them.
        While frames keep coming there is nothing to wait for, and each connection's
        frames of a turn are gathered into one write.
        """
        offered = self._offered
        if not offered:
            self._calm = time.monotonic() - self._last_frames >= self.calm_gap
            asyncio.get_running_loop().call_soon(self._next_turn)
        self._offered = offered + 1
        return self._calm and offered < WRITE_AT_ONCE

    def _next_turn(self) -> None:
        self._offered = 0
        self._last_frames = time.monotonic()

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
        self._last_frames = time.monotonic()

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
        try:
            previous: Callable[..., Any] = self._eio.handlers[event]
        except (AttributeError, KeyError):
            raise LibraryMismatch(
                "python-socketio", f"it handles no engine.io {event} event"
            ) from None
        self._eio.on(event, handler)
        return previous

    def adopt(
        self, eio_sid: str, limit: int, max_bytes: int, on_overflow: Callable[[str], None]
    ) -> None:
        """Make a new session a :class:`ChatSocket` (the ``heartbeat`` fast path) and bound
        its :class:`SendQueue` (in
        packets and bytes; ``on_overflow`` gets the reason); call from the engine.io
        connect event (engine.io schedules the first ping after it)."""
        socket = self._eio.sockets.get(eio_sid)
        if socket is None:
            return
        if "heartbeat" in self._fast and type(socket) is eio_socket.AsyncSocket:
            socket.__class__ = ChatSocket  # adds methods only: no state to convert
        queue = socket.queue
        assert isinstance(queue, SendQueue), "made by Sessions._create_queue"
        queue.limit = limit
        queue.max_bytes = max_bytes
        queue._on_overflow = on_overflow
        if self._monitor is None and "heartbeat" in self._fast:
            self._monitor = asyncio.ensure_future(self._watch_sessions())

    async def _watch_sessions(self) -> None:
        """What engine.io's service task does (``monitor_clients``; with the heartbeat
        fast path it does not start): visit every session once per ``ping_timeout``,
        closing one whose client stopped answering pings and forgetting one that closed.

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
        await cancel_and_wait(monitor)

    # -- Socket.IO connection state -------------------------------------------------------------

    def eio_sid(self, sid: str) -> str | None:
        """The engine.io session behind Socket.IO connection ``sid`` (namespace "/")."""
        eio_sid: str | None = self.sio.manager.eio_sid_from_sid(sid, "/")
        return eio_sid

    def sid(self, eio_sid: str) -> str | None:
        """The Socket.IO connection (namespace "/") on engine.io session ``eio_sid``."""
        sid: str | None = self.sio.manager.sid_from_eio_sid(eio_sid, "/")
        return sid

    def is_connected(self, sid: str) -> bool:
        """Whether python-socketio has accepted connection ``sid`` (its connect handler
        returned) and not yet disconnected it."""
        return bool(self.sio.manager.is_connected(sid, "/"))

    def is_open(self, sid: str) -> bool:
        """Whether the connection behind Socket.IO ``sid`` still has a live transport."""
        eio_sid = self.eio_sid(sid)
        socket = self._eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket is not None and not socket.closed

    def enter_room(self, sid: str, room: str) -> None:
        """Put local connection ``sid`` in ``room`` now (``AsyncServer.enter_room`` awaits,
        and with Redis publishes the change to every process)."""
        self.sio.manager.basic_enter_room(sid, "/", room)

    def leave_room(self, sid: str, room: str) -> None:
        """Take local connection ``sid`` out of ``room`` now."""
        self.sio.manager.basic_leave_room(sid, "/", room)

    async def forget(self, sid: str) -> None:
        """Drop python-socketio's record of ``sid`` without sending it anything (for a
        connection whose transport closed before its connect handler returned)."""
        await self.sio.manager.disconnect(sid, "/", ignore_queue=True)

    # -- sending --------------------------------------------------------------------------------

    async def _send_packet(self, eio_sid: str, pkt: sio_packet.Packet) -> None:
        encoded = pkt.encode()
        if isinstance(encoded, str):
            self.put(eio_sid, FramedPacket(encoded))
        else:
            await self._library_send_packet(eio_sid, pkt)

    def packet(self, event: str, data: Any) -> FramedPacket:
        """Encode a server event once, for any number of recipients."""
        pkt = self.encode("/", [event, data])
        assert pkt is not None, "chat events carry no binary data"
        return pkt

    def encode(self, namespace: str, data: list[Any]) -> FramedPacket | None:
        """Encode an EVENT packet once; None if it has binary attachments."""
        # binary=False skips python-socketio's walk of the whole payload looking for bytes;
        # bytes make the JSON encoder raise instead.
        pkt = self.sio.packet_class(sio_packet.EVENT, namespace=namespace, data=data, binary=False)
        try:
            return FramedPacket(pkt.encode())
        except TypeError:
            return None

    def put(self, eio_sid: str, pkt: eio_packet.Packet) -> bool:
        """Send ``pkt`` to one connection after everything sent to it before; False if gone.

        Written at once if the connection is idle (:meth:`ChatWebSocket.write_now`; the
        ``direct`` fast path), else queued, which may overflow the queue and drop a client
        that does not read.
        """
        if self.direct:
            ws = self.websockets.get(eio_sid)
            if ws is not None and ws.write_now(pkt):
                return True
        socket = self._eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return False
        socket.queue.put_nowait(pkt)
        return True


async def check_direct() -> None:
    """The ``direct`` fast path's self-check, on loopback connections: python-socketio sends
    CONNECT and acks through ``AsyncServer._send_packet(eio_sid, packet)``, text packets
    encoding to one string, so a replacement on the server gets them; aiohttp writes an
    uncompressed frame to the transport before ``send_frame`` first suspends, so a frame
    written to the transport next arrives after it, whole."""
    loop = asyncio.get_running_loop()
    sio = socketio.AsyncServer(async_mode="aiohttp")
    library_send_packet = sio._send_packet
    seen: list[tuple[int, bool]] = []

    async def send_packet(eio_sid: str, pkt: sio_packet.Packet) -> None:
        seen.append((pkt.packet_type, isinstance(pkt.encode(), str)))
        await library_send_packet(eio_sid, pkt)

    sio._send_packet = send_packet
    sio.on("echo", lambda sid, data: data)
    written: asyncio.Future[None] = loop.create_future()

    async def frames(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(compress=False)
        await sock.prepare(request)
        step = sock.send_frame(b"first", WSMsgType.TEXT)
        try:
            step.send(None)
        except StopIteration:
            assert request.transport is not None
            request.transport.write(text_frame(b"second"))
            written.set_result(None)
        else:
            step.close()
            written.set_exception(SelfCheckFailed("aiohttp's send_frame suspended first"))
        await sock.receive()  # the client's close
        return sock

    app = web.Application()
    sio.attach(app)
    app.router.add_get("/frames", frames)
    async with loopback(sio, app) as (url, client):
        async with aiohttp.ClientSession() as http, http.ws_connect(url + "/frames") as ws:
            await written
            got = [await ws.receive() for _ in range(2)]
            if [(m.type, m.data) for m in got] != [
                (WSMsgType.TEXT, t) for t in ("first", "second")
            ]:
                raise SelfCheckFailed(f"frames written in turn arrived as {got}")
        await client.connect(url, transports=["websocket"])
        if await client.call("echo", "x", timeout=5) != "x":
            raise SelfCheckFailed("an event's ack came back wrong")
        wanted = {(sio_packet.CONNECT, True), (sio_packet.ACK, True)}
        if not wanted <= set(seen):
            raise SelfCheckFailed(f"AsyncServer._send_packet was given {seen}")
