"""The one module that reaches into python-socketio / python-engineio internals.

Room messages are the hot path and need two things the public API does not give:

* ordering we control: a packet is put on each recipient's engine.io send queue
  synchronously, so the order in which the feed decides equals the order on every wire
  (``AsyncManager.emit`` spawns a task per recipient and returns control in between);
* encode once: the Socket.IO packet and its engine.io wrapper are built once per message
  and the same object is queued for every recipient (engine.io caches its encoding).

Internals used, checked by ``tests/test_fanout_internals.py`` against the pinned versions
below (update both together): ``AsyncServer.eio.sockets``, ``AsyncSocket.queue``,
``.closed`` and ``.close(wait=False)``, ``AsyncServer.packet_class``,
``AsyncManager.eio_sid_from_sid`` and the ``AsyncPubSubManager._handle_emit -> super().emit``
call chain.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

if TYPE_CHECKING:
    from .feed import RoomFeed

#: Versions this module was written and tested against.
TESTED_VERSIONS = {"python-socketio": "5.18", "python-engineio": "4.15"}

MESSAGE_EVENT = "message"


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
        joins = [asyncio.ensure_future(s.queue.join()) for s in sockets]
        if joins:
            _, pending = await asyncio.wait(joins, timeout=grace)
            for join in pending:
                join.cancel()
        eio.sockets.clear()


class FeedManager(socketio.AsyncManager):  # type: ignore[misc]
    """Routes every ``message`` event, local or from other processes, through the feed."""

    feed: RoomFeed | None = None

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


class FeedRedisManager(socketio.AsyncRedisManager, FeedManager):  # type: ignore[misc]
    """AsyncRedisManager whose local deliveries (``super().emit``) go through FeedManager.

    The MRO puts FeedManager between AsyncPubSubManager and AsyncManager, so both this
    process's emits and those arriving from Redis reach ``FeedManager.emit``.
    """
