"""Mentions and read state: the server resolves ``@handle``, ``@room`` and ``@here`` when it
stores a message, and the message carries the result; a signed-in person's read mark per
room is kept by the server, shared by their devices, and gives unread and mention counts."""

from __future__ import annotations

from typing import Any

from .support import Client, Server
from .test_moderation import api
from .test_sign_in import add_account, cookie, sign_in
from .test_users_cli import users


async def accounts(server: Server, db: str | None = None) -> dict[str, str]:
    """Sign-ins of the members ann and bob, and of the admin boss."""
    db = db or server.db
    tokens = {}
    for handle in ("ann", "bob", "boss"):
        await add_account(db, handle, f"{handle}'s password")
        tokens[handle] = await sign_in(server, handle, f"{handle}'s password")
    assert users("promote", "boss", "--db", db).returncode == 0
    return tokens


async def me(server: Server, token: str) -> dict[str, Any]:
    status, body = await api(server, "GET", "/api/me", token)
    assert status == 200, body
    return dict(body["account"])


async def test_mentions_are_resolved_when_stored_and_carried_by_the_message(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    tokens = await accounts(server)
    ann, bob = (await me(server, tokens["ann"]))["id"], (await me(server, tokens["bob"]))["id"]
    guest, listener = make_client(), make_client(headers=cookie(tokens["ann"]))
    await guest.connect(server.url, room="team", name="gus")
    await listener.connect(server.url, room="team")

    text = "hi @Ann, and @bob! mail@example.com @nobody @ANN @\u0430nn"  # a look-alike is not ann
    sent = (await guest.send(text))["message"]
    assert sent["text"] == text  # stored as typed
    assert sent["mentions"] == [ann, bob] and "mention_all" not in sent
    assert await listener.wait_for("message", lambda m: m["id"] == sent["id"]) == sent
    here = (await guest.send("lunch @here?"))["message"]
    assert here["mention_all"] == "here" and "mentions" not in here
    both = (await guest.send("@here and @room"))["message"]
    assert both["mention_all"] == "room"
    plain = (await guest.send("no one, not even me@ann"))["message"]
    assert "mentions" not in plain and "mention_all" not in plain
    # In code an @word is text: inline, or in a fenced block (closed or not).
    code = "run `notify @bob` then\n```sh\necho @room\n```\n@ann, and ```@here"
    assert (await guest.send(code))["message"]["mentions"] == [ann]
    assert "mention_all" not in (await guest.send(code))["message"]
    # History says the same; a deletion takes the mentions with the text.
    assert (await listener.call("history", {}))["messages"][0]["mentions"] == [ann, bob]
    await guest.close()
    boss = make_client(headers=cookie(tokens["boss"]))
    await boss.connect(server.url, room="team")
    gone = (await boss.call("delete", {"id": sent["id"]}))["message"]
    assert "mentions" not in gone


async def test_who_may_mention_everyone_is_the_operators_choice(start_server, make_client) -> None:
    server: Server = await start_server("--mention-all", "admins")
    tokens = await accounts(server)
    member, boss, guest = (
        make_client(headers=cookie(tokens["ann"])),
        make_client(headers=cookie(tokens["boss"])),
        make_client(),
    )
    for client in (member, boss):
        await client.connect(server.url, room="team")
    await guest.connect(server.url, room="team", name="gus")
    refused = {"ok": False, "error": "only admins may mention @room here"}
    assert await member.send("@room deploy at 5") == refused
    assert await guest.call("message", {"text": "hey @here"}) == {
        "ok": False,
        "error": "only admins may mention @here here",
    }
    assert (await member.send("@bob deploy at 5"))["ok"] is True
    assert (await boss.send("@room deploy at 5"))["message"]["mention_all"] == "room"


async def test_read_marks_follow_the_person_across_devices_with_unread_and_mention_counts(
    start_server, make_client, db: str
) -> None:
    server: Server = await start_server("--db", db)
    tokens = await accounts(server, db)
    laptop, phone = (
        make_client(headers=cookie(tokens["ann"])),
        make_client(headers=cookie(tokens["ann"])),
    )
    welcome = await laptop.connect(server.url, room="team")
    await phone.connect(server.url, room="lobby")
    await phone.call("subscribe", {"room": "team"})
    bob: Client = make_client(headers=cookie(tokens["bob"]))
    await bob.connect(server.url, room="team")
    first = (await bob.send("before"))["message"]["id"]
    assert welcome["history"] == []
    assert await laptop.call("read", {"id": first}) == {
        "ok": True,
        "room": "team",
        "last_read": first,
    }
    for text in ("plain", "@ann look", "@room all hands", "@here anyone?"):
        await bob.send(text)
    await bob.send("my own @bob mention counts for nobody")  # not ann's
    rooms = (await api(server, "GET", "/api/me/rooms", tokens["ann"]))[1]["rooms"]
    assert rooms == [
        {"room": "team", "last_read": first, "last_id": first + 5, "unread": 5, "mentions": 3}
    ]
    # Read on the phone: the laptop hears of it, and the counts are gone.
    assert (await phone.call("read", {"room": "team", "id": first + 3}))["last_read"] == first + 3
    assert await laptop.wait_for("read") == {"room": "team", "last_read": first + 3}
    rooms = (await api(server, "GET", "/api/me/rooms", tokens["ann"]))[1]["rooms"]
    assert (rooms[0]["unread"], rooms[0]["mentions"]) == (2, 1)  # the @here is still unread
    # Never back, never past the newest message.
    assert (await laptop.call("read", {"id": first}))["last_read"] == first + 3
    assert (await laptop.call("read", {"id": 10**9}))["last_read"] == first + 5
    bad = await laptop.call("read", {"id": -1})
    assert bad["ok"] is False and bad["error"].startswith("invalid id")
    assert (await laptop.call("read", {"room": "elsewhere", "id": 1}))["error"] == (
        "not in #elsewhere: subscribe to it first"
    )
    # Bob's rooms are his own: what he wrote, he has read.
    assert (await api(server, "GET", "/api/me/rooms", tokens["bob"]))[1]["rooms"] == [
        {"room": "team", "last_read": first + 5, "last_id": first + 5, "unread": 0, "mentions": 0}
    ]
    # Writing on the phone reads the room up to it, on the laptop too.
    mine = (await phone.send("back at my desk", room="team"))["message"]["id"]
    assert await laptop.wait_for("read", lambda r: r["last_read"] == mine) == {
        "room": "team",
        "last_read": mine,
    }
    rooms = (await api(server, "GET", "/api/me/rooms", tokens["ann"]))[1]["rooms"]
    assert (rooms[0]["unread"], rooms[0]["mentions"]) == (0, 0)
    # A guest's read is the browser's to keep.
    guest = make_client()
    await guest.connect(server.url, room="team", name="gus")
    assert await guest.call("read", {"id": 2}) == {"ok": True, "room": "team", "last_read": 2}
    # Leaving a room takes it off the list.
    assert await api(server, "DELETE", "/api/me/rooms/team", tokens["ann"]) == (200, {"ok": True})
    assert await api(server, "DELETE", "/api/me/rooms/team", tokens["ann"]) == (
        404,
        {"error": "not one of your rooms"},
    )
    assert (await api(server, "GET", "/api/me/rooms", tokens["ann"]))[1]["rooms"] == []
    assert (await api(server, "GET", "/api/me/rooms", None))[0] == 401


async def test_mentions_and_reads_hold_across_processes(cluster, make_client, pg_url) -> None:
    one, two = await cluster(2)
    tokens = await accounts(one, pg_url)
    ann = (await me(one, tokens["ann"]))["id"]
    on_one, on_two = (
        make_client(headers=cookie(tokens["ann"])),
        make_client(headers=cookie(tokens["ann"])),
    )
    await on_one.connect(one.url, room="team")
    await on_two.connect(two.url, room="team")
    sender = make_client()
    await sender.connect(two.url, room="team", name="gus")
    sent = (await sender.send("@ann from two"))["message"]
    heard = await on_one.wait_for("message", lambda m: m["id"] == sent["id"])
    assert heard["mentions"] == sent["mentions"] == [ann]
    await on_two.call("read", {"id": sent["id"]})
    assert await on_one.wait_for("read") == {"room": "team", "last_read": sent["id"]}
