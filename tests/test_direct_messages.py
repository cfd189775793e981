"""Direct messages: a private conversation of two or a few accounts, with a room's history,
catch-up and read state, that nobody else sees by any path (admins included)."""

from __future__ import annotations

import aiohttp

from chatapp.private_rooms import NOT_A_MEMBER

from .support import Client, Server
from .test_mentions import accounts
from .test_moderation import api
from .test_sign_in import add_account, cookie, sign_in


async def signed_in(make_client, server: Server, token: str, room: str = "lobby") -> Client:
    client: Client = make_client(headers=cookie(token))
    await client.connect(server.url, room=room)
    return client


async def test_two_people_talk_in_their_own_room(start_server, make_client, db: str) -> None:
    server: Server = await start_server("--db", db)
    tokens = await accounts(server, db)
    ann = await signed_in(make_client, server, tokens["ann"])
    bob = await signed_in(make_client, server, tokens["bob"])

    started = await ann.call("dm", {"with": ["@Bob"]})
    assert started["ok"] is True and started["room"].startswith("dm-")
    room = started["room"]
    assert [p["handle"] for p in started["people"]] == ["ann", "bob"]
    # Bob hears of it, and the same two always meet in the same room.
    told = await bob.wait_for("dm")
    assert told == {k: started[k] for k in ("room", "people")}
    assert (await bob.call("dm", {"with": ["ann"]}))["room"] == room
    for client in (ann, bob):
        assert (await client.call("subscribe", {"room": room}))["ok"] is True
    sent = await ann.call("message", {"room": room, "text": "just between us"})
    heard = await bob.wait_for("message", lambda m: m["room"] == room)
    assert heard == sent["message"]
    # It is one of both people's rooms, with who is in it.
    listed = (await api(server, "GET", "/api/me/rooms", tokens["bob"]))[1]["rooms"]
    assert listed == [
        {
            "room": room,
            "last_read": 0,
            "last_id": 1,
            "unread": 1,
            "mentions": 0,
            "dm": ["ann", "bob"],
        }
    ]


async def test_nobody_else_sees_a_direct_conversation(start_server, make_client) -> None:
    server: Server = await start_server()
    tokens = await accounts(server)  # ann, bob, and the admin boss
    await add_account(server.db, "carol", "carol's password")
    carol_token = await sign_in(server, "carol", "carol's password")
    ann = await signed_in(make_client, server, tokens["ann"])
    room = (await ann.call("dm", {"with": ["bob"]}))["room"]
    await ann.call("subscribe", {"room": room})
    await ann.call("message", {"room": room, "text": "secret plans"})

    for token in (carol_token, tokens["boss"]):
        other = await signed_in(make_client, server, token)
        assert await other.call("subscribe", {"room": room}) == {"ok": False, "error": NOT_A_MEMBER}
        assert await make_client(headers=cookie(token)).connect_refused(server.url, room=room) == (
            NOT_A_MEMBER
        )
        names = [r["room"] for r in (await api(server, "GET", "/api/rooms", token))[1]]
        assert room not in names
        assert (await api(server, "GET", f"/api/rooms/{room}/messages", token))[0] == 404
        assert (await api(server, "GET", f"/api/rooms/{room}/members", token))[0] == 404
        assert (await api(server, "GET", "/api/me/rooms", token))[1]["rooms"] == []
    assert await make_client().connect_refused(server.url, room=room, name="gus") == NOT_A_MEMBER
    # Not the admins' to see or manage: not on their page, not in the log, not theirs to open.
    boss = tokens["boss"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/admin", headers=cookie(boss)) as resp,
    ):
        assert room not in await resp.text()
    assert all(room not in str(e) for e in (await api(server, "GET", "/api/modlog", boss))[1])
    assert (await api(server, "DELETE", f"/api/rooms/{room}/private", boss))[0] == 404
    status, body = await api(server, "PUT", f"/api/rooms/{room}/members/carol", boss)
    assert status == 404 and body == {"error": f"#{room} is not a room an admin manages"}
    status, _ = await api(server, "PUT", f"/api/rooms/{room}/private", boss, {"members": []})
    assert status == 400
    # A room with the prefix that is no conversation is nobody's to enter.
    assert await make_client().connect_refused(server.url, room="dm-0", name="gus") == NOT_A_MEMBER


async def test_a_direct_message_needs_accounts(start_server, make_client) -> None:
    server: Server = await start_server()
    tokens = await accounts(server)
    guest = make_client()
    await guest.connect(server.url, room="lobby", name="gus")
    assert await guest.call("dm", {"with": ["ann"]}) == {
        "ok": False,
        "error": "sign in to send direct messages",
    }
    ann = await signed_in(make_client, server, tokens["ann"])
    assert (await ann.call("dm", {"with": ["nobody"]}))["error"] == (
        "no account with the handle 'nobody'"
    )
    assert await ann.call("dm", {"with": ["ann"]}) == {
        "ok": False,
        "error": "name someone else to talk to",
    }
    for bad in ({"with": []}, {"with": "bob"}, {"with": ["x"] * 8}, {}):
        answer = await ann.call("dm", bad)
        assert answer["ok"] is False and answer["error"].startswith("invalid with"), bad


async def test_a_direct_conversation_reaches_its_people_on_every_process(
    cluster, make_client, pg_url: str
) -> None:
    one, two = await cluster(2)
    tokens = await accounts(one, pg_url)
    ann = await signed_in(make_client, one, tokens["ann"])
    bob = await signed_in(make_client, two, tokens["bob"])
    room = (await ann.call("dm", {"with": ["bob", "boss"]}))["room"]
    assert (await bob.wait_for("dm"))["room"] == room
    # Bob's process may not have heard of the room before he asks.
    assert (await bob.call("subscribe", {"room": room}))["ok"] is True
    assert (await ann.call("subscribe", {"room": room}))["ok"] is True
    sent = (await ann.call("message", {"room": room, "text": "three of us"}))["message"]
    assert await bob.wait_for("message", lambda m: m["room"] == room) == sent
