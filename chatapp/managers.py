"""python-socketio client managers whose emits are encoded once and handed over in order.

**Redis** (the policy is ``fanout.FeedRedisManager``): :class:`RedisManager` is a message
queue of its own on python-socketio's extension point for message queues,
``AsyncPubSubManager`` with ``_publish`` and ``_listen`` implemented; nothing of
``AsyncRedisManager`` is used.
It subscribes with chatapp's Redis clients, subscribes again with fresh ones (closing the
old) whenever the subscription fails, and hands the subclass its publishing, what the
listener hears, each subscription Redis confirms, and restarting the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio
from redis.exceptions import RedisError

# The base class python-socketio provides for message queues (a backend implements
# _publish and _listen); it is not exported at the package's top level.
from socketio.async_pubsub_manager import AsyncPubSubManager

from . import redisconn
from .fastpaths import SelfCheckFailed
from .sessions import Sessions
from .tasks import cancel_and_wait


class RoomIndex:
    """The rooms each connection is in, kept beside python-socketio's ``rooms``, so that a
    disconnection leaves those (the ``rooms`` fast path) instead of looking for the
    connection in every room: each connection is a room of its own, which made a crowd
    disconnecting at once quadratic (10,000 at once: about 10 s of CPU in the scan).

    It relies on ``BaseManager``'s internals: ``rooms[namespace][room]`` maps sids, every
    entry goes through ``basic_enter_room`` and ``basic_leave_room``, and what
    ``basic_disconnect`` does besides leaving the rooms (callbacks, pending connects and
    disconnects). :func:`check_rooms` proves it against the stock ``basic_disconnect``.
    """

    rooms: dict[Any, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_disconnect: dict[str, list[str]]
    #: Whether :meth:`basic_disconnect` uses the index (the fast path passed its check).
    indexed = False

    @property
    def _rooms_of(self) -> dict[tuple[str, str], set[Any]]:
        # This class has no __init__ (see LocalManager): made on first use.
        try:
            return self.__dict__["_rooms_of_sid"]  # type: ignore[no-any-return]
        except KeyError:
            return self.__dict__.setdefault("_rooms_of_sid", {})  # type: ignore[no-any-return]

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if not self.indexed:
            super().basic_disconnect(sid, namespace, **kwargs)  # type: ignore[misc]
            self._rooms_of.pop((namespace, sid), None)
            return
        rooms = self._rooms_of.pop((namespace, sid), set())
        if namespace not in self.rooms:
            return
        for room in rooms:
            self.basic_leave_room(sid, namespace, room)
        # As the stock basic_disconnect does after leaving the rooms.
        self.callbacks.pop(sid, None)
        # python-socketio < 5.18 has no pending connects.
        for pending in (getattr(self, "pending_connect", {}), self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]


async def check_rooms() -> None:
    """The ``rooms`` fast path's self-check: the same connections, rooms, callbacks and
    disconnections on a stock ``AsyncManager`` and on one with :class:`RoomIndex` leave
    the same state behind."""

    class Indexed(RoomIndex, socketio.AsyncManager):  # type: ignore[misc]
        indexed = True

    def state(manager: Any) -> Any:
        rooms = {
            ns: {room: dict(sids) for room, sids in by_room.items()}
            for ns, by_room in manager.rooms.items()
        }
        callbacks = {sid: sorted(k for k in ids if k) for sid, ids in manager.callbacks.items()}
        pending_connect = getattr(manager, "pending_connect", None)  # python-socketio >= 5.18
        return rooms, callbacks, pending_connect, manager.pending_disconnect

    managers = [socketio.AsyncManager(), Indexed()]
    for manager in managers:
        sio = socketio.AsyncServer(client_manager=manager)
        sio.eio.generate_id = functools.partial(next, iter(f"sid{n}" for n in range(100)))
        sids = [await manager.connect(f"eio{n}", "/") for n in range(4)]
        if hasattr(manager, "pre_connect"):  # python-socketio >= 5.18: still being admitted
            sids.append(await manager.pre_connect("eio9", "/"))
        else:
            sids.append(await manager.connect("eio9", "/"))
        for n, sid in enumerate(sids):
            await manager.enter_room(sid, "/", "everyone")
            await manager.enter_room(sid, "/", f"room{n % 2}")
            manager._generate_ack_id(sid, print)
        await manager.enter_room(sids[0], "/", "alone")
        await manager.leave_room(sids[1], "/", "everyone")
        manager.pre_disconnect(sids[2], "/")
        for sid in (sids[0], sids[2], sids[4]):
            await manager.disconnect(sid, "/")
    stock, indexed = (state(manager) for manager in managers)
    if stock != indexed:
        raise SelfCheckFailed(f"disconnecting left {indexed}, python-socketio's way {stock}")
    if indexed[0] and managers[1]._rooms_of.keys() != {("/", sids[1]), ("/", sids[3])}:
        raise SelfCheckFailed(f"the index kept {sorted(managers[1]._rooms_of)}")


class LocalManager(RoomIndex, socketio.AsyncManager):  # type: ignore[misc]
    """AsyncManager whose emits without callback are encoded once and handed over in order.

    Subclasses take events before local delivery by overriding :meth:`route`. Both this
    process's emits and, with :class:`RedisManager`, those of other processes arrive here.

    A subclass's constructor takes the :class:`~chatapp.sessions.Sessions` it delivers
    through (``sessions``). This class has no ``__init__``: in :class:`RedisManager`'s MRO
    it follows ``AsyncPubSubManager``, whose ``__init__`` calls the next one without
    arguments.
    """

    sessions: Sessions[Any]

    def route(self, event: str, data: Any, namespace: str, room: Any) -> bool:
        """Take an event without callback, emitted to ``room``, before local delivery;
        True if it was taken."""
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
            if self.route(event, data, namespace, to or room):
                return None
            if self._send(event, data, namespace, to or room, skip_sid):
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
        if namespace not in self.rooms:
            return True
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        pkt = self.sessions.encode(namespace, [event, *args])
        if pkt is None:
            return False
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid not in skip:
                self.sessions.put(eio_sid, pkt)
        return True


#: Messages heard from Redis and not yet taken by python-socketio's listener task; past
#: this, reading from Redis waits (and Redis buffers, up to its pub/sub output limit).
INBOX = 1000
#: Longest wait, in seconds, between two attempts to subscribe while Redis is unreachable
#: (the self-check restarts the listener at once when Redis answers again).
MAX_RETRY_DELAY = 30.0


class _Subscribed:
    """In the inbox: Redis confirmed a subscription; what follows was heard through it."""


_SUBSCRIBED = _Subscribed()


class RedisManager(AsyncPubSubManager, LocalManager):  # type: ignore[misc]
    """A Redis message queue for python-socketio, whose local deliveries go through
    :class:`LocalManager`.

    Two tasks share the work. This class's receiver subscribes to the channel and puts
    what arrives, and each subscription Redis confirms, into an inbox, in order; it is
    started, restarted and stopped here. python-socketio's listener task, started by
    ``initialize()``, takes them from the inbox through :meth:`_listen` and delivers them.

    The MRO puts LocalManager (and any manager class a subclass lists after this one)
    between AsyncPubSubManager and AsyncManager: AsyncPubSubManager delivers both this
    process's emits and those heard from Redis with ``super().emit``.
    """

    name = "redis"

    def __init__(
        self, url: str, channel: str, logger: logging.Logger, sessions: Sessions[Any]
    ) -> None:
        self.sessions = sessions
        super().__init__(channel=channel, logger=logger)
        self.url = url
        self._log = logger
        self._inbox: asyncio.Queue[bytes | _Subscribed] = asyncio.Queue(INBOX)
        self._initialized = False
        self._receiver: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[Any] | None = None  # python-socketio's listener task

    # -- what subclasses implement --------------------------------------------------------------

    def outgoing(self, data: dict[str, Any]) -> None:
        """Publish ``data`` (a dict for the channel) without blocking the caller."""
        raise NotImplementedError

    def heard(self, message: bytes) -> bool:
        """See a message from the channel first; True if it is not for python-socketio."""
        return False

    def subscribed(self) -> None:
        """Redis confirmed a subscription of the listener (the first, or after it lost the
        previous one): it hears the channel from now on."""

    # -- python-socketio's message queue interface ------------------------------------------

    async def _publish(self, data: dict[str, Any]) -> None:
        # python-socketio awaits this in the emitting handler (and so the sender's ack).
        self.outgoing(data)

    def dumps(self, data: dict[str, Any]) -> str:
        """``data`` as the channel carries it (the server's JSON module)."""
        return str(self.json.dumps(data))

    async def _listen(self) -> AsyncIterator[bytes]:
        # Runs in python-socketio's listener task, which close_listener() ends.
        self._consumer = asyncio.current_task()
        while True:
            message = await self._inbox.get()
            if isinstance(message, _Subscribed):
                self.subscribed()
            elif not self.heard(message):
                yield message

    def initialize(self) -> None:
        # python-socketio calls this at the first connection; start_listening() earlier.
        if not self._initialized:
            self._initialized = True
            super().initialize()

    # -- the listener -----------------------------------------------------------------------------

    def start_listening(self) -> None:
        """Subscribe and deliver from now on; python-socketio would wait for the first
        connection."""
        self.initialize()
        if self._receiver is None:
            self._start_receiver()

    async def restart_listener(self) -> None:
        """Subscribe again, with fresh clients."""
        await self._stop_receiver()
        self._start_receiver()

    async def close_listener(self) -> None:
        """Stop subscribing and delivering for good; the clients are closed."""
        await self._stop_receiver()
        consumer, self._consumer = self._consumer, None
        await cancel_and_wait(consumer)

    def _start_receiver(self) -> None:
        self._receiver = asyncio.create_task(self._receive(), name="fanout-listen")

    async def _stop_receiver(self) -> None:
        receiver, self._receiver = self._receiver, None
        await cancel_and_wait(receiver)

    async def _receive(self) -> None:
        """Subscribe to the channel and pass on what arrives, for good: after a failure,
        subscribe again with fresh clients, at once the first time (a dropped connection),
        then backing off while Redis stays unreachable."""
        delay = 0.0
        while True:
            client = redisconn.subscriber(self.url)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Reading waits for the next message with no timeout; the self-check
                # (fanout) notices a connection that went quiet.
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        delay = 0.0
                        await self._inbox.put(_SUBSCRIBED)
                    elif message["type"] == "message":
                        await self._inbox.put(message["data"])
                raise RedisError("the subscription ended")
            except (RedisError, OSError) as exc:
                # An outage is expected and ridden out (history, self-check, readiness):
                # one line, no traceback.
                self._log.warning(
                    "fan-out: cannot receive from Redis (%s); subscribing again in %.0fs",
                    exc,
                    delay,
                )
            except Exception:
                self._log.exception("fan-out: the Redis listener failed; subscribing again")
            finally:
                # A subscription nobody reads any more: Redis would keep sending to it.
                await _close_clients([pubsub, client])
            await asyncio.sleep(delay)
            delay = min(max(2 * delay, 1.0), MAX_RETRY_DELAY)


async def _close_clients(clients: list[Any]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.aclose(), 1.0)
