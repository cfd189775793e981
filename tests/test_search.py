"""Search: ``GET /api/search`` and the ``search`` event find what a person may read, by
words, phrase, sender, room and date, best first, with the matched words marked in a
snippet; an edit re-indexes and a deletion takes a message out, on both stores."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from chatapp.protocol import ProtocolError
from chatapp.search import RANKED, parse_query, snippet
from chatapp.store import Message, open_store
from chatapp.store.base import now_ms

from .support import Client, Server
from .test_deleting import ANN_KEY, BOB_KEY, tombstone_of
from .test_mentions import accounts
from .test_sign_in import cookie


async def api_search(server: Server, token: str | None = None, **params: Any) -> tuple[int, Any]:
    headers = cookie(token) if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/search?{urlencode(params)}", headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def texts(answer: dict[str, Any]) -> list[str]:
    return [r["message"]["text"] for r in answer["results"]]


async def test_words_and_phrases_find_messages_best_first_with_a_snippet(
    start_server, make_client, db: str
) -> None:
    server: Server = await start_server("--db", db)
    ann, bob = make_client(), make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    await bob.connect(server.url, room="ops", name="bob", key=BOB_KEY)
    await ann.send("The deploy failed on staging")
    await ann.send("lunch at noon?")
    await bob.send("Deploy, deploy, deploy: the release train leaves at five")
    await bob.send("failed to reach the database; deploy rolled back")

    status, found = await api_search(server, q="deploy")
    assert status == 200 and found["has_more"] is False
    assert set(texts(found)) == {
        "The deploy failed on staging",
        "Deploy, deploy, deploy: the release train leaves at five",
        "failed to reach the database; deploy rolled back",
    }
    assert texts(found)[0] == "Deploy, deploy, deploy: the release train leaves at five"
    # Every word must be there; a phrase, in that order.
    assert texts((await api_search(server, q="deploy FAILED"))[1]) != []
    assert set(texts((await api_search(server, q="deploy failed"))[1])) == {
        "The deploy failed on staging",
        "failed to reach the database; deploy rolled back",
    }
    assert texts((await api_search(server, q='"deploy failed"'))[1]) == [
        "The deploy failed on staging"
    ]
    # The snippet marks the words found, as text.
    (hit,) = (await api_search(server, q="noon"))[1]["results"]
    assert hit["snippet"] == [["lunch at ", False], ["noon", True], ["?", False]]
    assert hit["message"]["room"] == "team" and hit["message"]["name"] == "ann"
    # Over Socket.IO too, with the same answer.
    assert await ann.call("search", {"q": "noon"}) == {
        "ok": True,
        **(await api_search(server, q="noon"))[1],
    }


async def test_filters_by_sender_room_and_date(start_server, make_client) -> None:
    server: Server = await start_server()
    ann, bob = make_client(), make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    await bob.connect(server.url, room="team", name="Bob", key=BOB_KEY)
    await bob.call("subscribe", {"room": "ops"})
    await ann.send("backup done")
    await bob.send("backup failed")
    await bob.call("message", {"text": "backup retried", "room": "ops"})

    assert set(texts((await api_search(server, q="backup from:bob"))[1])) == {
        "backup failed",
        "backup retried",
    }
    assert texts((await api_search(server, q="backup in:ops"))[1]) == ["backup retried"]
    assert texts((await api_search(server, q="backup", room="ops"))[1]) == ["backup retried"]
    assert texts((await api_search(server, q="backup from:bob in:#team"))[1]) == ["backup failed"]
    assert texts((await api_search(server, q="backup before:2000-01-01"))[1]) == []
    assert len(texts((await api_search(server, q="backup after:2000-01-01"))[1])) == 3
    # Paging: the next page goes on from the first.
    first = (await api_search(server, q="backup", limit=2))[1]
    rest = (await api_search(server, q="backup", limit=2, offset=2))[1]
    assert first["has_more"] is True and rest["has_more"] is False
    assert len(set(texts(first)) | set(texts(rest))) == 3


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "invalid search: q must be a string"),
        ({"q": ""}, "invalid search: search for at least one word"),
        ({"q": "from:ann"}, "invalid search: search for at least one word"),
        ({"q": "!!! ???"}, "invalid search: search for at least one word"),
        ({"q": "x" * 201}, "invalid search: at most 200 characters"),
        (
            {"q": " ".join(f"w{i}" for i in range(11))},
            "invalid search: at most 10 words and phrases",
        ),
        ({"q": "a before:yesterday"}, "invalid search: before: must be a date, YYYY-MM-DD"),
        ({"q": "a in:no/room"}, "invalid search: in: "),
        ({"q": "a", "limit": "0"}, "invalid limit: must be an integer 1-50"),
        ({"q": "a", "limit": "x"}, "invalid limit: must be an integer"),
        ({"q": "a", "offset": "501"}, "invalid offset: must be an integer 0-500"),
    ],
)
async def test_a_bad_search_is_a_clear_error(server: Server, params, error: str) -> None:
    status, body = await api_search(server, **params)
    assert status == 400 and body["error"].startswith(error), body


async def test_a_bad_search_event_is_a_clear_error(server: Server, make_client) -> None:
    client: Client = make_client()
    await client.connect(server.url, room="team")
    assert await client.call("search", {"q": "x", "limit": 51}) == {
        "ok": False,
        "error": "invalid limit: must be an integer 1-50",
    }
    assert (await client.call("search", "deploy"))["error"].startswith("invalid payload")
    # Query syntax of the stores is text here: it finds nothing, it breaks nothing.
    for q in ('deploy" OR "x', "NEAR(a b)", "a AND", "*", "a:b:c", "'); DROP TABLE messages;--"):
        answer = await client.call("search", {"q": q})
        assert answer["ok"] is True or answer["error"].startswith("invalid search"), (q, answer)


async def test_an_edit_reindexes_and_a_deletion_takes_a_message_out(
    start_server, make_client, db: str
) -> None:
    server: Server = await start_server("--db", db)
    ann = make_client()
    await ann.connect(server.url, room="team", name="ann", key=ANN_KEY)
    sent = (await ann.send("the password is swordfish"))["message"]
    assert texts((await api_search(server, q="swordfish"))[1]) == ["the password is swordfish"]
    await ann.call("edit", {"id": sent["id"], "text": "the password is elsewhere"})
    assert texts((await api_search(server, q="swordfish"))[1]) == []
    assert texts((await api_search(server, q="elsewhere"))[1]) == ["the password is elsewhere"]
    await tombstone_of(await ann.call("delete", {"id": sent["id"]}))
    assert texts((await api_search(server, q="elsewhere"))[1]) == []
    assert texts((await api_search(server, q="password"))[1]) == []


async def test_private_rooms_and_direct_messages_are_searched_by_their_people_only(
    start_server, make_client, db: str
) -> None:
    server: Server = await start_server("--db", db)
    tokens = await accounts(server, db)
    ann, bob = (
        make_client(headers=cookie(tokens["ann"])),
        make_client(headers=cookie(tokens["bob"])),
    )
    await ann.connect(server.url, room="lobby")
    await bob.connect(server.url, room="lobby")
    dm = await ann.call("dm", {"with": ["bob"]})
    assert dm["ok"] is True, dm
    await ann.call("subscribe", {"room": dm["room"]})
    await ann.call("message", {"text": "the secret plan", "room": dm["room"]})
    await ann.send("the public plan")

    for token in (tokens["ann"], tokens["bob"]):
        assert set(texts((await api_search(server, token, q="plan"))[1])) == {
            "the secret plan",
            "the public plan",
        }
    # A third account, an admin, a guest, and a filter naming the room: not theirs.
    for token in (tokens["boss"], None):
        assert texts((await api_search(server, token, q="plan"))[1]) == ["the public plan"]
        assert texts((await api_search(server, token, q="plan", room=dm["room"]))[1]) == []
    guest = make_client()
    await guest.connect(server.url, room="lobby", name="gus")
    assert texts(await guest.call("search", {"q": "secret"})) == []


def test_a_query_reads_words_phrases_and_filters() -> None:
    query = parse_query('Deploy "Release Train" from:@Bob in:#Ops after:2026-01-02 x')
    assert query.words == ("deploy", "x") and query.phrases == (("release", "train"),)
    assert (query.sender, query.room, query.after) == ("Bob", "ops", 1767312000000)
    # An unclosed quote runs to the end; an unknown key is words.
    assert parse_query('"half open').phrases == (("half", "open"),)
    assert parse_query("http://example.com").words == ("http", "example", "com")
    with pytest.raises(ProtocolError):
        parse_query(None)


def test_a_snippet_is_bounded_and_marks_each_match() -> None:
    text = "x " * 200 + "the Needle here" + " y" * 200
    pieces = snippet(text, ["needle"])
    assert pieces[0] == ["…", False] and pieces[-1] == ["…", False]
    assert ["Needle", True] in pieces
    assert sum(len(p[0]) for p in pieces) <= 162


async def test_without_a_filter_the_newest_matches_are_ranked(db: str) -> None:
    """A word in thousands of messages: unfiltered, the best of the newest RANKED matches
    come first (the old best one is not scored); a filter ranks every match it keeps."""
    store = open_store(db)
    await store.open()
    try:
        now = now_ms()
        old = Message(1, "team", "ann", "deploy deploy deploy deploy", now - 10**9, "g:ann")
        rest = [
            Message(i, "team", "bob", f"deploy number {i}", now - 10**6 + i, "g:bob")
            for i in range(2, RANKED + 102)
        ]
        await store.restore("team", [old, *rest])
        found = await store.search(parse_query("deploy"), None, 5, 0)
        assert len(found) == 5 and old.id not in [m.id for m in found]
        filtered = await store.search(parse_query("deploy in:team"), None, 5, 0)
        assert filtered[0].id == old.id
        assert (await store.search(parse_query("deploy from:ann"), None, 5, 0))[0].id == old.id
    finally:
        await store.close()
