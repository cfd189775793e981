"""Test double for chatapp, used only to exercise run.py before chatapp exists.

It accepts chatapp's command-line flags and speaks the benchmark's protocol
subset with python-socketio + aiohttp, but it is NOT chatapp: no persistence
(--db is ignored), no history, no rate limit (the rate flags are ignored).
With --redis-url it uses python-socketio's Redis manager for cross-process
broadcasts and Redis INCR for per-room ids, so the cluster scenario can be
dry-run too.

    python3 benchmarks/run.py --scenario smoke \
        --chatapp-root benchmarks --chatapp-module standin_chatapp
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from typing import Any

import socketio
from aiohttp import web

ROOM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def build(redis_url: str | None) -> tuple[web.Application, socketio.AsyncServer]:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    app = web.Application()
    sio.attach(app)
    members: dict[str, dict[str, str]] = {}  # room -> sid -> name (this process only)
    next_id: dict[str, int] = {}
    redis: Any = None
    if redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(redis_url)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        room = auth.get("room", "lobby")
        name = auth.get("name", "guest-" + sid[:6])
        if not isinstance(room, str) or not ROOM_RE.match(room):
            raise socketio.exceptions.ConnectionRefusedError("invalid room")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 32:
            raise socketio.exceptions.ConnectionRefusedError("invalid name")
        name = name.strip()
        await sio.save_session(sid, {"room": room, "name": name})
        await sio.enter_room(sid, room)
        users = members.setdefault(room, {})
        users[sid] = name
        welcome = {"room": room, "name": name, "users": sorted(set(users.values())), "history": [], "has_more": False}
        await sio.emit("welcome", welcome, to=sid)

    async def message(sid: str, data: Any) -> dict[str, Any]:
        session = await sio.get_session(sid)
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text.strip():
            return {"ok": False, "error": "empty message"}
        room = session["room"]
        if redis is not None:
            msg_id = int(await redis.incr(f"standin:{room}:id"))
        else:
            msg_id = next_id.get(room, 0) + 1
            next_id[room] = msg_id
        msg = {
            "id": msg_id,
            "room": room,
            "name": session["name"],
            "text": text.strip(),
            "ts": int(asyncio.get_running_loop().time() * 1000),
        }
        await sio.emit("message", msg, room=room)
        return {"ok": True, "message": msg}

    async def disconnect(sid: str, *args: Any) -> None:
        for users in members.values():
            users.pop(sid, None)

    # Registered with sio.on() rather than @sio.event to keep the handlers typed.
    for handler in (connect, message, disconnect):
        sio.on(handler.__name__, handler)
    return app, sio


async def serve(args: argparse.Namespace) -> None:
    app, _ = build(args.redis_url)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"standin listening on http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", help="ignored")
    parser.add_argument("--message-burst", type=float, help="ignored")
    parser.add_argument("--message-rate", type=float, help="ignored")
    parser.add_argument("--redis-url")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
