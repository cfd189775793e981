"""Retention: how long history is kept, for the server (``--retention-days``) and for the
rooms an admin gave their own; older messages are deleted from the database, and so from
every API and every catch-up, when the server starts and then hourly.

Ids are never reused: a room's counter stays where it was, so clients that remember an id
catch up from it as before (on what is left).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from . import protocol
from .export import all_rooms
from .protocol import ProtocolError
from .signin import COOKIE_NAME, SignIns
from .store import LogEntry, Store
from .store.base import now_ms

if TYPE_CHECKING:
    from .files import FileStore

log = logging.getLogger(__name__)

#: Seconds between sweeps.
SWEEP_EVERY = 3600.0
#: The longest retention that may be set, in days (a century).
MAX_DAYS = 36_500.0


class Retention:
    """Deletes what is older than its room's retention."""

    def __init__(self, store: Store, default_days: float, files: FileStore | None = None) -> None:
        self._store = store
        self.default_days = default_days
        self._files = files

    async def sweep(self) -> int:
        """Delete every room's expired messages now, and the files no message has any
        more; how many messages went."""
        deleted = await self._expire()
        if self._files is not None:
            await self._files.collect(self._store)
        return deleted

    async def _expire(self) -> int:
        own = await self._store.retention()
        if not self.default_days and not any(own.values()):
            return 0
        now = now_ms()
        deleted = 0
        for room in await all_rooms(self._store):
            days = own.get(room, self.default_days)
            if days > 0:
                deleted += await self._store.expire(room, now - int(days * 86_400_000))
        if deleted:
            log.info("retention: deleted %d expired messages", deleted)
        return deleted

    async def run(self) -> None:
        """Sweep hourly, for ever (the first sweep is the caller's, at start)."""
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                await self.sweep()
            except Exception:
                log.exception("retention sweep failed; trying again in an hour")

    async def set_room(self, actor: str, room: str, days: float | None) -> None:
        shown = "the server's" if days is None else f"{days:g} days"
        await self._store.set_retention(
            room, days, LogEntry(now_ms(), actor, "retention", room, shown)
        )
        await self.sweep()


def setup_retention(app: web.Application, retention: Retention, sign_ins: SignIns) -> None:
    """``PUT /api/rooms/{room}/retention`` with ``{"days": N | null}`` (admins)."""

    async def set_room(request: web.Request) -> web.Response:
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        if found is None:
            return web.json_response({"error": "not signed in"}, status=401)
        if found[1].role != "admin":
            return web.json_response({"error": "only admins set retention"}, status=403)
        try:
            room = protocol.parse_room(request.match_info["room"])
        except ProtocolError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        try:
            data = await request.json()
        except ValueError:
            data = None
        raw = data.get("days", "missing") if isinstance(data, dict) else "missing"
        days: float | None = None
        if isinstance(raw, int | float) and not isinstance(raw, bool) and 0 <= raw <= MAX_DAYS:
            days = float(raw)
        elif raw is not None:
            return web.json_response(
                {"error": f"send {{days}}: 0 (keep all) to {MAX_DAYS:g}, or null (the server's)"},
                status=400,
            )
        await retention.set_room(found[1].handle, room, days)
        return web.json_response({"ok": True, "room": room, "days": days})

    app.router.add_put("/api/rooms/{room}/retention", set_room)
