"""The admins' page (``/admin``): bots and their tokens, bans, private rooms and their
members, rooms' retention, and the moderation log, from the browser; the same services
as the JSON API and the command line."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from . import protocol
from .accounts import AccountError, Accounts
from .moderation import Moderation, ModerationError
from .private_rooms import PrivateRooms
from .protocol import ProtocolError
from .retention import MAX_DAYS, Retention
from .signin import COOKIE_NAME, SignIns
from .store import Account, AccountStore, LogEntry
from .store.base import now_ms

#: Lines of the moderation log the page shows.
LOG_SHOWN = 50
MAX_FORM_BYTES = 4096


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def _kept(days: float) -> str:
    """How much history a retention of ``days`` keeps (0: all)."""
    return f"{days:g} days" if days else "all history"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def setup_admin(
    app: web.Application,
    *,
    store: AccountStore,
    accounts: Accounts,
    sign_ins: SignIns,
    moderation: Moderation,
    private_rooms: PrivateRooms,
    retention: Retention,
) -> None:
    """``GET /admin`` and its forms: ``POST /admin/bots``, ``/admin/bots/{handle}/revoke``,
    ``/admin/bans``, ``/admin/bans/{id}/lift``, ``/admin/private``,
    ``/admin/private/{room}/public``, ``/admin/members``, ``/admin/retention``."""

    async def admin(request: web.Request) -> Account:
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        if found is None:
            raise web.HTTPSeeOther("/signin?next=/admin")
        if found[1].role != "admin":
            raise web.HTTPForbidden(text="only admins")
        return found[1]

    async def page(
        request: web.Request,
        *,
        notice: str | None = None,
        error: str | None = None,
        token: str | None = None,
        status: int = 200,
    ) -> web.Response:
        everyone = await accounts.all()
        handles = {a.id: a.handle for a in everyone}
        bans: list[dict[str, Any]] = [
            {
                "id": b.id,
                "shown": "@" + handles.get(b.target, b.target) if b.kind == "account" else b.target,
                "until": f"until {_when(b.until)}" if b.until else "until lifted",
                "reason": b.reason,
            }
            for b in await moderation.bans()
        ]
        log = [{**e.to_dict(), "when": _when(e.ts)} for e in await moderation.log(LOG_SHOWN, None)]
        context = {
            "bots": [a for a in everyone if a.role == "bot"],
            "bans": bans,
            "private_rooms": [
                {"room": room, "members": ", ".join(f"@{h}" for h in members) or "no members"}
                for room, members in (await private_rooms.all()).items()
            ],
            "retention": [
                {"room": room, "shown": _kept(days)}
                for room, days in sorted((await store.retention()).items())
            ],
            "default_kept": _kept(retention.default_days),
            "log": log,
            "notice": notice,
            "error": error,
            "token": token,
        }
        return aiohttp_jinja2.render_template("admin.html", request, context, status=status)

    async def form(request: web.Request) -> dict[str, str]:
        if (request.content_length or 0) > MAX_FORM_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_FORM_BYTES, actual_size=request.content_length or 0
            )
        data = await request.post()
        return {k: str(v) for k, v in data.items()}

    async def show(request: web.Request) -> web.Response:
        await admin(request)
        return await page(request)

    async def add_bot(request: web.Request) -> web.Response:
        actor = await admin(request)
        data = await form(request)
        try:
            bot = await accounts.add(data.get("name", ""), None, role="bot")
        except AccountError as exc:
            return await page(request, error=str(exc), status=400)
        token = await sign_ins.start_bot(bot)
        await store.log_action(LogEntry(now_ms(), actor.handle, "add bot", bot.handle, ""))
        return await page(request, notice=f"made the bot @{bot.handle}", token=token)

    async def revoke_bot(request: web.Request) -> web.Response:
        actor = await admin(request)
        try:
            bot = await accounts.get(request.match_info["handle"])
        except AccountError as exc:
            return await page(request, error=str(exc), status=404)
        if bot.role != "bot":
            return await page(request, error=f"@{bot.handle} is not a bot", status=400)
        ended = await store.remove_sign_ins(bot.id, None, now_ms())
        await store.log_action(LogEntry(now_ms(), actor.handle, "revoke bot", bot.handle, ""))
        return await page(request, notice=f"revoked {ended} token(s) of @{bot.handle}")

    async def ban(request: web.Request) -> web.Response:
        actor = await admin(request)
        data = await form(request)
        target = data.get("target", "").strip().removeprefix("@")
        minutes_text = data.get("minutes", "").strip()
        try:
            minutes = float(minutes_text) if minutes_text else None
        except ValueError:
            return await page(request, error="minutes must be a number", status=400)
        where: dict[str, str] = {"address" if _is_address(target) else "handle": target}
        try:
            made = await moderation.ban(
                actor, minutes=minutes, reason=data.get("reason", ""), **where
            )
        except ModerationError as exc:
            return await page(request, error=str(exc), status=400)
        return await page(request, notice=f"banned {target} ({made.id})")

    async def lift(request: web.Request) -> web.Response:
        actor = await admin(request)
        try:
            await moderation.unban(actor, request.match_info["id"])
        except ModerationError as exc:
            return await page(request, error=str(exc), status=404)
        return await page(request, notice="ban lifted")

    def room_of(data: dict[str, str]) -> str:
        return protocol.parse_room(data.get("room", "").strip().removeprefix("#"))

    async def make_private(request: web.Request) -> web.Response:
        actor = await admin(request)
        data = await form(request)
        try:
            room = room_of(data)
            handles = [
                h.removeprefix("@") for h in data.get("members", "").replace(",", " ").split()
            ]
            await private_rooms.make_private(actor, room, handles)
        except (ProtocolError, AccountError) as exc:
            return await page(request, error=str(exc), status=400)
        return await page(request, notice=f"#{room} is private")

    async def make_public(request: web.Request) -> web.Response:
        actor = await admin(request)
        try:
            room = protocol.parse_room(request.match_info["room"])
        except ProtocolError as exc:
            return await page(request, error=str(exc), status=404)
        if not await private_rooms.make_public(actor, room):
            return await page(request, error=f"#{room} is not private", status=404)
        return await page(request, notice=f"#{room} is open to everyone")

    async def member(request: web.Request) -> web.Response:
        actor = await admin(request)
        data = await form(request)
        adding = data.get("action") != "remove"
        handle = data.get("handle", "").strip().removeprefix("@")
        try:
            room = room_of(data)
            await private_rooms.set_member(actor, room, handle, adding)
        except (ProtocolError, AccountError) as exc:
            return await page(request, error=str(exc), status=400)
        done = f"added @{handle} to" if adding else f"removed @{handle} from"
        return await page(request, notice=f"{done} #{room}")

    async def set_retention(request: web.Request) -> web.Response:
        actor = await admin(request)
        data = await form(request)
        text = data.get("days", "").strip()
        try:
            room = room_of(data)
            days = float(text) if text else None
        except ProtocolError as exc:
            return await page(request, error=str(exc), status=400)
        except ValueError:
            days = -1.0
        if days is not None and not 0 <= days <= MAX_DAYS:
            error = f"days must be 0 (keep all) to {MAX_DAYS:g}, or empty (the server's)"
            return await page(request, error=error, status=400)
        await retention.set_room(actor.handle, room, days)
        shown = "the server's retention" if days is None else f"{days:g} days"
        return await page(request, notice=f"#{room} keeps {shown}")

    app.router.add_get("/admin", show)
    app.router.add_post("/admin/bots", add_bot)
    app.router.add_post("/admin/bots/{handle}/revoke", revoke_bot)
    app.router.add_post("/admin/bans", ban)
    app.router.add_post("/admin/bans/{id}/lift", lift)
    app.router.add_post("/admin/private", make_private)
    app.router.add_post("/admin/private/{room}/public", make_public)
    app.router.add_post("/admin/members", member)
    app.router.add_post("/admin/retention", set_retention)
