"""Telling a room who is online: ``presence`` events, coalesced when many come at once.

An event carries the room's whole list to each of its members, so it costs the square
of the number of people online. A room hears of each change at once until its events
of the last :data:`WINDOW` seconds cost :data:`BUDGET`; later changes wait for the
window's end and go out as one event, and in a big room the next window is longer (up
to 5 s), so that its events cost about :data:`BUDGET` a second. When a whole office
reconnects (a server restart) a big room so gets an event every few seconds instead of
one per person, which made reconnecting cubic in room size; a room of 10 still hears of
20 changes a second one by one. One waiting change goes out as it would alone
(``joined`` or ``left``); several go out as ``joins`` and ``leaves``, lists of names,
with neither ``joined`` nor ``left``, which older clients take as a refresh of the list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .presence import Presence, people, person

log = logging.getLogger(__name__)

#: A room's events are sent at once while those of the last :data:`WINDOW` seconds cost
#: less than :data:`BUDGET` (people listed times people told, summed); after that, the
#: changes wait for the window's end and go out together.
WINDOW = 1.0
BUDGET = 2_000
#: A window that ended with changes waiting is followed by a longer one when its events
#: cost more than :data:`BUDGET`, up to this many times :data:`WINDOW`.
MAX_STRETCH = 5.0

#: Sends a ``presence`` event to a room's connections (and subscribers).
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class _Window:
    """A room's current window: what its events cost so far, and changes waiting for
    its end (member key -> +1 joined, -1 left)."""

    timer: asyncio.TimerHandle
    spent: int = 0
    waiting: dict[str, int] = field(default_factory=dict)


class Announcer:
    """Sends rooms their ``presence`` events: each change at once, but past
    :data:`BUDGET` in :data:`WINDOW` seconds one event per window."""

    def __init__(
        self, presence: Presence, emit: Emit, window: float = WINDOW, budget: int = BUDGET
    ) -> None:
        self.presence = presence
        self._emit = emit
        self.window = window
        self.budget = budget
        # Rooms with a change in the last window; a window without one forgets the room.
        self._windows: dict[str, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def changed(
        self,
        room: str,
        joined: str | None = None,
        left: str | None = None,
        users: list[str] | None = None,
    ) -> None:
        """``joined`` (a member key) came online in ``room``, or ``left`` went; ``users``
        is who is online now, if the caller knows. A change with both (a rename) and a
        refresh (neither) go out at once, after whatever was waiting."""
        window = self._windows.get(room)
        if window is None:
            timer = asyncio.get_running_loop().call_later(self.window, self._window_over, room)
            window = self._windows[room] = _Window(timer)
        if (joined is None) != (left is None) and (window.waiting or window.spent >= self.budget):
            key, sign = (joined, 1) if joined is not None else (left, -1)
            assert key is not None
            if window.waiting.get(key) == -sign:
                del window.waiting[key]  # gone and back (or back and gone): nothing to say
            else:
                window.waiting[key] = sign
            return
        if window.waiting:
            await self._flush(room, window, window)
            users = None
        window.spent += await self._send(room, joined, left, users=users)

    async def close(self) -> None:
        """Send what waits (people leaving a stopping process are news to the others'
        clients), stop the timers and wait for events being sent."""
        windows, self._windows = self._windows, {}
        for window in windows.values():
            window.timer.cancel()
        await asyncio.gather(*(self._flush(room, w, w) for room, w in windows.items()))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the window ---------------------------------------------------------------------

    def _window_over(self, room: str) -> None:
        window = self._windows.pop(room)
        if not window.waiting:
            return  # quiet: the next change goes at once
        # The next window lasts until this one's cost, spread over both, is BUDGET a WINDOW:
        # a second in a room of 45, 5 s (the most) in a room of 100 or more.
        length = self.window * min(max(window.spent / self.budget, 1.0), MAX_STRETCH)
        loop = asyncio.get_running_loop()
        new = self._windows[room] = _Window(loop.call_later(length, self._window_over, room))
        task = asyncio.create_task(self._flush(room, window, new))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, room: str, window: _Window, charged: _Window) -> None:
        """Send what waits in ``window``, its cost counted in ``charged``."""
        changes, window.waiting = window.waiting, {}
        if len(changes) == 1:
            [(key, sign)] = changes.items()
            cost = await self._send(room, key if sign > 0 else None, key if sign < 0 else None)
        elif changes:
            joins = [key for key, sign in changes.items() if sign > 0]
            leaves = [key for key, sign in changes.items() if sign < 0]
            cost = await self._send(room, joins=joins, leaves=leaves)
        else:
            return
        charged.spent += cost

    async def _send(
        self,
        room: str,
        joined: str | None = None,
        left: str | None = None,
        users: list[str] | None = None,
        joins: list[str] | None = None,
        leaves: list[str] | None = None,
    ) -> int:
        """Send the event; what it cost (people online, squared)."""
        try:
            if users is None:
                users = await self.presence.users(room)
            online = people(users)
            event: dict[str, Any] = {
                "room": room,
                "users": [p["name"] for p in online],
                "people": online,
            }
            if joined is not None:
                event["joined"] = person(joined)["name"]
            if left is not None:
                event["left"] = person(left)["name"]
            if joins is not None:
                event["joins"] = [person(key)["name"] for key in joins]
            if leaves is not None:
                event["leaves"] = [person(key)["name"] for key in leaves]
            await self._emit(room, event)
        except Exception:
            log.exception("could not tell #%s who is online", room)
            return 0
        return len(online) ** 2
