"""An account's rooms and how far it has read each: ``GET /api/me/rooms`` (with unread
and mention counts, and the people of a direct conversation) and ``DELETE
/api/me/rooms/{room}``. The ``read`` event
(``handlers.ChatHandlers.on_read``) adds a room and moves its read mark."""

from __future__ import annotations

from aiohttp import web

from . import protocol
from .private_rooms import DM_PREFIX, PrivateRooms
from .protocol import ProtocolError
from .signin import COOKIE_NAME, SignIns
from .store import AccountStore


def setup_my_rooms(
    app: web.Application, store: AccountStore, sign_ins: SignIns, private_rooms: PrivateRooms
) -> None:
    async def rooms(request: web.Request) -> web.Response:
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        if found is None:
            return web.json_response({"error": "not signed in"}, status=401)
        account = found[1]
        states = await store.room_states(account.id)
        # A private room the account was taken out of is no longer one of its rooms to see.
        listed = []
        for state in states:
            if private_rooms.allows(state.room, account.id):
                listed.append(state.to_dict())
                if state.room.startswith(DM_PREFIX):
                    listed[-1]["dm"] = await private_rooms.member_handles(state.room)
        return web.json_response({"rooms": listed})

    async def leave(request: web.Request) -> web.Response:
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        if found is None:
            return web.json_response({"error": "not signed in"}, status=401)
        try:
            room = protocol.parse_room(request.match_info["room"])
        except ProtocolError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        if not await store.remove_room_state(found[1].id, room):
            return web.json_response({"error": "not one of your rooms"}, status=404)
        return web.json_response({"ok": True})

    app.router.add_get("/api/me/rooms", rooms)
    app.router.add_delete("/api/me/rooms/{room}", leave)
