"""Moderation: admins keep people out (an account, or a guest's address, for a while or
until lifted), and every such act is written to the moderation log.

Bans live in the database, so every process applies them: each keeps the bans in force in
memory, refreshed once a second (:meth:`Moderation.refresh`, with the sign-in check), and
checks connections, sign-ins and API posts against that copy.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets

from aiohttp import web

from .accounts import AccountError, Accounts
from .signin import COOKIE_NAME, SignIns
from .store import Account, AccountStore, Ban, LogEntry
from .store.base import now_ms

log = logging.getLogger(__name__)

#: The most characters of a ban's reason kept.
MAX_REASON = 500
#: What ``POST /api/bans`` takes.
SHAPE = "send {handle | address, minutes?, reason?}"
#: Log lines per ``/api/modlog`` page: default and most.
LOG_DEFAULT = 50
LOG_MAX = 200


class ModerationError(ValueError):
    """A moderation request that cannot be done; ``str(exc)`` says why."""


def banned_reason(ban: Ban) -> str:
    """What a banned person is told."""
    reason = f": {ban.reason}" if ban.reason else ""
    return f"banned from this server{reason}"


class Moderation:
    """Bans and the moderation log of one database."""

    def __init__(self, store: AccountStore, accounts: Accounts) -> None:
        self._store = store
        self._accounts = accounts
        #: The bans in force, by account id and by address, as of the last refresh.
        self._accounts_banned: dict[str, Ban] = {}
        self._addresses_banned: dict[str, Ban] = {}

    async def refresh(self) -> None:
        """Take the bans in force from the database (every process's, the CLI's)."""
        bans = await self._store.bans(now_ms())
        self._accounts_banned = {b.target: b for b in bans if b.kind == "account"}
        self._addresses_banned = {b.target: b for b in bans if b.kind == "address"}

    def ban_of(self, account_id: str | None, address: str | None) -> Ban | None:
        """The ban keeping this account or this address out, if any."""
        now = now_ms()
        for ban in (
            self._accounts_banned.get(account_id or ""),
            self._addresses_banned.get(address or ""),
        ):
            if ban is not None and (ban.until == 0 or ban.until > now):
                return ban
        return None

    def refusal(self, account_id: str | None, address: str | None) -> str | None:
        """Why this account or address is kept out now (None: it is not)."""
        ban = self.ban_of(account_id, address)
        return banned_reason(ban) if ban is not None else None

    async def ban(
        self,
        actor: Account,
        *,
        handle: str | None = None,
        address: str | None = None,
        minutes: float | None = None,
        reason: str = "",
    ) -> Ban:
        """Keep an account (by ``handle``) or an ``address`` out, for ``minutes`` or until
        lifted: its sign-ins end and its connections are dropped within a second."""
        if (handle is None) == (address is None):
            raise ModerationError("ban a handle or an address, one of them")
        if minutes is not None and not 0 < minutes <= 10 * 365 * 24 * 60:
            raise ModerationError("minutes must be more than 0 and at most ten years")
        now = now_ms()
        if handle is not None:
            try:
                target = await self._accounts.get(handle)
            except AccountError as exc:
                raise ModerationError(str(exc)) from None
            if target.id == actor.id:
                raise ModerationError("you cannot ban yourself")
            kind, key, shown = "account", target.id, target.handle
        else:
            assert address is not None
            try:
                key = str(ipaddress.ip_address(address.strip()))
            except ValueError:
                raise ModerationError(f"invalid address: {address[:64]!r}") from None
            kind, shown = "address", key
        ban = Ban(
            id=secrets.token_hex(8),
            kind=kind,
            target=key,
            until=now + int(minutes * 60_000) if minutes else 0,
            reason=reason.strip()[:MAX_REASON],
            created=now,
            created_by=actor.id,
        )
        for_how_long = f"{minutes:g} minutes" if minutes else "until lifted"
        detail = f"{for_how_long}; {ban.reason}" if ban.reason else for_how_long
        await self._store.add_ban(ban, LogEntry(now, actor.handle, "ban", shown, detail))
        if kind == "account":
            await self._store.remove_sign_ins(key, None, now)
        await self.refresh()
        log.info("%s banned %s %s (%s)", actor.handle, kind, shown, for_how_long)
        return ban

    async def unban(self, actor: Account, ban_id: str) -> None:
        entry = LogEntry(now_ms(), actor.handle, "unban", ban_id, "")
        if not await self._store.remove_ban(ban_id, entry):
            raise ModerationError("no such ban")
        await self.refresh()
        log.info("%s lifted ban %s", actor.handle, ban_id)

    async def record(self, actor: str, action: str, target: str, detail: str = "") -> None:
        """Write a line of the moderation log (an admin's ``action`` on ``target``)."""
        await self._store.log_action(LogEntry(now_ms(), actor, action, target, detail))

    async def bans(self) -> list[Ban]:
        return await self._store.bans(now_ms())

    async def log(self, limit: int, before: int | None) -> list[LogEntry]:
        return await self._store.mod_log(limit, before)


def setup_moderation(app: web.Application, moderation: Moderation, sign_ins: SignIns) -> None:
    """The admins' API: ``GET``/``POST /api/bans``, ``DELETE /api/bans/{id}``,
    ``GET /api/modlog?limit=&before=``."""

    async def admin(request: web.Request) -> Account | web.Response:
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        if found is None:
            return web.json_response({"error": "not signed in"}, status=401)
        if found[1].role != "admin":
            return web.json_response({"error": "only admins moderate"}, status=403)
        return found[1]

    async def list_bans(request: web.Request) -> web.Response:
        actor = await admin(request)
        if isinstance(actor, web.Response):
            return actor
        return web.json_response([b.to_dict() for b in await moderation.bans()])

    async def add_ban(request: web.Request) -> web.Response:
        actor = await admin(request)
        if isinstance(actor, web.Response):
            return actor
        try:
            data = await request.json()
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(data, dict):
            return web.json_response({"error": SHAPE}, status=400)
        handle, address = data.get("handle"), data.get("address")
        minutes, reason = data.get("minutes"), data.get("reason", "")
        if not (
            (handle is None or isinstance(handle, str))
            and (address is None or isinstance(address, str))
            and (minutes is None or isinstance(minutes, int | float))
            and not isinstance(minutes, bool)
            and isinstance(reason, str)
        ):
            return web.json_response({"error": SHAPE}, status=400)
        try:
            ban = await moderation.ban(
                actor, handle=handle, address=address, minutes=minutes, reason=reason
            )
        except ModerationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(ban.to_dict(), status=201)

    async def lift(request: web.Request) -> web.Response:
        actor = await admin(request)
        if isinstance(actor, web.Response):
            return actor
        try:
            await moderation.unban(actor, request.match_info["id"])
        except ModerationError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response({"ok": True})

    async def mod_log(request: web.Request) -> web.Response:
        actor = await admin(request)
        if isinstance(actor, web.Response):
            return actor
        try:
            limit = int(request.query.get("limit", LOG_DEFAULT))
            before = int(request.query["before"]) if request.query.get("before") else None
        except ValueError:
            return web.json_response({"error": "limit and before are integers"}, status=400)
        if not 1 <= limit <= LOG_MAX:
            return web.json_response({"error": f"limit must be 1-{LOG_MAX}"}, status=400)
        return web.json_response([e.to_dict() for e in await moderation.log(limit, before)])

    app.router.add_get("/api/bans", list_bans)
    app.router.add_post("/api/bans", add_ban)
    app.router.add_delete("/api/bans/{id}", lift)
    app.router.add_get("/api/modlog", mod_log)
