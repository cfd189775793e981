"""Private rooms: only their members join, read, post and see them; nobody else learns
of them through the room list, history, presence or a webhook."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg

from chatapp.store import LogEntry, open_store

from .services import eventually
from .support import Server
from .test_bots import add_bot, webhook
from .test_moderation import admin_and_ann, api
from .test_sign_in import add_account, cookie, sign_in

NOT_A_MEMBER = "no such room, or you are not one of its members"


async def rooms_seen(server: Server, token: str | None) -> list[str]:
    status, rooms = await api(server, "GET", "/api/rooms", token)
    assert status == 200
    return sorted(r["room"] for r in rooms)


async def test_only_members_join_read_and_see_a_private_room(start_server, make_client) -> None:
    server: Server = await start_server()
    boss, ann = await admin_and_ann(server)
    await add_account(server.db, "bob", "bob's password")
    bob = await sign_in(server, "bob", "bob's password")
    writer = make_client(headers=cookie(ann))
    await writer.connect(server.url, room="secret")
    assert (await writer.send("before it was private"))["ok"]
    await writer.close()
    guest_there = make_client()
    await guest_there.connect(server.url, room="secret", name="guest")

    assert await api(server, "PUT", "/api/rooms/secret/private", ann, {}) == (
        403,
        {"error": "only admins manage private rooms"},
    )
    status, _ = await api(server, "PUT", "/api/rooms/secret/private", boss, {"members": ["ann"]})
    assert status == 200
    await guest_there.wait_for("disconnect")  # not a member: out within a second

    # Members: in, reading, posting.
    member = make_client(headers=cookie(ann))
    welcome = await member.connect(server.url, room="secret")
    assert [m["text"] for m in welcome["history"]] == ["before it was private"]
    assert welcome["users"] == ["ann"]  # the guest is gone
    assert (await member.send("members only"))["ok"]
    assert "secret" in await rooms_seen(server, ann)
    assert (await api(server, "GET", "/api/rooms/secret/messages", ann))[0] == 200
    assert await api(server, "GET", "/api/rooms/secret/members", ann) == (
        200,
        {"room": "secret", "members": ["ann", "boss"]},
    )
    # Everyone else: refused, and not told the room exists.
    for token, name in ((bob, None), (None, "guest")):
        client = make_client(headers=cookie(token) if token else {})
        assert await client.connect_refused(server.url, room="secret", name=name) == NOT_A_MEMBER
        assert "secret" not in await rooms_seen(server, token)
        assert await api(server, "GET", "/api/rooms/secret/messages", token) == (
            404,
            {"error": NOT_A_MEMBER},
        )
    assert (await api(server, "GET", "/api/rooms/secret/members", bob))[0] == 404


async def test_a_removed_member_is_dropped_and_a_public_room_is_open_again(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    boss, ann = await admin_and_ann(server)
    await api(server, "PUT", "/api/rooms/secret/private", boss, {"members": ["ann"]})
    member = make_client(headers=cookie(ann))
    await member.connect(server.url, room="secret")
    assert (await api(server, "DELETE", "/api/rooms/secret/members/ann", boss))[0] == 200
    await member.wait_for("disconnect")
    assert (
        await make_client(headers=cookie(ann)).connect_refused(server.url, room="secret")
        == NOT_A_MEMBER
    )
    assert (await api(server, "PUT", "/api/rooms/secret/members/ANN", boss))[0] == 200
    await make_client(headers=cookie(ann)).connect(server.url, room="secret")
    assert (await api(server, "DELETE", "/api/rooms/secret/private", boss))[0] == 200
    await make_client().connect(server.url, room="secret", name="guest")
    assert await api(server, "DELETE", "/api/rooms/secret/private", boss) == (
        404,
        {"error": "#secret is not private"},
    )
    log = (await api(server, "GET", "/api/modlog", boss))[1]
    assert [(e["action"], e["target"]) for e in reversed(log)] == [
        ("private", "secret"),
        ("add member", "boss"),
        ("add member", "ann"),
        ("remove member", "ann"),
        ("add member", "ann"),
        ("public", "secret"),
    ]


async def test_a_bot_posts_to_a_private_room_only_as_a_member(start_server) -> None:
    server: Server = await start_server()
    boss, _ = await admin_and_ann(server)
    token = await add_bot(server, "ci-bot")
    await api(server, "PUT", "/api/rooms/builds/private", boss, {})
    assert await webhook(server, "builds", {"text": "hi"}, token) == (404, {"error": NOT_A_MEMBER})
    await api(server, "PUT", "/api/rooms/builds/members/ci-bot", boss)
    assert (await webhook(server, "builds", {"text": "hi"}, token))[0] == 201


async def test_a_private_room_is_private_on_every_process(
    cluster, make_client, pg_url: str
) -> None:
    one, two = await cluster(2)
    boss, ann = await admin_and_ann(one, pg_url)
    guest = make_client()
    await guest.connect(two.url, room="secret", name="guest")
    assert (await api(one, "PUT", "/api/rooms/secret/private", boss, {"members": ["ann"]}))[
        0
    ] == 200
    await guest.wait_for("disconnect")
    assert await make_client().connect_refused(two.url, room="secret", name="g2") == NOT_A_MEMBER
    await make_client(headers=cookie(ann)).connect(two.url, room="secret")
    async with aiohttp.ClientSession() as http, http.get(two.url + "/api/rooms") as resp:
        assert "secret" not in [r["room"] for r in await resp.json()]


async def test_a_member_added_on_one_process_joins_at_once_on_another(
    cluster, make_client, pg_url: str
) -> None:
    """Another process does not wait for its next look at the database to let a new
    member in: it asks again before refusing an account."""
    one, two = await cluster(2)
    boss, ann = await admin_and_ann(one, pg_url)
    guest = make_client()
    await guest.connect(two.url, room="secret", name="guest")
    assert (await api(one, "PUT", "/api/rooms/secret/private", boss, {}))[0] == 200
    await guest.wait_for("disconnect")  # the second process knows the room is private
    assert (await api(one, "PUT", "/api/rooms/secret/members/ann", boss))[0] == 200
    await make_client(headers=cookie(ann)).connect(two.url, room="secret")
    assert (await api(two, "GET", "/api/rooms/secret/messages", ann))[0] == 200


async def test_a_room_is_never_private_without_the_members_it_was_made_private_with(
    pg_url: str,
) -> None:
    """The room and its first members are written in one transaction. Were they not, a
    process looking in between would find the room private with nobody in it, and drop
    the members' connections. Here the members' rows are held up by a lock while
    another reader looks."""
    store = open_store(pg_url)
    await store.open()
    entry = LogEntry(1, "boss", "private", "secret", "")
    blocker = await asyncpg.connect(pg_url)
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("LOCK TABLE room_members IN SHARE MODE")
        making = asyncio.create_task(store.set_private("secret", True, entry, [("a-ann", entry)]))

        async def held_up() -> bool:
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> $1",
                blocker.get_server_pid(),
            )
            return bool(waiting)

        await eventually(held_up, what="the members' rows waiting for the lock")
        assert await store.private_rooms() == {}
        await holding.rollback()
        assert await making
        assert await store.private_rooms() == {"secret": {"a-ann"}}
    finally:
        await blocker.close()
        await store.close()
