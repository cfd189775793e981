"""Reaching into python-socketio / python-engineio internals for the hot path (the other
module that does is ``transport.py``, for hardening against hostile input).

Room messages are the hot path and need two things the public API does not give:

* ordering we control: a packet is put on each recipient's engine.io send queue
  synchronously, so the order in which the feed decides equals the order on every wire
  (``AsyncManager.emit`` spawns a task per recipient and returns control in between);
* encode once: the Socket.IO packet and its engine.io wrapper are built once per message
  and the same object is queued for every recipient (engine.io caches its encoding).

With Redis (:class:`FeedRedisManager`) it also needs what ``AsyncRedisManager`` lacks:

* publishing that never blocks a handler: ``AsyncPubSubManager.emit`` awaits ``_publish``,
  which retries against an unreachable Redis while the sender's ack waits (handlers run
  inline in the connection's reader); here ``_publish`` only queues, one task publishes;
* a self-check of the listener (it has died silently before, python-socketio#1581): a
  ping published on the channel must come back through ``_listen``, else the listener is
  restarted and readiness fails meanwhile;
* a catch-up after every subscription of the listener: what was published on the channel
  while it was not subscribed never comes, and it also reconnects by itself (python-
  socketio's retry loop), often between two self-checks, which then notice nothing. Redis's
  subscribe confirmation, which python-socketio discards, tells when; the feed then
  re-reads its rooms from the store, so nothing published meanwhile stays missing.

Internals used, checked by ``tests/test_fanout_internals.py`` against the pinned versions
below (update both together): ``AsyncServer.eio.sockets``, ``AsyncSocket.queue``,
``.closed`` and ``.close(wait=False)``, ``AsyncServer.packet_class``,
``AsyncManager.eio_sid_from_sid``, the ``AsyncPubSubManager._handle_emit -> super().emit``
call chain, ``AsyncServer.manager_initialized``, ``AsyncPubSubManager.thread`` /
``._thread`` / ``._publish`` / ``._listen``, ``AsyncRedisManager.redis`` / ``.pubsub`` and
its ``_listen -> _redis_listen_with_retries -> _redis_connect`` call chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import TYPE_CHECKING, Any

import socketio
from engineio import packet as eio_packet
from redis.exceptions import RedisError
from socketio import packet as sio_packet

from . import redisconn

if TYPE_CHECKING:
    from .feed import RoomFeed

#: Versions this module was written and tested against.
TESTED_VERSIONS = {"python-socketio": "5.18", "python-engineio": "4.15"}

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


class Outbox:
    """Queues prebuilt packets straight onto engine.io sockets, in call order."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    def packet(self, event: str, data: Any) -> eio_packet.Packet:
        """Encode a server event once, for any number of recipients."""
        pkt = self._sio.packet_class(sio_packet.EVENT, namespace="/", data=[event, data])
        return eio_packet.Packet(eio_packet.MESSAGE, pkt.encode())

    def eio_sid(self, sid: str) -> str | None:
        eio_sid: str | None = self._sio.manager.eio_sid_from_sid(sid, "/")
        return eio_sid

    def is_open(self, sid: str) -> bool:
        """Whether the connection behind Socket.IO ``sid`` still has a live transport."""
        eio_sid = self.eio_sid(sid)
        socket = self._sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket is not None and not socket.closed

    def put(self, eio_sid: str, pkt: eio_packet.Packet) -> bool:
        """Queue ``pkt`` for one connection; False if it is gone."""
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
    """Routes every ``message`` event, local or from other processes, through the feed."""

    feed: RoomFeed | None = None

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
        if (
            event == MESSAGE_EVENT
            and self.feed is not None
            and (namespace or "/") == "/"
            and callback is None
            and isinstance(data, dict)
        ):
            self.feed.receive(data)
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
        self._closing: set[asyncio.Task[None]] = set()  # replaced listener clients
        self._subscriptions = 0
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
        await asyncio.gather(*self._tasks, *self._closing, return_exceptions=True)
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
            task = asyncio.create_task(self._close_clients(stale), name="fanout-close-stale")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        async for message in super()._redis_listen_with_retries():
            if message["type"] == "subscribe":
                self._subscribed()
            else:
                yield message

    def _subscribed(self) -> None:
        """Redis confirmed a subscription of the listener: it hears the channel from now on.

        Whatever was published since the previous subscription was lost went past this
        process, and the self-check may never have noticed (the listener reconnects within
        seconds, checks are 5 s apart), so the feed compares its rooms with the store.
        """
        self._subscriptions += 1
        if self._subscriptions > 1:
            log.info("fan-out: the Redis listener subscribed again; catching up from the store")
        if self.feed is not None:
            self.feed.resync()

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
                    # Nothing to catch up here: a listener that lost its subscription
                    # caught up when it subscribed again (_subscribed).
                    self.listening = True
                    log.info("fan-out: receiving from Redis")
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
        await self._close_clients([c for c in (self.pubsub, self.redis) if c is not None])
        self.pubsub = self.redis = None

    @staticmethod
    async def _close_clients(clients: list[Any]) -> None:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)
