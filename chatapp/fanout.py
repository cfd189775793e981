"""Where the events of every process meet this process's connections.

The message handler stores a message, then publishes it to its room
(:meth:`FeedManager.publish`): the client manager hands it to the
:class:`~chatapp.feed.RoomFeed` of every process, this one included, for the room it was
published to (the feed delivers each once, in id order, with no gap). Every other event
without callback is encoded once and handed to each recipient in order by
``managers.LocalManager``. :class:`LocalFeedManager` is the client manager of a single
process.

With Redis, :class:`FeedRedisManager` is the policy over ``managers.RedisManager`` (a
Redis message queue on python-socketio's ``AsyncPubSubManager``):

* publishing that never blocks a handler: python-socketio awaits publishing in the
  emitting handler, and so the sender's ack (handlers run inline in the connection's
  reader), whatever an unreachable Redis costs; here publishing only queues, one task
  publishes;
* a self-check of the listener (python-socketio's own has died silently before,
  python-socketio#1581, and a connection can go quiet without an error): a ping published
  on the channel must come back through the listener, else the listener is restarted and
  readiness fails meanwhile;
* a catch-up after every subscription of the listener: what was published on the channel
  while it was not subscribed never comes, and it also subscribes again by itself after a
  failure, often between two self-checks, which then notice nothing. Redis's subscribe
  confirmation tells when; the feed then re-reads its rooms from the store, so nothing
  published meanwhile stays missing.

The hooks this needs (publishing, the listener's input, its subscriptions, restarting it,
local delivery) are in ``managers.py``, one of the modules that reach into library
internals (``internals.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from redis.exceptions import RedisError

from . import redisconn
from .feed import CHANGED_EVENT, MESSAGE_EVENT, RoomFeed
from .managers import LocalManager, RedisManager
from .metrics import Metrics
from .sessions import Sessions

log = logging.getLogger(__name__)

#: Seconds between self-checks of the Redis listener, and how long a ping may take to
#: come back before the listener counts as deaf.
CHECK_INTERVAL = 5.0
CHECK_TIMEOUT = 3.0
#: Events waiting to be published; past this (Redis slow or gone) the oldest are dropped:
#: messages are in the store and reach the other processes' clients by gap fill or catch-up.
PUBLISH_BACKLOG = 10_000
#: At most this many waiting events go to Redis in one round trip (a pipeline). One
#: publish per round trip fell behind a busy process's own rate, a little more every
#: second: seconds of lag after a minute at full load.
PUBLISH_BATCH = 500
PING = b"chatapp-ping:"


class FeedManager(LocalManager):
    """Routes ``message`` events to the feed by the room they were published to; the rest
    goes out through the :class:`~chatapp.sessions.Sessions`.

    Both this process's emits and, with Redis, those of other processes arrive here. A
    subclass's constructor takes the feed (``feed``) and the sessions; this class has no
    ``__init__`` (see ``LocalManager``).
    """

    feed: RoomFeed

    async def publish(self, room: str, msg: dict[str, Any]) -> None:
        """Hand a stored message to the feed of every process, for ``room``'s members."""
        await self.emit(MESSAGE_EVENT, msg, namespace="/", room=room)

    async def publish_change(self, room: str, msg: dict[str, Any]) -> None:
        """Hand a committed change (the message's new state, with its ``rev``) to the
        feed of every process, for ``room``'s members."""
        await self.emit(CHANGED_EVENT, msg, namespace="/", room=room)

    async def start(self) -> None:
        """Start background work; one process has none."""

    async def stop(self) -> None:
        """Finish background work."""

    def readiness(self) -> dict[str, str]:
        """Problems by component (``{"redis": "unreachable"}``); empty when all is well."""
        return {}

    def route(self, event: str, data: Any, namespace: str, room: Any) -> bool:
        if namespace != "/" or not isinstance(room, str) or not isinstance(data, dict):
            return False
        if event == MESSAGE_EVENT:
            self.feed.receive(room, data)
            return True
        if event == CHANGED_EVENT:
            self.feed.receive_change(room, data)
            return True
        return False


class LocalFeedManager(FeedManager):
    """The client manager of a single process."""

    def __init__(self, feed: RoomFeed, sessions: Sessions[Any]) -> None:
        super().__init__()
        self.feed = feed
        self.sessions = sessions


