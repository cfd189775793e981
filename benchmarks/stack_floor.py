"""The fixed stack alone: what ``reference_server.js`` does, on aiohttp, python-socketio,
uvloop and orjson, through the libraries' public API, and nothing of chatapp.

A diagnostic, not part of chatapp: it tells how fast the stack chatapp is built on serves
the load generator's traffic when it does no more than Node's reference does (no history,
no presence, no accounts, no limits, no log line a connection). Where this floor is below
Node's figure, trimming chatapp's own code cannot take chatapp above Node's: only doing
less of the libraries' work (as chatapp's fast paths do) can. run.py's ``floor`` target
starts it with chatapp's Python::

    .venv/bin/python benchmarks/run.py --scenario reconnect --runs 1 \\
        --targets floor,node --python .venv/bin/python

It takes ``--host`` and ``--port`` and prints the URL it listens on, as chatapp does.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import types
from typing import Any

import orjson
import socketio
import uvloop
from aiohttp import web

ROOM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_TEXT = 2000

#: python-socketio takes a module with ``dumps`` and ``loads``: orjson, as chatapp uses.
json = types.SimpleNamespace(
    dumps=lambda obj, **_: orjson.dumps(obj).decode(), loads=lambda s, **_: orjson.loads(s)
)


class Room:
    def __init__(self) -> None:
        self.next_id = 1
        #: sid -> name
        self.members: dict[str, str] = {}


def build(sio: socketio.AsyncServer) -> None:
    rooms: dict[str, Room] = {}
    #: sid -> (name, the room it connected to, every room it follows)
    clients: dict[str, tuple[str, str, set[str]]] = {}

    def room_state(name: str) -> Room:
        room = rooms.get(name)
        if room is None:
            room = rooms[name] = Room()
        return room

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        room = auth.get("room", "lobby")
        if not isinstance(room, str) or not ROOM_RE.match(room):
            raise socketio.exceptions.ConnectionRefusedError("invalid room")
        name = auth.get("name", f"guest-{sid[:6]}")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 32:
            raise socketio.exceptions.ConnectionRefusedError("invalid name")
        name = name.strip()
        state = room_state(room)
        state.members[sid] = name
        clients[sid] = (name, room, {room})
        await sio.enter_room(sid, room)
        welcome = {
            "room": room,
            "name": name,
            "users": list(dict.fromkeys(state.members.values())),
            "history": [],
            "has_more": False,
        }
        await sio.emit("welcome", welcome, to=sid)

    @sio.event
    async def message(sid: str, payload: Any) -> dict[str, Any]:
        name, room, _ = clients[sid]
        text = payload.get("text") if isinstance(payload, dict) else None
        text = text.strip() if isinstance(text, str) else ""
        if not text:
            return {"ok": False, "error": "empty message"}
        if len(text) > MAX_TEXT:
            return {"ok": False, "error": "message too long"}
        state = room_state(room)
        msg = {"id": state.next_id, "room": room, "name": name, "text": text}
        msg["ts"] = int(time.time() * 1000)
        state.next_id += 1
        await sio.emit("message", msg, room=room)
        return {"ok": True, "message": msg}

    @sio.event
    async def subscribe(sid: str, payload: Any) -> dict[str, Any]:
        name, _, followed = clients[sid]
        other = payload.get("room") if isinstance(payload, dict) else None
        if not isinstance(other, str) or not ROOM_RE.match(other):
            return {"ok": False, "error": "invalid room"}
        if other in followed:
            return {"ok": False, "error": f"already in #{other}"}
        followed.add(other)
        state = room_state(other)
        state.members[sid] = name
        await sio.enter_room(sid, other)
        users = list(dict.fromkeys(state.members.values()))
        return {"ok": True, "room": other, "users": users, "history": [], "has_more": False}

    @sio.event
    async def history(sid: str, payload: Any) -> dict[str, Any]:
        return {"ok": True, "messages": [], "has_more": False}

    @sio.event
    async def disconnect(sid: str, *_: Any) -> None:
        _, _, followed = clients.pop(sid, ("", "", set()))
        for room in followed:
            room_state(room).members.pop(sid, None)


async def serve(host: str, port: int) -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", json=json)
    app = web.Application()
    sio.attach(app)
    build(sio)
    runner = web.AppRunner(app, handle_signals=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    print(f"stack floor listening on http://{host}:{runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
