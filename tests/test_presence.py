"""Presence: who is online per room, one person's tabs merged, joins, leaves and renames."""

from __future__ import annotations

import hashlib
import itertools

from .conftest import NO_RATE_LIMITS
from .support import Server

#: A browser's secret key, and the public id docs/protocol.md says it gives.
ANN_KEY = "ann-browser-key-0001"
ANN_ID = "g:" + hashlib.sha256(b"chatapp guest id\0" + ANN_KEY.encode()).hexdigest()[:24]


def person(user_id: str, name: str) -> dict[str, object]:
    """A guest, as presence shows one."""
    return {"user_id": user_id, "name": name}


async def test_join_and_leave_are_announced(server: Server, make_client) -> None:
    ann, bo = make_client(), make_client()
    ann_id = (await ann.connect(server.url, room="p", name="ann", key=ANN_KEY))["user_id"]
    welcome = await bo.connect(server.url, room="p", name="bo")
    bo_id = welcome["user_id"]
    assert ann_id == ANN_ID and bo_id == name_id("bo")
    assert welcome["users"] == ["ann", "bo"]
    assert welcome["people"] == [person(ann_id, "ann"), person(bo_id, "bo")]
    assert await ann.wait_for("presence") == {
        "room": "p",
        "users": ["ann", "bo"],
        "people": [person(ann_id, "ann"), person(bo_id, "bo")],
        "joined": "bo",
    }
    await bo.close()
    assert await ann.wait_for("presence", lambda p: "left" in p) == {
        "room": "p",
        "users": ["ann"],
        "people": [person(ann_id, "ann")],
        "left": "bo",
    }


async def test_two_tabs_of_one_person_count_once(server: Server, make_client) -> None:
    watcher, tab1, tab2 = make_client(), make_client(), make_client()
    await watcher.connect(server.url, room="tabs", name="watcher")
    await tab1.connect(server.url, room="tabs", name="ann", key=ANN_KEY)
    welcome = await tab2.connect(server.url, room="tabs", name="ann", key=ANN_KEY)
    assert welcome["users"] == ["ann", "watcher"]
    await tab1.close()
    # Closing one tab announces nothing; a later message proves no presence came first.
    await tab2.send("still here")
    await watcher.wait_for("message")
    assert [p.get("joined") for p in watcher.of("presence")] == ["ann"]
    await tab2.close()
    left = await watcher.wait_for("presence", lambda p: "left" in p)
    assert left["users"] == ["watcher"] and left["left"] == "ann"


async def test_two_people_with_one_name_are_two(server: Server, make_client) -> None:
    """A name is a label: someone else calling themselves "ann" is another person, shown
    apart, and cannot take on Ann's id (it comes from her browser's secret key)."""
    watcher, ann, impostor = make_client(), make_client(), make_client()
    await watcher.connect(server.url, room="two", name="watcher")
    await ann.connect(server.url, room="two", name="ann", key=ANN_KEY)
    welcome = await impostor.connect(server.url, room="two", name="ann", key="x" * 20)
    assert welcome["user_id"] not in ("", ANN_ID)
    assert welcome["users"] == ["ann", "ann", "watcher"]
    assert {p["user_id"] for p in welcome["people"] if p["name"] == "ann"} == {
        ANN_ID,
        welcome["user_id"],
    }
    joined = await watcher.wait_for("presence", lambda p: p.get("joined") == "ann", count=2)
    assert joined["users"] == ["ann", "ann", "watcher"]
    # Each message says whose it is.
    real = (await ann.send("from the real ann"))["message"]
    fake = (await impostor.send("from someone else"))["message"]
    assert (real["name"], real["user_id"]) == ("ann", ANN_ID)
    assert (fake["name"], fake["user_id"]) == ("ann", welcome["user_id"])
    delivered = await watcher.wait_for("message", count=2)
    assert delivered["user_id"] == welcome["user_id"]
    # Typing says who too.
    await impostor.call("typing", {"typing": True})
    typing = await watcher.wait_for("typing")
    assert typing == {**person(welcome["user_id"], "ann"), "typing": True}
    await impostor.close()
    left = await watcher.wait_for("presence", lambda p: p.get("left") == "ann")
    assert left["people"] == [person(ANN_ID, "ann"), person(watcher_id(watcher), "watcher")]


