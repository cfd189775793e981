"""Private rooms: only their members (accounts an admin added) join them, read their
history, post to them or see them in the room list.

The private rooms and their members live in the database; each process keeps a copy,
refreshed once a second (with the sign-in and ban check), so a room made private or a
member removed on one process takes effect on all of them within a second: connections
that may no longer be there are dropped. An account is refused only after the database
is asked again, so a member added on one process is let in at once on every other.
"""

from __future__ import annotations

import logging

from aiohttp import web

from . import protocol
from .accounts import AccountError, Accounts
from .protocol import ProtocolError
from .signin import COOKIE_NAME, SignIns
from .store import Account, AccountStore, LogEntry
from .store.base import now_ms

log = logging.getLogger(__name__)

#: Why a connection to a private room is refused (the same whether the room is private or
#: the person is not a member: the refusal does not tell which rooms exist).
NOT_A_MEMBER = "no such room, or you are not one of its members"


#: The names of direct conversations (``chatapp.dms``), which only their members see.
DM_PREFIX = "dm-"


def _not_a_dm(room: str) -> None:
    if room.startswith(DM_PREFIX):
        raise AccountError(f"#{room} is not a room an admin manages")


class PrivateRooms:
    """Which rooms are private, and who may be in each."""

    def __init__(self, store: AccountStore, accounts: Accounts) -> None:
        self._store = store
        self._accounts = accounts
        self._rooms: dict[str, set[str]] = {}

    async def refresh(self) -> None:
        self._rooms = await self._store.private_rooms()

    def allows(self, room: str, account_id: str | None) -> bool:
        """Whether ``account_id`` (None: a guest) may be in ``room``."""
        members = self._rooms.get(room)
        if members is None:
            # A direct conversation that does not exist yet is nobody's to enter.
            return not room.startswith(DM_PREFIX)
        return account_id is not None and account_id in members

    async def admits(self, room: str, account_id: str | None) -> bool:
        """Whether ``account_id`` may be in ``room``, asking the database again before
        refusing an account: another process may have let it in (added it as a member,
        made the room public or started the conversation) since this one last looked."""
        if self.allows(room, account_id):
            return True
        if account_id is None:
            return False
        await self.refresh()
        return self.allows(room, account_id)

    def members(self, room: str) -> set[str] | None:
        """The member ids of a private room; None for a room open to all."""
        members = self._rooms.get(room)
        return set(members) if members is not None else None

    async def member_handles(self, room: str) -> list[str]:
        """The handles of a private room's members, sorted."""
        members = self._rooms.get(room, set())
        return sorted(a.handle for a in await self._accounts.all() if a.id in members)

    async def all(self) -> dict[str, list[str]]:
        """Every private room (as the database has them now), with its members' handles;
        not the direct conversations, which are their members' alone."""
        rooms = {
            r: m
            for r, m in (await self._store.private_rooms()).items()
            if not r.startswith(DM_PREFIX)
        }
        handles = {a.id: a.handle for a in await self._accounts.all()}
        return {
            room: sorted(handles[i] for i in members if i in handles)
            for room, members in sorted(rooms.items())
        }

    async def make_private(self, actor: Account, room: str, handles: list[str]) -> None:
        """Make ``room`` private, with ``actor`` and the accounts ``handles`` as members."""
        _not_a_dm(room)
        found = [actor] + [await self._accounts.get(h) for h in handles]
        now = now_ms()
        members = [(a.id, _member_entry(now, actor, room, a, True)) for a in found]
        entry = LogEntry(now, actor.handle, "private", room, "")
        await self._store.set_private(room, True, entry, members)
        await self.refresh()

    async def make_public(self, actor: Account, room: str) -> bool:
        if room.startswith(DM_PREFIX):
            return False  # not a private room an admin manages
        entry = LogEntry(now_ms(), actor.handle, "public", room, "")
        changed = await self._store.set_private(room, False, entry)
        await self.refresh()
        return changed

    async def set_member(self, actor: Account, room: str, handle: str, member: bool) -> bool:
        _not_a_dm(room)
        if room not in self._rooms:
            raise AccountError(f"#{room} is not private")
        changed = await self._set(actor, room, await self._accounts.get(handle), member)
        await self.refresh()
        return changed

    async def _set(self, actor: Account, room: str, account: Account, member: bool) -> bool:
        entry = _member_entry(now_ms(), actor, room, account, member)
        return await self._store.set_member(room, account.id, member, entry)


