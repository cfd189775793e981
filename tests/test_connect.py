"""Connecting: auth validation, defaults and the welcome."""

from __future__ import annotations

import re

import pytest

from .support import Client, Server


async def test_defaults_to_the_lobby_with_a_guest_name(server: Server, make_client) -> None:
    welcome = await make_client().connect(server.url)
    assert welcome["room"] == "lobby"
    assert re.fullmatch(r"guest-[0-9a-f]{4}", welcome["name"])
    assert welcome["users"] == [welcome["name"]]
    assert welcome["history"] == []
    assert welcome["has_more"] is False


async def test_room_is_lowercased_and_name_trimmed(server: Server, make_client) -> None:
    welcome = await make_client().connect(server.url, room="Team-1_x", name="  Ann Lee  ")
    assert welcome["room"] == "team-1_x"
    assert welcome["name"] == "Ann Lee"
    assert welcome["users"] == ["Ann Lee"]


async def test_unicode_names_are_accepted(server: Server, make_client) -> None:
    welcome = await make_client().connect(server.url, name="Zoë 🐱")
    assert welcome["name"] == "Zoë 🐱"
    # Emoji sequences joined by ZWJ and flags made of tag characters are names too.
    for name in (
        "👩\u200d💻 dev",
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    ):
        assert (await make_client().connect(server.url, name=name))["name"] == name


async def test_names_are_normalised_to_nfc(server: Server, make_client) -> None:
    """ "Amélie" typed with a combining accent and with the precomposed letter is one name."""
    welcome = await make_client().connect(server.url, name="Ame\u0301lie")
    assert welcome["name"] == "Am\u00e9lie"


NAME_INVISIBLE = "invalid name: must not contain invisible or text-direction characters"
NAME_BLANK = "invalid name: must contain a visible character"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("evil \u202enimda", NAME_INVISIBLE),  # shows as "evil admin"
        ("\u2066ann\u2069", NAME_INVISIBLE),  # isolates
        ("ann\u200f", NAME_INVISIBLE),  # right-to-left mark
        ("\u200b", NAME_INVISIBLE),  # zero-width space only
        ("a\u200bnn", NAME_INVISIBLE),
        ("\ufeffann", NAME_INVISIBLE),  # byte order mark
        ("ann\u2028bo", NAME_INVISIBLE),  # line separator
        ("ann\u2029bo", NAME_INVISIBLE),  # paragraph separator
        ("ann\u00ad", NAME_INVISIBLE),  # soft hyphen
        ("\u200d", NAME_BLANK),  # a lone joiner draws nothing
        ("\u0301\u0301\u0301", NAME_BLANK),  # combining marks only
        ("\u3164", NAME_BLANK),  # Hangul filler: a "letter" that renders blank
        ("\u2800\u2800", NAME_BLANK),  # braille blank
        ("\u0301ann", "invalid name: must not start with a combining mark"),
    ],
)
async def test_names_that_render_blank_or_misleading_are_refused(
    server: Server, make_client, name: str, reason: str
) -> None:
    assert await make_client().connect_refused(server.url, name=name) == reason
    renamer = make_client()
    await renamer.connect(server.url, name="ann")
    assert await renamer.call("rename", {"name": name}) == {"ok": False, "error": reason}


@pytest.mark.parametrize("big", [2**53, 2**63 - 1, 2**63, 2**64 - 1])
async def test_ids_past_any_room_mean_up_to_date(server: Server, make_client, big: int) -> None:
    talker = make_client()
    await talker.connect(server.url, room="far")
    await talker.send("one")
    welcome = await make_client().connect(server.url, room="far", since=big)
    assert welcome["history"] == [] and welcome["has_more"] is False
    page = await talker.call("history", {"before": big})
    assert page["ok"] is True and [m["text"] for m in page["messages"]] == ["one"]


async def test_integers_json_cannot_carry_exactly_are_refused(server: Server, make_client) -> None:
    # Past 64 bits the JSON decoder reads a number as a float: not a message id.
    for huge in (2**64, 10**30):
        reason = await make_client().connect_refused(server.url, since=huge)
        assert reason == "invalid since: must be a message id (an integer >= 0)"
    talker = make_client()
    await talker.connect(server.url)
    page = await talker.call("history", {"before": 10**30})
    assert page == {"ok": False, "error": "invalid before: must be a message id (an integer >= 1)"}


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        ({"room": "-bad"}, "invalid room name: must be 1-64 of a-z 0-9 _ -"),
        ({"room": "a" * 65}, "invalid room name"),
        ({"room": "has space"}, "invalid room name"),
        ({"room": ""}, "invalid room name"),
        ({"room": 42}, "invalid room name"),
        ({"name": ""}, "invalid name: must be 1-32 characters"),
        ({"name": "   "}, "invalid name: must be 1-32 characters"),
        ({"name": "x" * 33}, "invalid name: must be 1-32 characters"),
        ({"name": "bell\x07"}, "invalid name: must not contain control characters"),
        ({"name": "new\nline"}, "invalid name: must not contain control characters"),
        ({"name": ["ann"]}, "invalid name: must be a string"),
        ({"since": -1}, "invalid since"),
        ({"since": "5"}, "invalid since"),
        ({"since": True}, "invalid since"),
    ],
)
async def test_bad_auth_is_refused_with_a_readable_reason(
    server: Server, make_client, auth: dict[str, object], reason: str
) -> None:
    message = await make_client().connect_refused(server.url, **auth)
    assert message.startswith(reason)


async def test_refused_connection_leaves_the_server_serving_others(
    server: Server, make_client
) -> None:
    ok = make_client()
    await ok.connect(server.url, name="ann")
    await make_client().connect_refused(server.url, room="NO WAY")
    ack = await ok.send("still here")
    assert ack["ok"] is True


async def test_long_polling_transport_works_too(server: Server, make_client) -> None:
    a = make_client(transports=["polling"])
    b = make_client()
    await a.connect(server.url, name="poller")
    await b.connect(server.url, name="socket")
    await b.send("to the poller")
    msg = await a.wait_for("message")
    assert msg["text"] == "to the poller"
    assert (await a.send("back"))["ok"]
    assert (await b.wait_for("message", lambda m: m["text"] == "back"))["name"] == "poller"


async def test_welcome_is_the_first_event(server: Server, make_client) -> None:
    sender = make_client()
    await sender.connect(server.url, name="sender")
    for i in range(5):
        await sender.send(f"m{i}")
    joiner: Client = make_client()
    welcome = await joiner.connect(server.url)
    assert joiner.events[0][0] == "welcome"
    assert [m["text"] for m in welcome["history"]] == [f"m{i}" for i in range(5)]
