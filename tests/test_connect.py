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
