"""HTTP views: the chat pages, the JSON API and the health check."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import orjson
from aiohttp import web

from . import protocol, search
from .budget import EVENT_COST, MAX_COST, SEARCH_COST, page_cost_of
from .jsoncodec import dumps_text
from .keys import (
    budget_key,
    fanout_key,
    handlers_key,
    presence_key,
    resources_key,
    settings_key,
    sign_ins_key,
    store_key,
)
from .origins import client_ip, responded
from .paging import newest_within
from .private_rooms import NOT_A_MEMBER
from .protocol import ProtocolError
from .signin import COOKIE_NAME

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

#: Seconds the readiness check waits for storage.
READY_TIMEOUT = 3.0


#: Rooms per ``/api/rooms`` page: default and most.
ROOMS_DEFAULT = 50
ROOMS_MAX = 100
#: An integer in a query string: ASCII digits only (``int()`` would also take "١٢").
_INT_RE = re.compile(r"-?[0-9]{1,30}")
#: ``/api/rooms?after=``: ``<users>.<last_message_at or 0>.<room>`` of a page's last room.
_ROOMS_CURSOR_RE = re.compile(r"([0-9]{1,9})\.([0-9]{1,16})\.([a-z0-9][a-z0-9_-]{0,63})")


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    """JSON with non-ASCII text as UTF-8, not as escapes (an emoji would take 12 bytes)."""
    return web.json_response(data, status=status, dumps=dumps_text, **kwargs)


def json_error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


def over_budget(request: web.Request, cost: int) -> web.Response | None:
    """Charge an API request to its client address's budget (``chatapp.budget``, shared
    with its Socket.IO events); a 429 answer if it cannot pay."""
    ip = client_ip(request, request.app[settings_key].trust_proxy)
    wait = request.app[budget_key].spend(ip, cost, request.path)
    if not wait:
        return None
    return json_response(
        {"error": "rate limited", "retry_after": round(wait, 3)},
        status=429,
        headers={"Retry-After": str(math.ceil(wait))},
    )


async def _page(request: web.Request, room: str) -> web.Response:
    # The page's client must use the transports the server accepts (see docs/deploy.md),
    # and takes the limits it shows from here rather than keeping copies of its own.
    cookie = request.cookies.get(COOKIE_NAME)
    found = await request.app[sign_ins_key].find(cookie) if cookie else None
    account = found[1] if found is not None else None
    if account is None and not request.app[settings_key].guests:
        raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path}))
    context = {
        "room": room,
        "transports": ",".join(request.app[settings_key].transports),
        "max_text": protocol.MAX_TEXT,
        "max_name": protocol.MAX_NAME,
        "max_history": protocol.HISTORY_MAX,
        "account": account,
        "path": request.path,
    }
    response = aiohttp_jinja2.render_template("chat.html", request, context)
    if cookie and account is None:
        # The sign-in ended (signed out elsewhere, revoked, expired): a guest from now on.
        response.del_cookie(COOKIE_NAME, path="/")
    return response


async def lobby_page(request: web.Request) -> web.Response:
    return await _page(request, protocol.DEFAULT_ROOM)


async def room_page(request: web.Request) -> web.Response:
    raw = request.match_info["room"]
    try:
        room = protocol.parse_room(raw)
    except ProtocolError as exc:
        return aiohttp_jinja2.render_template("404.html", request, {"reason": str(exc)}, status=404)
    if room != raw:
        raise web.HTTPFound(f"/r/{room}")  # one URL per room: /r/Team -> /r/team
    return await _page(request, room)


async def client_library(request: web.Request) -> web.StreamResponse:
    """The npm-installed Socket.IO client, served from our own origin."""
    filename = request.match_info["filename"]
    resources = request.app[resources_key]
    path = resources.vendor / filename
    if filename not in ("socket.io.esm.min.js", "socket.io.min.js") or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


RoomKey = tuple[int, int, str]  # (-users, -last_message_at, room): the list's order


async def api_rooms(request: web.Request) -> web.Response:
    """``GET /api/rooms?limit=&after=`` -> ``[{room, users, last_message_at}]``.

    Rooms with people online first (most people first), then by their newest message. A
    full page links to the next one (``Link: <...>; rel="next"``). The cost is bounded by
    the rooms with people online and the page size, not by how many rooms ever existed.
    """
    if (limited := over_budget(request, MAX_COST)) is not None:
        return limited
    try:
        limit = _limit_query(request, ROOMS_DEFAULT, ROOMS_MAX)
        after = _rooms_cursor(request.query.get("after"))
    except ProtocolError as exc:
        return json_error(400, str(exc))
    store = request.app[store_key]
    reader = await reader_of(request)
    private = request.app[handlers_key].private_rooms
    online = {
        room: n
        for room, n in (await request.app[presence_key].counts()).items()
        if private.allows(room, reader)
    }
    times = await store.last_message_times(online)
    found: dict[str, tuple[int, int | None]] = {
        room: (users, times.get(room)) for room, users in online.items()
    }
    # Rooms nobody is in rank below every room with someone in it, newest message first:
    # the store's index hands them over in that order, page by page.
    quiet_after = (after[1], after[2]) if after is not None and after[0] == 0 else None
    quiet = 0
    while quiet < limit:
        batch = await store.active_rooms(limit, quiet_after)
        for r in batch:
            if r.room not in found and private.allows(r.room, reader):
                found[r.room] = (0, r.last_ts)
                quiet += 1
        if len(batch) < limit:
            break
        quiet_after = (batch[-1].last_ts, batch[-1].room)

    def key(room: str) -> RoomKey:
        users, last = found[room]
        return (-users, -(last or 0), room)

    ranked = sorted(found, key=key)
    if after is not None:
        cursor: RoomKey = (-after[0], -after[1], after[2])
        ranked = [room for room in ranked if key(room) > cursor]
    page = ranked[:limit]
    rooms = [{"room": r, "users": found[r][0], "last_message_at": found[r][1]} for r in page]
    headers = {}
    if len(page) == limit:
        users, last = found[page[-1]]
        query = urlencode({"limit": limit, "after": f"{users}.{last or 0}.{page[-1]}"})
        headers["Link"] = f'</api/rooms?{query}>; rel="next"'
    return json_response(rooms, headers=headers)


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not _INT_RE.fullmatch(raw):
        raise ProtocolError(f"invalid {name}: must be an integer")
    return int(raw)


def _limit_query(request: web.Request, default: int, most: int) -> int:
    value = _int_query(request, "limit")
    if value is None:
        return default
    if not 1 <= value <= most:
        raise ProtocolError(f"invalid limit: must be an integer 1-{most}")
    return value


def _rooms_cursor(raw: str | None) -> tuple[int, int, str] | None:
    if raw is None or raw == "":
        return None
    match = _ROOMS_CURSOR_RE.fullmatch(raw)
    if match is None:
        raise ProtocolError("invalid after: use the link of the previous page")
    return int(match[1]), int(match[2]), match[3]


async def reader_of(request: web.Request) -> str | None:
    """The account reading (signed in, or a bot's token), None for a guest: what private
    rooms it may see."""
    cookie = request.cookies.get(COOKIE_NAME)
    sign_ins = request.app[sign_ins_key]
    found = await sign_ins.find(cookie) if cookie else None
    if found is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            found = await sign_ins.bot(token.strip())
    return found[1].id if found is not None else None


async def api_messages(request: web.Request) -> web.Response:
    """``GET /api/rooms/{room}/messages?before=&limit=`` -> ``{messages, has_more}``."""
    if (limited := over_budget(request, page_cost_of(request.query.get("limit")))) is not None:
        return limited
    try:
        room = protocol.parse_room(request.match_info["room"])
    except ProtocolError as exc:
        return json_error(404, str(exc))
    try:
        before = protocol.parse_before(_int_query(request, "before"))
        limit = protocol.parse_limit(_int_query(request, "limit"))
    except ProtocolError as exc:
        return json_error(400, str(exc))
    if not await request.app[handlers_key].private_rooms.admits(room, await reader_of(request)):
        return json_error(404, NOT_A_MEMBER)
    page = await request.app[store_key].before(room, before, limit)
    messages, cut = newest_within([m.to_dict() for m in page.messages])
    return json_response({"messages": messages, "has_more": page.has_more or cut})


async def api_search(request: web.Request) -> web.Response:
    """``GET /api/search?q=&room=&limit=&offset=`` -> ``{results, has_more}``: what the
    reader (signed in, a bot, or a guest) may read that matches ``q``."""
    if (limited := over_budget(request, SEARCH_COST)) is not None:
        return limited
    try:
        answer = await search.search(
            request.app[store_key],
            await reader_of(request),
            request.query.get("q"),
            request.query.get("room"),
            _int_query(request, "limit"),
            _int_query(request, "offset"),
        )
    except ProtocolError as exc:
        return json_error(400, str(exc))
    return json_response(answer)


async def api_post_message(request: web.Request) -> web.Response:
    """``POST /api/rooms/{room}/messages`` with ``Authorization: Bearer <bot token>`` and
    ``{text, client_id?}``: the bot posts to the room, as over Socket.IO (an incoming
    webhook). 201 and ``{ok, message}``; 200 for a retry of a ``client_id`` already used."""
    if (limited := over_budget(request, EVENT_COST)) is not None:
        return limited
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    found = (
        await request.app[sign_ins_key].bot(token.strip()) if scheme.lower() == "bearer" else None
    )
    if found is None:
        return json_response(
            {"error": "bot token required"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="chatapp"'},
        )
    bot = found[1]
    handlers = request.app[handlers_key]
    banned = handlers.moderation.refusal(bot.id, None)
    if banned is not None:
        return json_error(403, banned)
    try:
        room = protocol.parse_room(request.match_info["room"])
    except ProtocolError as exc:
        return json_error(404, str(exc))
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return json_error(400, "invalid JSON: send {text, client_id?}")
    try:
        req = protocol.parse_message(data)
    except ProtocolError as exc:
        return json_error(400, str(exc))
    if not await handlers.private_rooms.admits(room, bot.id):
        return json_error(404, NOT_A_MEMBER)
    wait = handlers.bot_wait(bot.id)
    if wait:
        return json_response(
            {"error": "rate limited", "retry_after": round(wait, 3)},
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )
    try:
        msg, created = await handlers.post(room, bot.display_name, bot.id, req, bot.handle, True)
    except ProtocolError as exc:
        return json_error(400, str(exc))
    return json_response({"ok": True, "message": msg.to_dict()}, status=201 if created else 200)


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[store_key].ping()
    except Exception as exc:
        log.warning("health check: storage does not answer: %s", exc)
        return json_response({"status": "unavailable", "error": "storage unavailable"}, status=503)
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: storage answers and, with Redis, fan-out both publishes and receives.

    503 with ``{"status": "not ready", "problems": {component: reason}}`` otherwise, so a
    load balancer sends new clients elsewhere while this process keeps its own.
    """
    problems = dict(request.app[fanout_key].readiness())
    try:
        await asyncio.wait_for(request.app[store_key].ping(), READY_TIMEOUT)
    except Exception as exc:
        log.warning("readiness: storage does not answer: %s", exc or type(exc).__name__)
        problems["database"] = "unreachable"
    if problems:
        return json_response({"status": "not ready", "problems": problems}, status=503)
    return json_response({"status": "ready"})


# The middlewares are not coroutines: where they have nothing to do after the handler they
# return its awaitable (aiohttp awaits it), so that no frame of theirs stays suspended for
# as long as a websocket lives.


@web.middleware
def api_errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """JSON errors for the API: ``{"error": ...}`` with the right status code."""
    if not request.path.startswith("/api/"):
        return handler(request)
    return _api_errors(request, handler)


async def _api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason.lower())


