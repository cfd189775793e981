"""The one module that reaches into python-socketio / python-engineio / aiohttp internals.

Room messages are the hot path. Through the public API a message to a room of N members
costs N tasks, N queue puts, N writer wake-ups, N UTF-8 encodings and WebSocket frames
and, when a browser negotiated permessage-deflate, N compressions (docs/benchmarks.md has
the profile). Here it costs one encoding and one frame, then one ``transport.write`` per
member:

* ordering we control: a packet is handed to each recipient synchronously, so the order
  in which the feed decides equals the order on every wire (``AsyncManager.emit`` spawns a
  task per recipient and returns control in between). Every other event without callback
  (presence, typing) and every packet python-socketio sends to one client (acks, CONNECT)
  takes the same path;
* encode once: the Socket.IO packet, its engine.io wrapper, its UTF-8 bytes and its
  WebSocket frame are built once per message (:class:`FramedPacket`);
* write directly: :class:`ChatWebSocket` replaces engine.io's aiohttp websocket wrapper.
  When a connection's writer is idle (waiting on its empty engine.io queue) a frame is
  written straight to the transport. Otherwise (a packet is still on its way, or the
  client reads slowly and more than :data:`WRITE_HIGH_WATER` bytes wait in its buffer)
  the packet joins the queue and the writer sends it in turn, under aiohttp's flow
  control. Nothing overtakes a queued packet;
* a lean websocket loop: for connections that start on the websocket, ``ChatWebSocket``
  runs a copy of engine.io's ``AsyncSocket._websocket_handler`` without its task and
  ``wait_for`` per received frame and per writer wake-up;
* no permessage-deflate: the websocket is prepared with ``compress=False``, as Node's
  socket.io does by default. Compressing every frame once per connection cost more CPU
  than all the rest of a delivery, a deflate context costs ~300 KB per connection, and a
  frame shared by all members cannot be compressed per connection. Chat frames are small;
  a client offering the extension gets uncompressed frames (RFC 7692 allows it).

With Redis (:class:`FeedRedisManager`) it also needs what ``AsyncRedisManager`` lacks:

* publishing that never blocks a handler: ``AsyncPubSubManager.emit`` awaits ``_publish``,
  which retries against an unreachable Redis while the sender's ack waits (handlers run
  inline in the connection's reader); here ``_publish`` only queues, one task publishes;
* a self-check of the listener (it has died silently before, python-socketio#1581): a
  ping published on the channel must come back through ``_listen``, else the listener is
  restarted, readiness fails meanwhile, and the feed re-reads its rooms from the store
  once it hears again, so nothing published while it was deaf stays missing.

Internals used, checked by ``tests/test_fanout_internals.py`` against the pinned versions
below (update both together): ``AsyncServer.eio.sockets``, ``eio._async["websocket"]``
(engine.io's aiohttp driver ``WebSocket(handler, server)`` with ``_sock``, ``send``,
``wait``, ``close``, and ``handler`` bound to its ``AsyncSocket``), what
``AsyncSocket._websocket_handler`` does (repeated in :meth:`ChatWebSocket._serve`),
``AsyncSocket.queue`` (an ``asyncio.Queue``, whose ``_getters`` show a waiting writer),
``.receive()``, ``.close(wait=False)``, ``.connected``, ``.closed``, ``.closing``,
``.upgraded``, ``.upgrading``, ``engineio.packet.Packet.encode_cache``,
``AsyncServer._send_packet`` and ``.packet_class``, ``AsyncManager.eio_sid_from_sid``,
``.get_participants`` and ``.rooms``, the ``AsyncPubSubManager._handle_emit ->
super().emit`` call chain, ``AsyncServer.manager_initialized``,
``AsyncPubSubManager.thread`` / ``._thread`` / ``._publish`` / ``._listen``,
``AsyncRedisManager.redis`` / ``.pubsub``, and aiohttp's
``WebSocketResponse(compress=...)``, ``.send_frame`` and ``.closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import WSMsgType, web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from redis.exceptions import RedisError
from socketio import packet as sio_packet

from . import redisconn

if TYPE_CHECKING:
    from .feed import RoomFeed

#: Versions this module was written and tested against.
TESTED_VERSIONS = {"python-socketio": "5.18", "python-engineio": "4.15", "aiohttp": "3.14"}

MESSAGE_EVENT = "message"

log = logging.getLogger(__name__)

#: Seconds between self-checks of the Redis listener, and how long a ping may take to
#: come back before the listener counts as deaf.
CHECK_INTERVAL = 5.0
CHECK_TIMEOUT = 3.0
#: Events waiting to be published; past this (Redis slow or gone) the oldest are dropped:
#: messages are in the store and reach the other processes' clients by gap fill or catch-up.
PUBLISH_BACKLOG = 10_000
PING = b"chatapp-ping:"

#: Bytes a connection may have waiting in its kernel-side write buffer for a frame to still
#: be written directly (asyncio's default high-water mark for transports). Above it, packets
#: wait in engine.io's queue, whose writer blocks on aiohttp's flow control.
WRITE_HIGH_WATER = 64 * 1024


class _EncodedText(str):
    """An engine.io packet's text encoding, carrying its UTF-8 bytes (computed once)."""

    payload: bytes


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 5.2) holding ``payload``."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


