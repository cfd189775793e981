"""Editing, reacting to and replying to messages: an edit and a reaction are changes like
a deletion (each takes the room's next ``rev``), so every member sees them at once and a
client that was away catches up on all of them when it reconnects, on any process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from chatapp.store import open_store

from .support import Client, Server
from .test_deleting import ANN_KEY, BOB_KEY, tombstone_of
from .test_export import chatapp
from .test_mentions import accounts, me
from .test_moderation import admin_and_ann
from .test_sign_in import cookie


def changed(ack: dict[str, Any]) -> dict[str, Any]:
    assert ack["ok"] is True, ack
    msg: dict[str, Any] = ack["message"]
    assert msg["rev"] >= 1
    return msg


async def test_the_author_edits_a_message_for_everyone_in_its_room(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    ann, bob = make_client(), make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    await bob.connect(server.url, room="team", name="bob", key=BOB_KEY)
    sent = (await ann.send("teh plan"))["message"]
    await bob.wait_for("message", lambda m: m["id"] == sent["id"])

    edited = changed(await ann.call("edit", {"id": sent["id"], "text": "the plan"}))
    assert edited["text"] == "the plan" and edited["edited"] >= sent["ts"]
    assert {k: edited[k] for k in ("id", "name", "user_id", "ts")} == {
        k: sent[k] for k in ("id", "name", "user_id", "ts")
    }
    assert await bob.wait_for("changed") == edited
    assert await ann.wait_for("changed") == edited
    assert (await bob.call("history", {}))["messages"] == [edited]
    # The same text again changes nothing (a retry whose ack was lost).
    assert await ann.call("edit", {"id": sent["id"], "text": "the plan", "room": "team"}) == {
        "ok": True,
        "message": edited,
    }
    again = changed(await ann.call("edit", {"id": sent["id"], "text": "the plan, v3"}))
    assert again["rev"] == edited["rev"] + 1
    assert await bob.wait_for("changed", lambda m: m["rev"] == again["rev"]) == again
    assert len(bob.of("changed")) == 2


async def test_only_the_author_edits_and_an_admin_reads_what_it_said(
    start_server, make_client
) -> None:
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
    await boss.connect(server.url, room="team")
    anns = (await ann.send("first words"))["message"]["id"]
    dans = (await nameless.send("dan's words"))["message"]["id"]

    refused = {"ok": False, "error": "you can only edit your own messages"}
    assert await bob.call("edit", {"id": anns, "text": "bob was here"}) == refused
    assert await boss.call("edit", {"id": anns, "text": "an admin's words"}) == refused
    # A guest without a key is known by its name alone, which anyone may take: not enough.
    assert await nameless.call("edit", {"id": dans, "text": "x"}) == refused
    missing = await ann.call("edit", {"id": 99, "text": "x"})
    assert missing == {"ok": False, "error": "no such message"}
    for bad in ({"id": anns}, {"id": anns, "text": " "}, {"id": anns, "text": "x" * 2001}):
        answer = await ann.call("edit", bad)
        assert answer["ok"] is False and answer["error"].startswith("invalid text"), answer
    bad_id = await ann.call("edit", {"id": "1", "text": "x"})
    assert bad_id["ok"] is False and bad_id["error"].startswith("invalid id")

    changed(await ann.call("edit", {"id": anns, "text": "second words"}))
    changed(await ann.call("edit", {"id": anns, "text": "third words"}))
    history = await boss.call("edits", {"id": anns})
    assert [e["text"] for e in history["edits"]] == ["first words", "second words"]
    assert history["id"] == anns and all(isinstance(e["ts"], int) for e in history["edits"])
    assert await ann.call("edits", {"id": anns}) == {
        "ok": False,
        "error": "only admins may see what a message said before its edits",
    }
    # A deletion takes the edit history with the text; a deleted message cannot be edited.
    await tombstone_of(await ann.call("delete", {"id": anns}))
    assert (await boss.call("edits", {"id": anns}))["edits"] == []
    assert await ann.call("edit", {"id": anns, "text": "back"}) == {
        "ok": False,
        "error": "this message was deleted",
    }
    files = [p for p in Path(server.db).parent.iterdir() if p.name.startswith("chat")]
    assert files and not any(b"first words" in p.read_bytes() for p in files)
    assert not any(b"second words" in p.read_bytes() for p in files)


async def test_an_edit_resolves_the_mentions_again(start_server, make_client) -> None:
    server: Server = await start_server("--mention-all", "members")
    tokens = await accounts(server)
    ann_id = (await me(server, tokens["ann"]))["id"]
    bob, ann = (
        make_client(headers=cookie(tokens["bob"])),
        make_client(headers=cookie(tokens["ann"])),
    )
    guest = make_client()
    await bob.connect(server.url, room="team")
    await ann.connect(server.url, room="team")
    await guest.connect(server.url, room="team", name="gus", key="gus-key-0123456789")
    sent = (await bob.send("hello"))["message"]
    edited = changed(await bob.call("edit", {"id": sent["id"], "text": "hello @ann"}))
    assert edited["mentions"] == [ann_id]
    unmentioned = changed(await bob.call("edit", {"id": sent["id"], "text": "hello all"}))
    assert "mentions" not in unmentioned
    # The same rule as for a new message: this guest may not mention everyone.
    gus = (await guest.send("hi"))["message"]["id"]
    assert await guest.call("edit", {"id": gus, "text": "hi @room"}) == {
        "ok": False,
        "error": "only members may mention @room here",
    }


async def test_an_edit_window_set_by_the_operator(start_server, make_client) -> None:
    server: Server = await start_server("--edit-window", "0.000001")
    ann = make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    sent = (await ann.send("too late"))["message"]
    answer = await ann.call("edit", {"id": sent["id"], "text": "fixed"})
    assert answer == {
        "ok": False,
        "error": "too late to edit: messages can be edited for 1e-06 seconds",
    }


async def test_reactions_are_toggled_counted_and_idempotent_with_add(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    ann, bob = make_client(), make_client()
    ann_id = (await ann.connect(server.url, room="team", name="ann", key=ANN_KEY))["user_id"]
    bob_id = (await bob.connect(server.url, room="team", name="bob", key=BOB_KEY))["user_id"]
    sent = (await ann.send("ship it?"))["message"]

    one = changed(await bob.call("react", {"id": sent["id"], "emoji": "👍"}))
    assert one["reactions"] == [{"emoji": "👍", "count": 1, "users": [bob_id]}]
    two = changed(await ann.call("react", {"id": sent["id"], "emoji": "👍", "add": True}))
    assert two["reactions"] == [{"emoji": "👍", "count": 2, "users": [bob_id, ann_id]}]
    # add: true again (a retry) changes nothing; the answer is the message as it is.
    assert await ann.call("react", {"id": sent["id"], "emoji": "👍", "add": True}) == {
        "ok": True,
        "message": two,
    }
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    three = changed(await ann.call("react", {"id": sent["id"], "emoji": family}))
    assert [r["emoji"] for r in three["reactions"]] == ["👍", family]
    # Toggled off, by toggle and by add: false; an emoji nobody has left disappears.
    changed(await bob.call("react", {"id": sent["id"], "emoji": "👍"}))
    four = changed(await ann.call("react", {"id": sent["id"], "emoji": "👍", "add": False}))
    assert four["reactions"] == [{"emoji": family, "count": 1, "users": [ann_id]}]
    assert await bob.wait_for("changed", lambda m: m["rev"] == four["rev"]) == four
    assert [m["rev"] for m in bob.of("changed")] == [1, 2, 3, 4, 5]
    assert (await bob.call("history", {}))["messages"] == [four]

    for emoji in ("a", "+1", ":+1:", "👍 👍", "👍" * 9, "", 7, None, "\u200d"):
        answer = await ann.call("react", {"id": sent["id"], "emoji": emoji})
        assert answer == {
            "ok": False,
            "error": "invalid emoji: must be one emoji (at most 32 bytes)",
        }, emoji
    answer = await ann.call("react", {"id": sent["id"], "emoji": "👍", "add": "yes"})
    assert answer["ok"] is False and answer["error"].startswith("invalid add")
    assert await ann.call("react", {"id": 99, "emoji": "👍"}) == {
        "ok": False,
        "error": "no such message",
    }
    await tombstone_of(await ann.call("delete", {"id": sent["id"]}))
    assert await bob.call("react", {"id": sent["id"], "emoji": "👍"}) == {
        "ok": False,
        "error": "this message was deleted",
    }


async def test_a_message_takes_a_bounded_number_of_different_reactions(
    start_server, make_client
) -> None:
    server: Server = await start_server("--message-burst", "100", "--event-burst", "100")
    ann = make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    msg_id = (await ann.send("vote"))["message"]["id"]
    emoji = [chr(0x1F600 + i) for i in range(21)]
    for e in emoji[:20]:
        changed(await ann.call("react", {"id": msg_id, "emoji": e}))
    assert await ann.call("react", {"id": msg_id, "emoji": emoji[20]}) == {
        "ok": False,
        "error": "a message takes at most 20 different reactions",
    }
    # One already there can still be added to and taken away.
    changed(await ann.call("react", {"id": msg_id, "emoji": emoji[0]}))


async def test_a_reply_names_the_message_it_answers(start_server, make_client) -> None:
    server: Server = await start_server()
    ann, bob = make_client(), make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    await bob.connect(server.url, room="team", name="bob", key=BOB_KEY)
    question = (await ann.send("lunch?"))["message"]
    reply = (await bob.call("message", {"text": "yes", "reply_to": question["id"]}))["message"]
    assert reply["reply_to"] == question["id"]
    assert await ann.wait_for("message", lambda m: m["id"] == reply["id"]) == reply
    assert "reply_to" not in question
    assert await bob.call("message", {"text": "to what?", "reply_to": 99}) == {
        "ok": False,
        "error": "no such message to reply to",
    }
    bad = await bob.call("message", {"text": "x", "reply_to": "1"})
    assert bad["ok"] is False and bad["error"].startswith("invalid reply_to")
    # In another room that id is another message's, or nobody's.
    await bob.call("subscribe", {"room": "other"})
    assert await bob.call("message", {"text": "x", "reply_to": reply["id"], "room": "other"}) == {
        "ok": False,
        "error": "no such message to reply to",
    }
    assert (await ann.call("history", {}))["messages"][-1] == reply


async def test_a_client_away_during_an_edit_a_deletion_and_reactions_catches_up_on_any_process(
    cluster, make_client, pg_url: str
) -> None:
    one, two = await cluster(2)
    boss_token, _ = await admin_and_ann(one, pg_url)
    author, away = make_client(), make_client()
    await author.connect(one.url, room="team", name="amy", key=ANN_KEY)
    first = await away.connect(one.url, room="team", name="bob", key=BOB_KEY)
    ids = [(await author.send(f"m{i}"))["message"]["id"] for i in range(3)]
    await away.wait_for("message", lambda m: m["id"] == ids[-1])
    await away.close()

    edited = changed(await author.call("edit", {"id": ids[0], "text": "m0, edited"}))
    boss: Client = make_client(headers=cookie(boss_token))
    await boss.connect(two.url, room="team")
    gone = await tombstone_of(await boss.call("delete", {"id": ids[1]}))
    changed(await boss.call("react", {"id": ids[2], "emoji": "🎉"}))
    reacted = changed(await author.call("react", {"id": ids[2], "emoji": "🎉"}))
    assert reacted["reactions"][0]["count"] == 2
    new = (await author.send("while you were away"))["message"]

    back = make_client()
    welcome = await back.connect(
        two.url, room="team", name="bob", key=BOB_KEY, since=ids[-1], rev=first["rev"]
    )
    # Each changed message once, as it is now, in change order; the new message after.
    assert welcome["changed"] == [edited, gone, reacted]
    assert welcome["rev"] == reacted["rev"] and welcome["history"] == [new]
    # Live from here, on the other process.
    later = changed(await author.call("react", {"id": ids[0], "emoji": "👀"}))
    assert await back.wait_for("changed") == later


async def test_an_edit_racing_a_deletion_ends_deleted(start_server, make_client, db: str) -> None:
    server: Server = await start_server("--db", db, "--message-burst", "100")
    boss_token, _ = await admin_and_ann(server, db)
    ann = make_client()
    boss: Client = make_client(headers=cookie(boss_token))
    await ann.connect(server.url, room="team", name="amy", key=ANN_KEY)
    await boss.connect(server.url, room="team")
    for round_ in range(5):
        msg_id = (await ann.send(f"race {round_}"))["message"]["id"]
        edit, delete = await asyncio.gather(
            ann.call("edit", {"id": msg_id, "text": f"edited {round_}"}),
            boss.call("delete", {"id": msg_id}),
        )
        assert delete["ok"] is True
        assert edit["ok"] is True or edit == {"ok": False, "error": "this message was deleted"}
        final = (await ann.call("history", {}))["messages"][-1]
        assert final["deleted"] is True and final["text"] == ""
        assert (await boss.call("edits", {"id": msg_id}))["edits"] == []


async def test_an_export_carries_edits_reactions_and_replies(
    start_server, make_client, tmp_path
) -> None:
    server: Server = await start_server()
    ann = make_client()
    ann_id = (await ann.connect(server.url, room="team", name="ann", key=ANN_KEY))["user_id"]
    first = (await ann.send("draft"))["message"]["id"]
    changed(await ann.call("edit", {"id": first, "text": "final"}))
    changed(await ann.call("react", {"id": first, "emoji": "✅"}))
    await ann.call("message", {"text": "see above", "reply_to": first})
    export = chatapp("export", "--db", server.db).stdout
    assert b"draft" not in export
    copy = str(tmp_path / "copy.db")
    assert chatapp("import", "-", "--db", copy, stdin=export).returncode == 0
    store = open_store(copy)
    await store.open()
    try:
        restored = (await store.recent("team", 10)).messages
        assert [m.to_dict() for m in restored] == (await ann.call("history", {}))["messages"]
        assert restored[0].edited and restored[0].reactions == (("✅", (ann_id,)),)
        assert restored[1].reply_to == first
    finally:
        await store.close()
