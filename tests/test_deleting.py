"""Deleting a message: its author or an admin removes it for everyone, its text gone from
the store; every member sees the tombstone at once, and a client that was away catches up
on it when it reconnects (``auth.rev``), on any process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from chatapp.store import open_store

from .support import Client, Server
from .test_export import chatapp
from .test_moderation import admin_and_ann, api
from .test_sign_in import cookie
from .test_users_cli import users

ANN_KEY = "ann-key-0123456789"
BOB_KEY = "bob-key-0123456789"


async def tombstone_of(ack: dict[str, Any]) -> dict[str, Any]:
    assert ack["ok"] is True, ack
    msg: dict[str, Any] = ack["message"]
    assert msg["deleted"] is True and msg["text"] == "" and msg["rev"] >= 1
    return msg


async def test_the_author_deletes_a_message_for_everyone_in_its_room(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    ann, bob, elsewhere = make_client(), make_client(), make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    await bob.connect(server.url, room="team", name="bob", key=BOB_KEY)
    await elsewhere.connect(server.url, room="other", name="eve")
    sent = (await ann.send("my password is hunter2"))["message"]
    await bob.wait_for("message", lambda m: m["id"] == sent["id"])

    gone = await tombstone_of(await ann.call("delete", {"id": sent["id"]}))
    assert {k: gone[k] for k in ("id", "room", "name", "user_id", "ts")} == {
        k: sent[k] for k in ("id", "room", "name", "user_id", "ts")
    }
    assert await bob.wait_for("changed") == gone
    assert await ann.wait_for("changed") == gone
    # Nobody in another room hears of it: its next event is its own room's message.
    await elsewhere.send("still here")
    await elsewhere.wait_for("message")
    assert elsewhere.of("changed") == []
    # History, by Socket.IO and HTTP, shows the tombstone without the text.
    assert (await bob.call("history", {}))["messages"] == [gone]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/rooms/team/messages") as resp,
    ):
        assert (await resp.json())["messages"] == [gone]
    # A later message is numbered on, and a new connection's welcome has the tombstone.
    assert (await bob.send("next"))["message"]["id"] == sent["id"] + 1
    late = make_client()
    welcome = await late.connect(server.url, room="team")
    assert welcome["history"][0] == gone and welcome["rev"] == 1


async def test_deleting_twice_is_one_change(start_server, make_client) -> None:
    server: Server = await start_server()
    ann, bob = make_client(), make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    await bob.connect(server.url, room="team", name="bob", key=BOB_KEY)
    msg_id = (await ann.send("oops"))["message"]["id"]
    first = await tombstone_of(await ann.call("delete", {"id": msg_id}))
    # A retry (the ack was lost) answers the same and changes nothing.
    assert await tombstone_of(await ann.call("delete", {"id": msg_id, "room": "team"})) == first
    await ann.send("after")
    await bob.wait_for("message", lambda m: m["text"] == "after")
    assert bob.of("changed") == [first]


async def test_only_the_author_or_an_admin_deletes(start_server, make_client) -> None:
    server: Server = await start_server()
    boss_token, ann_token = await admin_and_ann(server)
    ann, bob, nameless, boss = (
        make_client(headers=cookie(ann_token)),
        make_client(),
        make_client(),
        make_client(headers=cookie(boss_token)),
    )
    await ann.connect(server.url, room="team")
    await bob.connect(server.url, room="team", name="bob", key=BOB_KEY)
    await nameless.connect(server.url, room="team", name="dan")
    assert (await boss.connect(server.url, room="team"))["admin"] is True
    anns = (await ann.send("ann's words"))["message"]["id"]
    dans = (await nameless.send("dan's words"))["message"]["id"]

    refused = {"ok": False, "error": "you can only delete your own messages"}
    assert await bob.call("delete", {"id": anns}) == refused
    # A guest without a key is known by its name alone, which anyone may take: not enough.
    assert await nameless.call("delete", {"id": dans}) == refused
    assert await bob.call("delete", {"id": 99}) == {"ok": False, "error": "no such message"}
    bad = await bob.call("delete", {"id": "1"})
    assert bad["ok"] is False and bad["error"].startswith("invalid id")
    elsewhere = await bob.call("delete", {"id": anns, "room": "other"})
    assert elsewhere == {"ok": False, "error": "not in #other: subscribe to it first"}
    assert (await bob.call("history", {}))["messages"][0]["text"] == "ann's words"

    # An admin deletes anyone's message, and the moderation log says so.
    await tombstone_of(await boss.call("delete", {"id": anns}))
    entry = (await api(server, "GET", "/api/modlog", boss_token))[1][0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("boss", "delete", f"#team/{anns}")
    # Demoted, while still connected: no longer.
    await asyncio.to_thread(users, "demote", "boss", "--db", server.db)
    assert await boss.call("delete", {"id": dans}) == refused


async def test_a_client_away_during_a_deletion_catches_up_when_it_reconnects(
    start_server, make_client, db: str
) -> None:
    server: Server = await start_server("--db", db)
    ann, away = make_client(), make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    first = await away.connect(server.url, room="team", name="bob", key=BOB_KEY)
    assert first["rev"] == 0 and "changed" not in first
    ids = [(await ann.send(f"m{i}"))["message"]["id"] for i in range(3)]
    await away.wait_for("message", lambda m: m["id"] == ids[-1])
    await away.close()

    gone = await tombstone_of(await ann.call("delete", {"id": ids[1]}))
    new = (await ann.send("while you were away"))["message"]

    back = make_client()
    welcome = await back.connect(
        server.url, room="team", name="bob", key=BOB_KEY, since=ids[-1], rev=first["rev"]
    )
    assert welcome["changed"] == [gone] and welcome["rev"] == gone["rev"]
    assert welcome["history"] == [new] and "reset" not in welcome
    # Caught up: the same position again brings nothing twice.
    again = make_client()
    welcome = await again.connect(
        server.url, room="team", name="bob", key=BOB_KEY, since=new["id"], rev=gone["rev"]
    )
    assert welcome["changed"] == [] and welcome["history"] == []
    # A client that does not send rev (written before changes existed) is welcomed as before.
    old = make_client()
    assert "changed" not in await old.connect(server.url, room="team", since=ids[-1])


async def test_too_much_changed_while_away_starts_the_client_over(
    start_server, make_client, tmp_path: Path
) -> None:
    """Past what one welcome carries, the client is told to show the newest messages
    instead of patching what it had (``reset``)."""
    server: Server = await start_server()
    store = open_store(server.db)
    await store.open()
    try:
        for i in range(502):
            await store.add("busy", "ann", f"m{i}")
        for msg_id in range(1, 502):
            await store.delete("busy", msg_id)
    finally:
        await store.close()
    client = make_client()
    welcome = await client.connect(server.url, room="busy", since=502, rev=0)
    assert welcome["reset"] is True and "changed" not in welcome
    assert [m["id"] for m in welcome["history"]] == list(range(453, 503))
    assert welcome["has_more"] is True and welcome["rev"] == 501


async def test_a_deleted_text_is_gone_from_the_sqlite_file(start_server, make_client) -> None:
    server: Server = await start_server()
    ann = make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    secret = "sk-live-51HqLyjWDarjtT1zdp7dc"
    # Long, so that the tombstone's row is far shorter than the row it replaces.
    msg_id = (await ann.send(f"{'a' * 900} {secret} {'z' * 900}"))["message"]["id"]
    for i in range(20):  # more pages, and the secret's not the last write
        await ann.send(f"filler {i}")
    await tombstone_of(await ann.call("delete", {"id": msg_id}))
    files = [p for p in Path(server.db).parent.iterdir() if p.name.startswith("chat")]
    assert files and all(secret.encode() not in p.read_bytes() for p in files), files


async def test_an_export_keeps_the_tombstone_and_not_the_text(
    start_server, make_client, tmp_path: Path
) -> None:
    server: Server = await start_server()
    ann = make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    msg_id = (await ann.send("not for the archive"))["message"]["id"]
    await ann.send("kept")
    await tombstone_of(await ann.call("delete", {"id": msg_id}))
    export = chatapp("export", "--db", server.db).stdout
    assert b"not for the archive" not in export and b'"deleted":true' in export
    copy = str(tmp_path / "copy.db")
    assert chatapp("import", "-", "--db", copy, stdin=export).returncode == 0
    store = open_store(copy)
    await store.open()
    try:
        restored = (await store.recent("team", 10)).messages
        assert [(m.deleted, m.text, m.rev) for m in restored] == [(True, "", 1), (False, "kept", 0)]
        assert await store.last_rev("team") == 1
    finally:
        await store.close()


async def test_a_deletion_reaches_every_process_and_catch_up_on_any(
    cluster, make_client, pg_url: str
) -> None:
    one, two = await cluster(2)
    boss_token, _ = await admin_and_ann(one, pg_url)
    watcher, away = make_client(), make_client()
    await watcher.connect(one.url, room="team", name="wes", key=BOB_KEY)
    first = await away.connect(one.url, room="team", name="amy", key=ANN_KEY)
    msg = (await away.send("posted on one"))["message"]
    await watcher.wait_for("message", lambda m: m["id"] == msg["id"])
    await away.close()

    boss: Client = make_client(headers=cookie(boss_token))
    await boss.connect(two.url, room="team")
    gone = await tombstone_of(await boss.call("delete", {"id": msg["id"]}))
    assert await watcher.wait_for("changed") == gone  # live, through Redis

    back = make_client()
    welcome = await back.connect(
        two.url, room="team", name="amy", key=ANN_KEY, since=msg["id"], rev=first["rev"]
    )
    assert welcome["changed"] == [gone]
