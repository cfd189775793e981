"""Presence: who is online per room, tabs of one name merged, joins, leaves and renames."""

from __future__ import annotations

from .support import Server


async def test_join_and_leave_are_announced(server: Server, make_client) -> None:
    ann, bo = make_client(), make_client()
    await ann.connect(server.url, room="p", name="ann")
    welcome = await bo.connect(server.url, room="p", name="bo")
    assert welcome["users"] == ["ann", "bo"]
    assert await ann.wait_for("presence") == {"room": "p", "users": ["ann", "bo"], "joined": "bo"}
    await bo.close()
    assert await ann.wait_for("presence", lambda p: "left" in p) == {
        "room": "p",
        "users": ["ann"],
        "left": "bo",
    }


async def test_two_tabs_of_one_name_count_once(server: Server, make_client) -> None:
    watcher, tab1, tab2 = make_client(), make_client(), make_client()
    await watcher.connect(server.url, room="tabs", name="watcher")
    await tab1.connect(server.url, room="tabs", name="ann")
    welcome = await tab2.connect(server.url, room="tabs", name="ann")
    assert welcome["users"] == ["ann", "watcher"]
    await tab1.close()
    # Closing one tab announces nothing; a later message proves no presence came first.
    await tab2.send("still here")
    await watcher.wait_for("message")
    assert [p.get("joined") for p in watcher.of("presence")] == ["ann"]
    await tab2.close()
    left = await watcher.wait_for("presence", lambda p: "left" in p)
    assert left == {"room": "tabs", "users": ["watcher"], "left": "ann"}


async def test_presence_is_per_room(server: Server, make_client) -> None:
    a, b = make_client(), make_client()
    await a.connect(server.url, room="one", name="ann")
    welcome = await b.connect(server.url, room="two", name="bo")
    assert welcome["users"] == ["bo"]
    await a.send("marker")
    await a.wait_for("message")
    assert a.of("presence") == []


async def test_rename(server: Server, make_client) -> None:
    ann, bo = make_client(), make_client()
    await ann.connect(server.url, room="rn", name="ann")
    await bo.connect(server.url, room="rn", name="bo")
    assert await ann.call("rename", {"name": "  Annie "}) == {"ok": True, "name": "Annie"}
    event = await bo.wait_for("presence", lambda p: p.get("joined") == "Annie")
    assert event == {"room": "rn", "users": ["Annie", "bo"], "joined": "Annie", "left": "ann"}
    # The rename event goes to the renamer too, and later messages carry the new name.
    await ann.wait_for("presence", lambda p: p.get("joined") == "Annie")
    assert (await ann.send("hi"))["message"]["name"] == "Annie"


async def test_rename_into_a_name_already_online_merges_tabs(server: Server, make_client) -> None:
    ann, other = make_client(), make_client()
    await ann.connect(server.url, room="m", name="ann")
    await other.connect(server.url, room="m", name="temp")
    await other.call("rename", {"name": "ann"})
    event = await ann.wait_for("presence", lambda p: p.get("left") == "temp")
    assert event == {"room": "m", "users": ["ann"], "left": "temp"}


async def test_bad_rename_is_refused(server: Server, make_client) -> None:
    ann = make_client()
    await ann.connect(server.url, name="ann")
    for bad in ("", "x" * 33, "tab\there", 7):
        ack = await ann.call("rename", {"name": bad})
        assert ack["ok"] is False and ack["error"].startswith("invalid name")
    assert (await ann.send("same name"))["message"]["name"] == "ann"


async def test_connections_closed_while_joining_leave_no_ghosts(
    server: Server, make_client
) -> None:
    """An Engine.IO close that arrives while the server is still admitting the connection."""
    import asyncio
    import json

    import aiohttp

    base = server.url + "/socket.io/?EIO=4&transport=polling"

    async def connect_and_vanish(session: aiohttp.ClientSession, n: int) -> None:
        async with session.get(base) as r:
            opening = await r.text()
        sid = json.loads(opening[1:])["sid"]
        url = f"{base}&sid={sid}"
        auth = "40" + json.dumps({"room": "ghosts", "name": f"ghost{n}"})

        async def post(body: str) -> None:
            async with session.post(url, data=body) as r:
                await r.read()

        # The Socket.IO CONNECT and the Engine.IO CLOSE ("1") race each other.
        await asyncio.gather(post(auth), post("1"), return_exceptions=True)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(connect_and_vanish(session, n) for n in range(30)))
    watcher = make_client()
    welcome = await watcher.connect(server.url, room="ghosts", name="watcher")
    if welcome["users"] != ["watcher"]:
        await watcher.wait_for("presence", lambda p: p["users"] == ["watcher"])
    async with aiohttp.ClientSession() as session, session.get(server.url + "/api/rooms") as r:
        rooms = {room["room"]: room["users"] for room in await r.json()}
    assert rooms["ghosts"] == 1
