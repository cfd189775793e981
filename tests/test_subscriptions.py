"""One connection in many rooms: ``subscribe {room, since?, rev?}`` answers with what a
welcome carries for that room, then every later message of the room exactly once;
``unsubscribe {room}`` leaves it; every event names its room; connections made the old
way see no difference."""

from __future__ import annotations

import asyncio
from typing import Any

from chatapp.private_rooms import NOT_A_MEMBER

from .support import Client, Server
from .test_moderation import admin_and_ann, api
from .test_sign_in import cookie

KEY = "subscriber-key-0123456789"


def ids_in(client: Client, room: str) -> list[int]:
    return [m["id"] for m in client.of("message") if m["room"] == room]


async def subscribe(client: Client, room: str, **extra: Any) -> dict[str, Any]:
    ack = await client.call("subscribe", {"room": room, **extra})
    assert ack["ok"] is True, ack
    return dict(ack)


async def test_a_subscription_answers_like_a_welcome_then_delivers_the_room(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    bo, cy, me = make_client(), make_client(), make_client()
    await bo.connect(server.url, room="design", name="bo")
    await cy.connect(server.url, room="ops", name="cy")
    earlier = (await bo.send("before you came"))["message"]
    await me.connect(server.url, room="lobby", name="me", key=KEY)

    ack = await subscribe(me, "Design")
    assert ack["room"] == "design" and ack["history"] == [earlier]
    assert ack["has_more"] is False and ack["rev"] == 0
    assert ack["users"] == ["bo", "me"] and [p["name"] for p in ack["people"]] == ["bo", "me"]
    # Bo hears that I came, as for a connection.
    joined = await bo.wait_for("presence", lambda p: p.get("joined") == "me")
    assert joined["room"] == "design"

    # Messages of every room I am in, each naming its room; an event names the room it is
    # for, or is for the room the connection connected to.
    later = (await bo.send("welcome"))["message"]
    await me.wait_for("message", lambda m: m["id"] == later["id"] and m["room"] == "design")
    mine = await me.call("message", {"text": "thanks", "room": "design"})
    assert mine["message"]["room"] == "design"
    await bo.wait_for("message", lambda m: m["text"] == "thanks")
    home = await me.call("message", {"text": "in the lobby"})
    assert home["message"]["room"] == "lobby"
    assert (await me.call("history", {"room": "design"}))["messages"][-1]["text"] == "thanks"
    assert ids_in(me, "design") == [later["id"], mine["message"]["id"]]
    # Not a room I am in: refused, and nothing of it reaches me.
    assert await me.call("message", {"text": "hi", "room": "ops"}) == {
        "ok": False,
        "error": "not in #ops: subscribe to it first",
    }
    await cy.send("ops only")
    await me.call("message", {"text": "sync"})
    await me.wait_for("message", lambda m: m["text"] == "sync")
    assert ids_in(me, "ops") == []


async def test_interleaved_traffic_in_many_rooms_reaches_each_message_once_in_order(
    start_server, make_client
) -> None:
    """Subscribing while every room is busy: per room, the answer's history and then each
    later message, none missing, none twice."""
    server: Server = await start_server("--message-burst", "100000", "--message-rate", "100000")
    rooms = [f"busy-{i}" for i in range(4)]
    senders = [make_client() for _ in rooms]
    for sender, room in zip(senders, rooms, strict=True):
        await sender.connect(server.url, room=room, name=f"s-{room}")
    stop = asyncio.Event()

    async def chatter(sender: Client) -> int:
        sent = 0
        while not stop.is_set():
            await sender.send(f"n{sent}")
            sent += 1
        return sent

    tasks = [asyncio.create_task(chatter(s)) for s in senders]
    me = make_client()
    await me.connect(server.url, room=rooms[0], name="me", key=KEY)
    first = {rooms[0]: me.of("welcome")[0]["history"]}
    for room in rooms[1:]:
        first[room] = (await subscribe(me, room))["history"]
    await asyncio.sleep(0)  # let the senders go on a little past the last subscription
    for sender in senders:
        await sender.wait_for("message", count=5)
    stop.set()
    totals = await asyncio.gather(*tasks)
    for room, total in zip(rooms, totals, strict=True):
        await me.wait_for("message", lambda m, r=room, t=total: m["room"] == r and m["id"] == t)
        got = [m["id"] for m in first[room]] + ids_in(me, room)
        assert got == list(range(got[0], total + 1)), room


async def test_each_room_catches_up_exactly_after_a_reconnect_to_another_process(
    cluster, make_client
) -> None:
    one, two = await cluster(2)
    poster = make_client()
    await poster.connect(one.url, room="a", name="poster")
    me = make_client()
    await me.connect(one.url, room="a", name="me", key=KEY)
    for room in ("b", "c"):
        await subscribe(me, room)
    posters: dict[str, Client] = {}
    for room in ("b", "c"):
        posters[room] = make_client()
        await posters[room].connect(two.url, room=room, name=f"p-{room}")
    seen = {"a": (await poster.send("seen in a"))["message"]["id"]}
    for room in ("b", "c"):
        seen[room] = (await posters[room].send(f"seen in {room}"))["message"]["id"]
    for room in ("a", "b", "c"):
        await me.wait_for("message", lambda m, r=room: m["room"] == r and m["id"] == seen[r])
    await me.close()

    missed: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for i in range(3):
        missed["a"].append((await poster.send(f"missed a {i}"))["message"]["id"])
        for room in ("b", "c"):
            missed[room].append((await posters[room].send(f"missed {i}"))["message"]["id"])

    back = make_client()
    welcome = await back.connect(two.url, room="a", name="me", key=KEY, since=seen["a"])
    assert [m["id"] for m in welcome["history"]] == missed["a"]
    for room in ("b", "c"):
        ack = await subscribe(back, room, since=seen[room])
        assert [m["id"] for m in ack["history"]] == missed[room], room
    after = (await posters["c"].send("live again"))["message"]["id"]
    await back.wait_for("message", lambda m: m["room"] == "c" and m["id"] == after)
    assert ids_in(back, "c") == [after] and ids_in(back, "b") == []


async def test_unsubscribing_leaves_the_room(start_server, make_client) -> None:
    server: Server = await start_server()
    bo, me = make_client(), make_client()
    await bo.connect(server.url, room="side", name="bo")
    await me.connect(server.url, room="lobby", name="me", key=KEY)
    await subscribe(me, "side")
    assert await me.call("unsubscribe", {"room": "side"}) == {"ok": True, "room": "side"}
    left = await bo.wait_for("presence", lambda p: p.get("left") == "me")
    assert left["users"] == ["bo"]
    await bo.send("after you left")
    assert await me.call("history", {"room": "side"}) == {
        "ok": False,
        "error": "not in #side: subscribe to it first",
    }
    assert await me.call("unsubscribe", {"room": "side"}) == {
        "ok": False,
        "error": "not in #side: subscribe to it first",
    }
    # Even the room it connected to; events that name no room then have none to go to.
    assert (await me.call("unsubscribe", {"room": "lobby"}))["ok"] is True
    assert (await me.call("message", {"text": "anyone?"}))["error"] == (
        "not in #lobby: subscribe to it first"
    )
    ack = await subscribe(me, "side", since=0)
    assert [m["text"] for m in ack["history"]] == ["after you left"]
    assert ids_in(me, "side") == []


async def test_typing_names_the_room_to_subscribers_only(start_server, make_client) -> None:
    """A connection that joined by connecting gets typing events as before (no room); one
    that subscribed gets the room named."""
    server: Server = await start_server()
    old, new, typist = make_client(), make_client(), make_client()
    await old.connect(server.url, room="t", name="old")
    await new.connect(server.url, room="lobby", name="new", key=KEY)
    await subscribe(new, "t")
    await typist.connect(server.url, room="lobby", name="ty")
    await subscribe(typist, "t")
    assert await typist.call("typing", {"typing": True, "room": "t"}) == {"ok": True}
    plain = await old.wait_for("typing")
    named = await new.wait_for("typing")
    assert "room" not in plain and plain["typing"] is True and plain["name"] == "ty"
    assert named == {**plain, "room": "t"}
    # Typing in another room ends it here.
    assert await typist.call("typing", {"typing": True}) == {"ok": True}
    stopped = await new.wait_for("typing", lambda t: t["typing"] is False and t["room"] == "t")
    assert stopped["name"] == "ty"
    assert (await old.wait_for("typing", lambda t: t["typing"] is False))["name"] == "ty"


async def test_subscriptions_have_limits_and_clear_errors(start_server, make_client) -> None:
    server: Server = await start_server("--max-rooms-per-connection", "3")
    me = make_client()
    await me.connect(server.url, room="lobby", name="me", key=KEY)
    await subscribe(me, "two")
    await subscribe(me, "three")
    assert await me.call("subscribe", {"room": "four"}) == {
        "ok": False,
        "error": "too many rooms: a connection may be in 3 (unsubscribe first)",
    }
    assert await me.call("subscribe", {"room": "two"}) == {"ok": False, "error": "already in #two"}
    bad = await me.call("subscribe", {"room": "No Room!"})
    assert bad["ok"] is False and bad["error"].startswith("invalid room name")
    bad = await me.call("subscribe", {"room": "four", "since": -1})
    assert bad["ok"] is False and bad["error"].startswith("invalid since")
    assert (await me.call("subscribe", "four"))["error"].startswith("invalid payload")
    # As many subscriptions at once as rooms allowed (2 used), then one a second.
    await me.call("unsubscribe", {"room": "two"})
    await subscribe(me, "four")
    await me.call("unsubscribe", {"room": "four"})
    limited = await me.call("subscribe", {"room": "five"})
    assert limited["ok"] is False and limited["error"] == "rate limited"
    assert 0 < limited["retry_after"] <= 1


async def test_a_private_room_is_subscribed_to_only_by_its_members(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    boss, ann = await admin_and_ann(server)
    members = {"members": ["ann"]}
    assert (await api(server, "PUT", "/api/rooms/secret/private", boss, members))[0] == 200
    guest = make_client()
    await guest.connect(server.url, room="lobby", name="guest")
    assert await guest.call("subscribe", {"room": "secret"}) == {
        "ok": False,
        "error": NOT_A_MEMBER,
    }
    assert await guest.call("history", {"room": "secret"}) == {
        "ok": False,
        "error": "not in #secret: subscribe to it first",
    }
    member = make_client(headers=cookie(ann))
    await member.connect(server.url, room="lobby")
    await subscribe(member, "secret")
    # No longer a member: dropped within a second, as a connection to the room would be.
    assert (await api(server, "DELETE", "/api/rooms/secret/members/ann", boss))[0] == 200
    await member.wait_for("disconnect")


async def test_a_rename_is_announced_in_every_room(start_server, make_client) -> None:
    server: Server = await start_server()
    here, there, me = make_client(), make_client(), make_client()
    await here.connect(server.url, room="here", name="hal")
    await there.connect(server.url, room="there", name="tess")
    await me.connect(server.url, room="here", name="me", key=KEY)
    await subscribe(me, "there")
    assert (await me.call("rename", {"name": "newme"}))["name"] == "newme"
    for client, room in ((here, "here"), (there, "there")):
        event = await client.wait_for("presence", lambda p: p.get("joined") == "newme")
        assert event["room"] == room and event["left"] == "me"