@web.middleware
def engineio_errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """A clear 400 instead of a 500 and a traceback for Engine.IO requests it cannot handle.

    python-engineio raises KeyError for a POST to a session that has just closed, for one.
    A websocket handshake is left alone: its handler runs for the websocket's whole life,
    and engine.io answers what is wrong with one with a 400 of its own before that.
    """
    if not request.path.startswith("/socket.io/"):
        return handler(request)
    transport = request.query.get("transport")
    if transport == "polling" and transport not in request.app[settings_key].transports:
        # Said here because python-engineio would log each refusal as a server error.
        return responded(
            web.json_response(
                {"error": "long-polling is disabled on this server: use the websocket transport"},
                status=400,
            )
        )
    if transport == "websocket" and request.headers.get("Upgrade", "").lower() == "websocket":
        return handler(request)
    return _engineio_errors(request, handler)


async def _engineio_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (KeyError, ValueError) as exc:
        log.debug("bad Engine.IO request %s: %r", request.path_qs, exc)
        return web.json_response(
            {"error": "bad Engine.IO request: unknown or closed session"}, status=400
        )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", lobby_page, name="lobby")
    app.router.add_get("/r/{room}", room_page, name="room")
    app.router.add_get("/static/vendor/{filename}", client_library)
    app.router.add_get("/api/rooms", api_rooms)
    app.router.add_get("/api/rooms/{room}/messages", api_messages)
    app.router.add_get("/api/search", api_search)
    app.router.add_post("/api/rooms/{room}/messages", api_post_message)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_static("/static/", app[resources_key].static, name="static")