def _member_entry(now: int, actor: Account, room: str, account: Account, member: bool) -> LogEntry:
    action = "add member" if member else "remove member"
    return LogEntry(now, actor.handle, action, account.handle, f"#{room}")


def setup_private_rooms(app: web.Application, rooms: PrivateRooms, sign_ins: SignIns) -> None:
    """The admins' API: ``PUT``/``DELETE /api/rooms/{room}/private`` (with ``{members:
    [handles]}``), ``PUT``/``DELETE /api/rooms/{room}/members/{handle}``, and ``GET
    /api/rooms/{room}/members`` (admins and members)."""

    async def signed_in(request: web.Request) -> Account | web.Response:
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        if found is None:
            return web.json_response({"error": "not signed in"}, status=401)
        return found[1]

    async def admin(request: web.Request) -> tuple[Account, str] | web.Response:
        actor = await signed_in(request)
        if isinstance(actor, web.Response):
            return actor
        if actor.role != "admin":
            return web.json_response({"error": "only admins manage private rooms"}, status=403)
        try:
            return actor, protocol.parse_room(request.match_info["room"])
        except ProtocolError as exc:
            return web.json_response({"error": str(exc)}, status=404)

    async def make_private(request: web.Request) -> web.Response:
        checked = await admin(request)
        if isinstance(checked, web.Response):
            return checked
        actor, room = checked
        try:
            data = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        handles = data.get("members", []) if isinstance(data, dict) else None
        if not isinstance(handles, list) or not all(isinstance(h, str) for h in handles):
            return web.json_response({"error": "send {members?: [handles]}"}, status=400)
        try:
            await rooms.make_private(actor, room, handles[:1000])
        except AccountError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("%s made #%s private", actor.handle, room)
        return web.json_response({"ok": True})

    async def make_public(request: web.Request) -> web.Response:
        checked = await admin(request)
        if isinstance(checked, web.Response):
            return checked
        actor, room = checked
        if not await rooms.make_public(actor, room):
            return web.json_response({"error": f"#{room} is not private"}, status=404)
        log.info("%s made #%s public", actor.handle, room)
        return web.json_response({"ok": True})

    async def member(request: web.Request, add: bool) -> web.Response:
        checked = await admin(request)
        if isinstance(checked, web.Response):
            return checked
        actor, room = checked
        try:
            await rooms.set_member(actor, room, request.match_info["handle"], add)
        except AccountError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response({"ok": True})

    async def add_member(request: web.Request) -> web.Response:
        return await member(request, True)

    async def remove_member(request: web.Request) -> web.Response:
        return await member(request, False)

    async def list_members(request: web.Request) -> web.Response:
        actor = await signed_in(request)
        if isinstance(actor, web.Response):
            return actor
        try:
            room = protocol.parse_room(request.match_info["room"])
        except ProtocolError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        members = rooms.members(room)
        admin_may = actor.role == "admin" and not room.startswith(DM_PREFIX)
        if members is None or (actor.id not in members and not admin_may):
            return web.json_response({"error": NOT_A_MEMBER}, status=404)
        return web.json_response({"room": room, "members": await rooms.member_handles(room)})

    app.router.add_put("/api/rooms/{room}/private", make_private)
    app.router.add_delete("/api/rooms/{room}/private", make_public)
    app.router.add_get("/api/rooms/{room}/members", list_members)
    app.router.add_put("/api/rooms/{room}/members/{handle}", add_member)
    app.router.add_delete("/api/rooms/{room}/members/{handle}", remove_member)