class FramedPacket(eio_packet.Packet):  # type: ignore[misc]
    """An engine.io MESSAGE packet, encoded and framed once for any number of recipients."""

    def __init__(self, data: str) -> None:
        super().__init__(eio_packet.MESSAGE, data)
        text = _EncodedText(super().encode())
        text.payload = text.encode("utf-8")
        # engine.io's writer sends ``encode()``, which returns this cache: the websocket
        # wrapper finds the bytes on it and skips encoding again (polling sees a plain str).
        self.encode_cache = text
        self.frame = text_frame(text.payload)


class ChatWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engine.io's aiohttp websocket wrapper, without deflate, that frames can bypass.

    While its connection is open it is registered in ``links`` under the engine.io sid, so
    that :meth:`Outbox.put` can find it; :meth:`write_now` is the direct path.

    A connection that starts on the websocket is served by :meth:`_serve`, a leaner copy
    of engine.io's ``AsyncSocket._websocket_handler``: the same steps, without a task and a
    ``wait_for`` per received frame and per writer wake-up (each costs CPU, and memory for
    every idle connection). An upgrade from long-polling runs engine.io's own handler.
    """

    def __init__(self, handler: Any, server: Any, links: dict[str, ChatWebSocket]) -> None:
        super().__init__(handler, server)
        self._links = links
        # engine.io passes its AsyncSocket's bound ``_websocket_handler``.
        self.socket: Any = handler.__self__
        self.transport: asyncio.Transport | None = None
        self.open = False
        # The silence watch of _serve.
        self._task: asyncio.Task[Any] | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._limit = self._heard = 0.0
        self._waiting = self._silent = False

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.BaseRequest = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.transport = request.transport
        sid = self.socket.sid
        self._links[sid] = self
        try:
            if self.socket.connected:
                self.open = True
                await self.handler(self)
            else:
                await self._serve(self.socket)
        finally:
            self.open = False
            if self._links.get(sid) is self:
                del self._links[sid]
        return self._sock

    async def _serve(self, socket: Any) -> None:
        server = self.server
        socket.connected = socket.upgraded = True
        self.open = True
        writer = asyncio.ensure_future(self._write_queued(socket.queue))
        loop = asyncio.get_running_loop()
        # engine.io gives up on a client silent for ping_interval + ping_timeout. One timer
        # per connection, moved on lazily, does that instead of a timeout per frame.
        self._task = asyncio.current_task()
        self._limit = server.ping_interval + server.ping_timeout
        self._heard = loop.time()
        self._waiting = self._silent = False
        self._watch = loop.call_at(self._heard + self._limit, self._watch_silence)
        try:
            while True:
                self._waiting = True
                try:
                    data = await self.wait()
                except (Exception, asyncio.CancelledError):
                    break  # closed, silent for too long, or shutting down
                finally:
                    self._waiting = False
                self._heard = loop.time()
                try:
                    pkt = eio_packet.Packet(encoded_packet=data)
                except Exception:
                    log.warning("engine.io connection %s sent an undecodable frame", socket.sid)
                    break
                try:
                    await socket.receive(pkt)
                except eio_exceptions.UnknownPacketError:
                    pass
                except eio_exceptions.SocketIsClosedError:
                    break
                except Exception:
                    log.exception("engine.io connection %s: error handling a packet", socket.sid)
        finally:
            if self._watch is not None:
                self._watch.cancel()
            if self._silent and self._task is not None:
                self._task.uncancel()  # that cancellation was ours, and it is handled
            self.open = False
            await socket.queue.put(None)  # lets the writer finish
            await writer
            await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)

    def _watch_silence(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._heard + self._limit
        if not self._waiting:
            # Still handling the last frame: silence counts from the next wait.
            self._watch = loop.call_at(loop.time() + self._limit, self._watch_silence)
        elif loop.time() < due:
            self._watch = loop.call_at(due, self._watch_silence)
        elif self._task is not None:
            self._silent = True
            self._task.cancel()

    async def _write_queued(self, queue: asyncio.Queue[Any]) -> None:
        """Send what waits in the engine.io queue, in order, until the ``None`` sentinel."""
        try:
            while (pkt := await queue.get()) is not None:
                queue.task_done()
                await self.send(pkt.encode())
                pkt = None  # an idle connection keeps no packet alive
            queue.task_done()
        except Exception:
            pass  # the connection broke; the reader notices and cleans up
        await self.close()

    def write_now(self, pkt: eio_packet.Packet) -> bool:
        """Write ``pkt``'s frame to the transport if nothing is ahead of it; else False."""
        frame: bytes | None = getattr(pkt, "frame", None)
        socket = self.socket
        if (
            frame is None
            or not self.open
            or self._sock.closed  # set before aiohttp writes its close frame
            or socket.closing
            or socket.closed
            or socket.upgrading
            or not socket.upgraded
        ):
            return False
        queue = socket.queue
        if queue.qsize():
            return False
        # The writer is idle only while it waits in ``queue.get()`` (a pending getter):
        # otherwise it holds packets taken from the queue and not yet written.
        for getter in queue._getters:
            if not getter.done():
                break
        else:
            return False
        transport = self.transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > WRITE_HIGH_WATER
        ):
            return False
        transport.write(frame)
        return True

    async def send(self, message: Any) -> None:
        payload = getattr(message, "payload", None)
        if payload is None:
            await super().send(message)
        else:
            await self._sock.send_frame(payload, WSMsgType.TEXT)


