"""Bots: accounts that post with a token, over Socket.IO or the incoming-webhook endpoint,
until the token is revoked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from .support import Server
from .test_users_cli import users

REFUSED = "invalid bot token"


def _bots(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatapp", "bots", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )


async def add_bot(server: Server, name: str, *extra: str) -> str:
    made = await asyncio.to_thread(_bots, "add", name, "--db", server.db, *extra)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0].startswith(f"added bot {name} (u:")
    token = made.stdout.splitlines()[-1]
    assert token.startswith("chatapp-bot-")
    return token


async def webhook(
    server: Server, room: str, body: Any, token: str | None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/api/rooms/{room}/messages",
            json=None if raw is not None else body,
            data=raw,
            headers=headers,
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_a_bot_connects_with_its_token_and_posts_as_itself(start_server, make_client) -> None:
    server: Server = await start_server()
    token = await add_bot(server, "ci-bot", "--display-name", "CI")
    bot = make_client()
    welcome = await bot.connect(server.url, room="builds", name="Ann", token=token)
    assert (welcome["name"], welcome["handle"]) == ("CI", "ci-bot")  # not "Ann"
    assert welcome["user_id"].startswith("u:")
    assert (welcome["bot"], welcome["guest"]) == (True, False)
    ack = await bot.send("build 42 passed")
    assert (ack["message"]["name"], ack["message"]["user_id"]) == ("CI", welcome["user_id"])
    assert (ack["message"]["handle"], ack["message"]["bot"]) == ("ci-bot", True)
    reader = make_client()
    seen = await reader.connect(server.url, room="builds", name="Ann")
    (shown,) = [p for p in seen["people"] if p["name"] == "CI"]
    assert (shown["handle"], shown["bot"]) == ("ci-bot", True)
    assert seen["history"][0]["bot"] is True
    assert (
        await make_client().connect_refused(server.url, token="chatapp-bot-not-a-token") == REFUSED
    )


async def test_the_webhook_posts_once_per_client_id_to_everyone_in_the_room(
    server: Server, make_client
) -> None:
    token = await add_bot(server, "ci-bot")
    reader, elsewhere = make_client(), make_client()
    await reader.connect(server.url, room="builds", name="Ann")
    await elsewhere.connect(server.url, room="lobby", name="Bo")
    status, body = await webhook(server, "builds", {"text": "deployed", "client_id": "d-1"}, token)
    assert status == 201 and body["ok"]
    message = body["message"]
    assert (message["room"], message["name"], message["text"]) == ("builds", "ci-bot", "deployed")
    assert (message["handle"], message["bot"]) == ("ci-bot", True)
    assert await reader.wait_for("message") == message
    # A retry (the CI job timed out waiting for the answer) is the same message.
    assert await webhook(server, "builds", {"text": "deployed", "client_id": "d-1"}, token) == (
        200,
        {"ok": True, "message": message},
    )
    assert (await reader.send("thanks"))["ok"]
    await reader.wait_for("message", lambda m: m["text"] == "thanks")
    assert [m["text"] for m in reader.of("message")] == ["deployed", "thanks"]
    assert elsewhere.of("message") == []


@pytest.mark.parametrize(
    ("room", "body", "raw", "status", "error"),
    [
        ("builds", {"text": ""}, None, 400, "invalid text: must be 1-2000 characters"),
        (
            "builds",
            {"text": "x" * 2001},
            None,
            400,
            "invalid text: must be 1-2000 characters",
        ),
        ("builds", None, b"{not json", 400, "invalid JSON: send {text, client_id?}"),
        ("builds", ["text"], None, 400, None),
        ("Not A Room!", {"text": "hi"}, None, 404, None),
    ],
)
async def test_a_bad_webhook_request_says_why_and_posts_nothing(
    server: Server, room: str, body: Any, raw: bytes | None, status: int, error: str | None
) -> None:
    token = await add_bot(server, "ci-bot")
    got_status, got = await webhook(server, room, body, token, raw)
    assert got_status == status, got
    if error is not None:
        assert got == {"error": error}
    assert (await webhook(server, "builds", {"text": "fine"}, token))[1]["message"]["id"] == 1


async def test_the_webhook_needs_a_bot_token(start_server) -> None:
    server: Server = await start_server()
    await add_bot(server, "ci-bot")
    for token in (None, "chatapp-bot-forged", "not-even-the-prefix"):
        assert await webhook(server, "builds", {"text": "hi"}, token) == (
            401,
            {"error": "bot token required"},
        )


async def test_the_webhook_is_rate_limited_per_bot(start_server) -> None:
    server: Server = await start_server("--message-burst", "2", "--message-rate", "0.01")
    token = await add_bot(server, "ci-bot")
    other = await add_bot(server, "other-bot")
    for i in range(2):
        assert (await webhook(server, "builds", {"text": f"m{i}"}, token))[0] == 201
    status, body = await webhook(server, "builds", {"text": "one too many"}, token)
    assert status == 429 and body["error"] == "rate limited" and body["retry_after"] > 0
    assert (await webhook(server, "builds", {"text": "another bot"}, other))[0] == 201


async def test_a_revoked_token_stops_working_everywhere(start_server, make_client) -> None:
    server: Server = await start_server()
    token = await add_bot(server, "ci-bot")
    bot = make_client()
    await bot.connect(server.url, room="builds", token=token)
    revoked = await asyncio.to_thread(_bots, "revoke", "ci-bot", "--db", server.db)
    assert revoked.stdout == "revoked 1 token(s) of ci-bot\n"
    await bot.wait_for("disconnect")
    assert await make_client().connect_refused(server.url, room="builds", token=token) == REFUSED
    assert (await webhook(server, "builds", {"text": "hi"}, token))[0] == 401
    # A new token works; the old one stays dead.
    made = await asyncio.to_thread(_bots, "token", "ci-bot", "--db", server.db)
    fresh = made.stdout.splitlines()[-1]
    assert (await webhook(server, "builds", {"text": "back"}, fresh))[0] == 201
    assert (await webhook(server, "builds", {"text": "hi"}, token))[0] == 401


async def get_status(server: Server, path: str, token: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            server.url + path,
            headers={"Authorization": f"Bearer {token}"},
            allow_redirects=False,
        ) as resp,
    ):
        return resp.status


async def test_a_bot_token_passes_a_private_servers_gate(start_server, make_client) -> None:
    server: Server = await start_server(
        "--access-token", "correct-horse-battery-staple-7f3a", "--message-burst", "100"
    )
    token = await add_bot(server, "ci-bot")
    for i in range(12):  # not taken for failed guesses at the access token
        assert (await webhook(server, "builds", {"text": f"hi {i}", "client_id": "c"}, token))[
            0
        ] in (200, 201)
    assert "failed the access token" not in server.log()
    await make_client().connect(server.url, room="builds", token=token)
    # It reads what the access token would let it read.
    assert await get_status(server, "/api/rooms", token) == 200
    # A forged one gets nowhere: not through the gate, not into the chat.
    assert await get_status(server, "/api/rooms", "chatapp-bot-forged") == 401
    assert await get_status(server, "/r/builds", "chatapp-bot-forged") == 303  # to /login
    assert (await webhook(server, "builds", {"text": "hi"}, "chatapp-bot-forged"))[0] == 401
    assert await make_client().connect_refused(server.url, token="chatapp-bot-forged") == REFUSED


async def test_bots_are_managed_only_as_bots(start_server) -> None:
    server: Server = await start_server()
    await add_bot(server, "ci-bot")
    added = await asyncio.to_thread(users, "add", "ann", "--db", server.db, stdin="password1\n")
    assert added.returncode == 0
    refused = await asyncio.to_thread(_bots, "token", "ann", "--db", server.db)
    assert refused.returncode == 1 and "ann is not a bot" in refused.stderr
    taken = await asyncio.to_thread(_bots, "add", "CI-BOT", "--db", server.db)
    assert taken.returncode == 1 and "is taken" in taken.stderr
    listed = await asyncio.to_thread(_bots, "list", "--db", server.db)
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["ci-bot"]
    promoted = await asyncio.to_thread(users, "promote", "ci-bot", "--db", server.db)
    assert promoted.returncode == 1 and "is a bot" in promoted.stderr
