"""python-socketio client managers whose emits are encoded once and handed over in order.

**Redis** (the policy is ``fanout.FeedRedisManager``): :class:`RedisManager` hands over
what ``AsyncRedisManager`` keeps to itself: publishing (``_publish`` replaced), what the
listener hears (``_listen`` wrapped), each subscription of the listener (Redis's
confirmation, which python-socketio discards), and the listener task (started early,
restarted); and it closes the clients python-socketio replaces when it reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import socketio

from .sessions import Sessions


class LocalManager(socketio.AsyncManager):  # type: ignore[misc]
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
        self,
        url: str,
        channel: str,
        logger: logging.Logger,
        redis_options: dict[str, Any],
        sessions: Sessions[Any],
    ) -> None:
        self.sessions = sessions
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