def watcher_id(client) -> str:
    return client.of("welcome")[0]["user_id"]


def name_id(name: str) -> str:
    return "n:" + hashlib.sha256(b"chatapp name id\0" + name.encode()).hexdigest()[:24]


async def test_without_a_key_a_client_is_known_by_its_name(server: Server, make_client) -> None:
    """As before ids existed: keyless connections with one name are one person, and their
    id follows the name (a digest of it, so it can never be a keyed client's id)."""
    a, b, keyed = make_client(), make_client(), make_client()
    first = await a.connect(server.url, room="nokey", name="bot")
    second = await b.connect(server.url, room="nokey", name="bot")
    assert first["user_id"] == second["user_id"] == name_id("bot")
    assert second["users"] == ["bot"]
    third = await keyed.connect(server.url, room="nokey", name="bot", key="k" * 20)
    assert third["user_id"].startswith("g:") and third["users"] == ["bot", "bot"]
    assert await b.call("rename", {"name": "robot"}) == {
        "ok": True,
        "name": "robot",
        "user_id": name_id("robot"),
    }
    assert (await b.send("renamed"))["message"]["user_id"] == name_id("robot")


async def test_a_bad_key_is_refused(server: Server, make_client) -> None:
    for bad in ("short", "x" * 129, "has space in it ok", 12345678901234567890, ["k" * 20]):
        reason = await make_client().connect_refused(server.url, key=bad)
        assert reason == "invalid key: must be 16-128 characters of A-Z a-z 0-9 _ -"


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
    await ann.connect(server.url, room="rn", name="ann", key=ANN_KEY)
    bo_id = (await bo.connect(server.url, room="rn", name="bo"))["user_id"]
    assert await ann.call("rename", {"name": "  Annie "}) == {
        "ok": True,
        "name": "Annie",
        "user_id": ANN_ID,  # a key's id stays through renames
    }
    event = await bo.wait_for("presence", lambda p: p.get("joined") == "Annie")
    assert event == {
        "room": "rn",
        "users": ["Annie", "bo"],
        "people": [person(ANN_ID, "Annie"), person(bo_id, "bo")],
        "joined": "Annie",
        "left": "ann",
    }
    # The rename event goes to the renamer too, and later messages carry the new name.
    await ann.wait_for("presence", lambda p: p.get("joined") == "Annie")
    assert (await ann.send("hi"))["message"]["name"] == "Annie"


async def test_rename_into_a_name_already_online_merges_tabs(server: Server, make_client) -> None:
    ann, other_tab = make_client(), make_client()
    await ann.connect(server.url, room="m", name="ann", key=ANN_KEY)
    await other_tab.connect(server.url, room="m", name="temp", key=ANN_KEY)
    await other_tab.call("rename", {"name": "ann"})
    event = await ann.wait_for("presence", lambda p: p.get("left") == "temp")
    assert event == {
        "room": "m",
        "users": ["ann"],
        "people": [person(ANN_ID, "ann")],
        "left": "temp",
    }


async def test_bad_rename_is_refused(server: Server, make_client) -> None:
    ann = make_client()
    await ann.connect(server.url, name="ann")
    for bad in ("", "x" * 33, "tab\there", 7):
        ack = await ann.call("rename", {"name": bad})
        assert ack["ok"] is False and ack["error"].startswith("invalid name")
    assert (await ann.send("same name"))["message"]["name"] == "ann"


async def test_connections_closed_while_joining_leave_no_ghosts(start_server, make_client) -> None:
    """An Engine.IO close that arrives while the server is still admitting the connection."""
    # No limit of connections per address: ghosts still being admitted when the watcher
    # comes (admission awaits the store) must not take its place under the limit.
    server: Server = await start_server(*NO_RATE_LIMITS, "--max-connections-per-ip", "0")
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


