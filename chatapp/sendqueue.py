"""The bounded send queue of each engine.io session, and the bound on all of them together.

engine.io makes every session's queue through ``AsyncServer.create_queue``, which
:class:`~chatapp.sessions.Sessions` replaces so that each is a :class:`SendQueue`: a client
that stops reading fills its queue up to its bound and is dropped, and the
:class:`Backlog` bounds what all queues hold together.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import weakref
from collections.abc import Callable
from typing import Any

from engineio import packet as eio_packet

from .frames import packet_size

#: Bytes a connection may have waiting in its transport's write buffer for a frame to
#: still be written directly (asyncio's default high-water mark). Above it the connection
#: is not idle: packets wait in its send queue, whose writer blocks on aiohttp's flow
#: control, and a client that does not read fills that queue up to its bound.
WRITE_HIGH_WATER = 64 * 1024


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
    ``Sessions.adopt``). A packet is refused once the queue holds either bound, so it
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