class FeedRedisManager(RedisManager, FeedManager):
    """The Redis manager: FeedManager's local delivery, publishing that never blocks, and
    the listener's self-check.

    ``managers.RedisManager`` puts FeedManager between python-socketio's pub/sub manager and
    AsyncManager, so both this process's emits and those arriving from Redis are routed
    by ``FeedManager.route``.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        feed: RoomFeed,
        sessions: Sessions[Any],
        metrics: Metrics | None = None,
    ) -> None:
        self.feed = feed
        self.metrics = metrics if metrics is not None else Metrics()
        super().__init__(url, channel, log, sessions)
        self._ping_id = uuid.uuid4().hex
        self._publisher = redisconn.connect(url)
        # What to publish, with when it was handed over (for the publish lag).
        self._outgoing: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue(PUBLISH_BACKLOG)
        # Per room and event (message, changed), the newest that could not be published:
        # re-sent once Redis is back, so that the other processes notice the gap and fill
        # it from the store.
        self._unsent: dict[tuple[str, str], dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions = 0
        self._expected = b""
        self._pong = asyncio.Event()
        self._checked = asyncio.Event()  # the first self-check is over
        self.redis_reachable = False
        self.listening = False
        self._publish_failed_since: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        # Listen before anyone connects, so that the self-check and readiness mean something.
        self.start_listening()
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
        await self.close_listener()
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

    def outgoing(self, data: dict[str, Any]) -> None:
        while True:
            try:
                self._outgoing.put_nowait((time.monotonic(), data))
                return
            except asyncio.QueueFull:
                self._dropped(self._outgoing.get_nowait()[1])
                self._outgoing.task_done()

    async def _publish_loop(self) -> None:
        while True:
            batch = [await self._outgoing.get()]
            while len(batch) < PUBLISH_BATCH and not self._outgoing.empty():
                batch.append(self._outgoing.get_nowait())
            try:
                await self._publish_batch(batch)
            except (RedisError, OSError) as exc:
                self._publish_failed(exc)
                for _, data in batch:
                    self._dropped(data)
            else:
                now = time.monotonic()
                for queued, _ in batch:
                    self.metrics.publish_lag.observe(now - queued)
                self._published()
            finally:
                for _ in batch:
                    self._outgoing.task_done()

    async def _publish_batch(self, batch: list[tuple[float, dict[str, Any]]]) -> None:
        """Publish in order, in one round trip."""
        if len(batch) == 1:
            await self._publisher.publish(self.channel, self.dumps(batch[0][1]))
            return
        async with self._publisher.pipeline(transaction=False) as pipe:
            for _, data in batch:
                pipe.publish(self.channel, self.dumps(data))
            await pipe.execute()

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
        room, event = data.get("room"), data.get("event")
        if data.get("method") == "emit" and event in (MESSAGE_EVENT, CHANGED_EVENT) and room:
            self._unsent[(str(event), str(room))] = data

    def _resend_unsent(self) -> None:
        unsent, self._unsent = self._unsent, {}
        for data in unsent.values():
            with contextlib.suppress(asyncio.QueueFull):
                self._outgoing.put_nowait((time.monotonic(), data))

    # -- the listener and its self-check ------------------------------------------------------

    def subscribed(self) -> None:
        """Redis confirmed a subscription of the listener: it hears the channel from now on.

        Whatever was published since the previous subscription was lost went past this
        process, and the self-check may never have noticed (the listener reconnects within
        seconds, checks are 5 s apart), so the feed compares its rooms with the store.
        """
        self._subscriptions += 1
        if self._subscriptions > 1:
            log.info("fan-out: the Redis listener subscribed again; catching up from the store")
        self.feed.resync()

    def heard(self, message: Any) -> bool:
        if isinstance(message, bytes) and message.startswith(PING):
            if message == self._expected:
                self._pong.set()
            return True  # a self-check ping, ours or another process's
        return False

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
                    # caught up when it subscribed again (subscribed).
                    self.listening = True
                    log.info("fan-out: receiving from Redis")
                elif not heard:
                    if self.listening or seq == 1:
                        log.warning(
                            "fan-out: the Redis listener missed its self-check; restarting it"
                        )
                    self.listening = False
                    self.metrics.listener_restarts.inc()
                    await self.restart_listener()
                    continue  # and check the new listener at once
            finally:
                self._checked.set()
            await asyncio.sleep(CHECK_INTERVAL)

    async def _check(self, seq: int) -> bool:
        """Publish pings until one comes back through the listener; False on timeout."""
        self._expected = PING + f"{self._ping_id}:{seq}".encode()
        self._pong.clear()
        deadline = time.monotonic() + CHECK_TIMEOUT
        while time.monotonic() < deadline:
            await self._publisher.publish(self.channel, self._expected)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pong.wait(), 0.25)
                return True
        return False