class Outbox:
    """Hands prebuilt packets to engine.io connections, in call order."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._links: dict[str, ChatWebSocket] = {}
        eio = sio.eio
        # A copy: the driver table is a module-level dict of engine.io's, shared by servers.
        eio._async = {**eio._async, "websocket": self._websocket}
        # Every Socket.IO packet sent to one client (acks, CONNECT, ...) takes the same
        # path as room frames, so it neither wakes a writer nor overtakes them.
        self._send_binary_packet = sio._send_packet
        sio._send_packet = self._send_packet

    def _websocket(self, handler: Any, server: Any) -> ChatWebSocket:
        return ChatWebSocket(handler, server, self._links)

    async def _send_packet(self, eio_sid: str, pkt: sio_packet.Packet) -> None:
        encoded = pkt.encode()
        if isinstance(encoded, str):
            self.put(eio_sid, FramedPacket(encoded))
        else:
            await self._send_binary_packet(eio_sid, pkt)

    def packet(self, event: str, data: Any) -> eio_packet.Packet:
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

    def eio_sid(self, sid: str) -> str | None:
        eio_sid: str | None = self._sio.manager.eio_sid_from_sid(sid, "/")
        return eio_sid

    def is_open(self, sid: str) -> bool:
        """Whether the connection behind Socket.IO ``sid`` still has a live transport."""
        eio_sid = self.eio_sid(sid)
        socket = self._sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket is not None and not socket.closed

    def put(self, eio_sid: str, pkt: eio_packet.Packet) -> bool:
        """Send ``pkt`` to one connection after everything sent to it before; False if gone."""
        link = self._links.get(eio_sid)
        if link is not None and link.write_now(pkt):
            return True
        socket = self._sio.eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return False
        socket.queue.put_nowait(pkt)
        return True

    async def close_all(self, grace: float) -> None:
        """Close every engine.io connection, waiting up to ``grace`` s for them to flush.

        Engine.IO-level closing (no Socket.IO DISCONNECT) makes clients reconnect by
        themselves. ``AsyncServer.disconnect()`` is not used because it waits for each send
        queue to drain, forever if that connection's writer has already ended.
        """
        eio = self._sio.eio
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


class FeedManager(socketio.AsyncManager):  # type: ignore[misc]
    """Routes ``message`` events through the feed and sends other events via the Outbox.

    Both this process's emits and, with Redis, those of other processes arrive here.
    """

    feed: RoomFeed | None = None
    outbox: Outbox | None = None

    async def start(self) -> None:
        """Start background work; one process has none."""

    async def stop(self) -> None:
        """Finish background work."""

    def readiness(self) -> dict[str, str]:
        """Problems by component (``{"redis": "unreachable"}``); empty when all is well."""
        return {}

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
            if (
                event == MESSAGE_EVENT
                and self.feed is not None
                and namespace == "/"
                and isinstance(data, dict)
            ):
                self.feed.receive(data)
                return None
            if self.outbox is not None and self._send(event, data, namespace, to or room, skip_sid):
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
        assert self.outbox is not None
        if namespace not in self.rooms:
            return True
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        pkt = self.outbox.encode(namespace, [event, *args])
        if pkt is None:
            return False
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid not in skip:
                self.outbox.put(eio_sid, pkt)
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


class FeedRedisManager(socketio.AsyncRedisManager, FeedManager):  # type: ignore[misc]
    """AsyncRedisManager whose local deliveries (``super().emit``) go through FeedManager.

    The MRO puts FeedManager between AsyncPubSubManager and AsyncManager, so both this
    process's emits and those arriving from Redis reach ``FeedManager.emit``.
    """

    # Set by python-socketio: the listener task and the clients it listens with.
    thread: asyncio.Task[None] | None
    redis: Any
    pubsub: Any

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(
            url,
            channel=channel,
            logger=_RedisLog(log, {}),
            # No read timeout: the listener blocks on the channel; the self-check notices
            # a connection that went quiet.
            redis_options={
                "socket_connect_timeout": redisconn.TIMEOUT,
            },
        )
        self._publisher = redisconn.connect(url)
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue(PUBLISH_BACKLOG)
        # Per room, the newest message that could not be published: re-sent once Redis is
        # back, so that the other processes notice the gap and fill it from the store.
        self._unsent: dict[str, dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._expected = b""
        self._heard = asyncio.Event()
        self._checked = asyncio.Event()  # the first self-check is over
        self.redis_reachable = False
        self.listening = False
        self._publish_failed_since: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.server.manager_initialized:
            # python-socketio starts the listener on the first connection; start it now so
            # that the self-check and readiness mean something before anyone connects.
            self.server.manager_initialized = True
            self.initialize()
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="fanout-publish"),
            asyncio.create_task(self._watch(), name="fanout-self-check"),
        ]
        # Serve once the listener is known to hear the others (or Redis is known down).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._checked.wait(), CHECK_TIMEOUT + redisconn.TIMEOUT)
        log.info("fan-out through Redis channel %s", self.channel)

    async def stop(self) -> None:
        # Let what handlers emitted while stopping (presence updates) go out first.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outgoing.join(), redisconn.TIMEOUT)
        for task in self._tasks:
            task.cancel()
        await self._stop_listener()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._publisher.aclose()

    def readiness(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        if not self.redis_reachable:
            problems["redis"] = "unreachable"
        elif not self.listening:
            problems["fanout"] = "not receiving from Redis"
        return problems

    # -- publishing -------------------------------------------------------------------------

    async def _publish(self, data: dict[str, Any]) -> None:
        while True:
            try:
                self._outgoing.put_nowait(data)
                return
            except asyncio.QueueFull:
                self._dropped(self._outgoing.get_nowait())
                self._outgoing.task_done()

    async def _publish_loop(self) -> None:
        while True:
            data = await self._outgoing.get()
            try:
                await self._publisher.publish(self.channel, self.json.dumps(data))
            except (RedisError, OSError) as exc:
                self._publish_failed(exc)
                self._dropped(data)
            else:
                self._published()
            finally:
                self._outgoing.task_done()

    def _publish_failed(self, exc: BaseException) -> None:
        if self._publish_failed_since is None:
            self._publish_failed_since = time.monotonic()
            log.warning(
                "fan-out: cannot publish to Redis (%s); other processes' clients get this "
                "process's messages from history once it is back",
                exc,
            )

    def _published(self) -> None:
        if self._publish_failed_since is not None:
            log.info(
                "fan-out: publishing to Redis again after %.1fs",
                time.monotonic() - self._publish_failed_since,
            )
            self._publish_failed_since = None
        if self._unsent:
            self._resend_unsent()

    def _dropped(self, data: dict[str, Any]) -> None:
        room = data.get("room")
        if data.get("method") == "emit" and data.get("event") == MESSAGE_EVENT and room:
            self._unsent[str(room)] = data

    def _resend_unsent(self) -> None:
        unsent, self._unsent = self._unsent, {}
        for data in unsent.values():
            with contextlib.suppress(asyncio.QueueFull):
                self._outgoing.put_nowait(data)

    # -- the listener and its self-check ------------------------------------------------------

    async def _listen(self) -> Any:
        async for message in super()._listen():
            if isinstance(message, bytes) and message.startswith(PING):
                if message == self._expected:
                    self._heard.set()
                continue
            yield message

    async def _watch(self) -> None:
        seq = 0
        while True:
            seq += 1
            try:
                heard = await self._check(seq)
            except (RedisError, OSError) as exc:
                if self.redis_reachable or seq == 1:
                    log.warning("fan-out: Redis is unreachable (%s)", exc)
                self.redis_reachable = self.listening = False
                self._publish_failed(exc)
            except Exception:
                log.exception("fan-out self-check failed")
            else:
                self.redis_reachable = True
                self._published()
                if heard and not self.listening:
                    self.listening = True
                    log.info("fan-out: receiving from Redis")
                    if self.feed is not None:
                        # Whatever was published while this process could not hear it.
                        self.feed.resync()
                elif not heard:
                    if self.listening or seq == 1:
                        log.warning(
                            "fan-out: the Redis listener missed its self-check; restarting it"
                        )
                    self.listening = False
                    await self._restart_listener()
                    continue  # and check the new listener at once
            finally:
                self._checked.set()
            await asyncio.sleep(CHECK_INTERVAL)

    async def _check(self, seq: int) -> bool:
        """Publish pings until one comes back through the listener; False on timeout."""
        self._expected = PING + f"{self.host_id}:{seq}".encode()
        self._heard.clear()
        deadline = time.monotonic() + CHECK_TIMEOUT
        while time.monotonic() < deadline:
            await self._publisher.publish(self.channel, self._expected)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heard.wait(), 0.25)
                return True
        return False

    async def _restart_listener(self) -> None:
        await self._stop_listener()
        self.thread = self.server.start_background_task(self._thread)

    async def _stop_listener(self) -> None:
        thread = getattr(self, "thread", None)
        self.thread = None
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await thread
        # The listener builds fresh clients when it (re)subscribes; close the old ones.
        for client in (self.pubsub, self.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 1.0)
        self.pubsub = self.redis = None