async def test_stopping_the_server_announces_no_departures(start_server, make_client) -> None:
    """Everyone is disconnected at once and reconnects to the next server: telling the
    ones still connected that the others "left" would be news that is not true."""
    server = await start_server()
    clients = [make_client() for _ in range(4)]
    for n, client in enumerate(clients):
        await client.connect(server.url, room="stop", name=f"p{n}")
    await clients[-1].send("everyone is here")
    for client in clients:
        await client.wait_for("message")
    assert await server.stop() == 0
    for client in clients:
        await client.wait_for("disconnect")
        assert [p for p in client.of("presence") if "left" in p] == []


async def test_a_crowd_arriving_at_once_is_announced_in_a_few_events(
    start_server, make_client
) -> None:
    """When a whole office reconnects, a room hears of the first arrivals one by one and,
    once a second's events have cost enough (each lists everyone to everyone), of the rest
    together (``joins``: docs/protocol.md), each person named once; likewise when they
    leave."""
    import asyncio

    server: Server = await start_server(*NO_RATE_LIMITS, "--max-connections-per-ip", "0")
    watcher = make_client()
    await watcher.connect(server.url, room="office", name="watcher")
    crowd = [make_client() for _ in range(50)]
    names = [f"p{n:02}" for n in range(50)]
    await asyncio.gather(
        *(c.connect(server.url, room="office", name=n) for c, n in zip(crowd, names, strict=True))
    )
    everyone = sorted(["watcher", *names])
    last = await watcher.wait_for("presence", lambda p: p["users"] == everyone)
    events = watcher.of("presence")
    assert events[-1] == last
    came = [p["joined"] for p in events if "joined" in p]
    came += [name for p in events for name in p.get("joins", [])]
    assert sorted(came) == names
    assert len(events) < len(names)
    assert any(len(p.get("joins", [])) > 1 and "joined" not in p for p in events)
    assert all("left" not in p and not p.get("leaves") for p in events)

    del watcher.events[:]
    await asyncio.gather(*(c.close() for c in crowd))
    await watcher.wait_for("presence", lambda p: p["users"] == ["watcher"])
    events = watcher.of("presence")
    went = [p["left"] for p in events if "left" in p]
    went += [name for p in events for name in p.get("leaves", [])]
    assert sorted(went) == names and len(events) < len(names)


async def test_a_big_rooms_changes_wait_longer_while_they_keep_coming() -> None:
    """docs/protocol.md: once changes wait, a room of 100 or more hears of them every 5
    windows (5 s), so that its events, each listing everyone to everyone, cost no more a
    second than a small room's."""
    import asyncio

    from chatapp.announcer import Announcer
    from chatapp.presence import MemoryPresence, member

    loop = asyncio.get_running_loop()
    told: list[tuple[float, dict[str, object]]] = []

    async def emit(room: str, event: dict[str, object]) -> None:
        told.append((loop.time(), event))

    window = 0.05
    presence = MemoryPresence()
    announcer = Announcer(presence, emit, window=window)
    for n in range(100):
        await presence.join("big", f"c{n}", member(f"u{n}", f"p{n}"))
    n = 100
    # Arrivals keep coming, five a window, until four coalesced events went out.
    while sum("joins" in e for _, e in told) < 4:
        key = member(f"u{n}", f"p{n}")
        await presence.join("big", f"c{n}", key)
        await announcer.changed("big", joined=key)
        n += 1
        await asyncio.sleep(window / 5)
    await announcer.close()
    times = [t for t, e in told if "joins" in e]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.9 * 5 * window, gaps
    arrived = [name for _, e in told for name in [e.get("joined"), *e.get("joins", [])]]
    assert sorted(filter(None, arrived)) == sorted(f"p{i}" for i in range(100, n))
