"""Moderation: admins ban an account or a guest's address, for a while or until lifted;
a ban reaches every process within a second; every act is in the moderation log."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from .support import Server
from .test_bots import _bots, add_bot, webhook
from .test_sign_in import add_account, cookie, post_sign_in, sign_in
from .test_users_cli import users


async def api(
    server: Server, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Origin": server.url, **(cookie(token) if token else {})}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def admin_and_ann(server: Server, db: str | None = None) -> tuple[str, str]:
    """Sign-ins of an admin ("boss") and of a member ("ann")."""
    db = db or server.db
    await add_account(db, "boss", "boss's password")
    await asyncio.to_thread(users, "promote", "boss", "--db", db)
    await add_account(db, "ann", "ann's password")
    return await sign_in(server, "boss", "boss's password"), await sign_in(
        server, "ann", "ann's password"
    )


async def test_a_banned_account_is_disconnected_and_kept_out_until_lifted(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    boss, ann = await admin_and_ann(server)
    client = make_client(headers=cookie(ann))
    await client.connect(server.url, room="team")
    assert await api(server, "POST", "/api/bans", ann, {"handle": "boss"}) == (
        403,
        {"error": "only admins moderate"},
    )
    assert (await api(server, "POST", "/api/bans", None, {"handle": "ann"}))[0] == 401
    status, ban = await api(server, "POST", "/api/bans", boss, {"handle": "ANN", "reason": "spam"})
    assert status == 201 and (ban["kind"], ban["until"], ban["reason"]) == ("account", None, "spam")
    await client.wait_for("disconnect")
    # Her sign-ins ended; signing in again says why not.
    status, _, _, page = await post_sign_in(server, "ann", "ann's password")
    assert status == 403 and "banned from this server: spam" in page
    assert (await api(server, "GET", "/api/bans", boss))[1] == [ban]
    status, _ = await api(server, "DELETE", f"/api/bans/{ban['id']}", boss)
    assert status == 200
    assert (await post_sign_in(server, "ann", "ann's password"))[0] == 303
    assert await api(server, "DELETE", f"/api/bans/{ban['id']}", boss) == (
        404,
        {"error": "no such ban"},
    )
    log = (await api(server, "GET", "/api/modlog", boss))[1]
    assert [(e["actor"], e["action"], e["target"]) for e in log] == [
        ("boss", "unban", ban["id"]),
        ("boss", "ban", "ann"),
    ]
    assert log[1]["detail"] == "until lifted; spam"


async def test_a_guest_is_banned_by_address(start_server, make_client) -> None:
    server: Server = await start_server("--trust-proxy")
    boss, _ = await admin_and_ann(server)
    spammer = make_client(headers={"X-Forwarded-For": "203.0.113.9"})
    await spammer.connect(server.url, room="team", name="spammer")
    status, ban = await api(
        server, "POST", "/api/bans", boss, {"address": "203.0.113.9", "minutes": 60}
    )
    assert status == 201 and ban["until"] - ban["created"] == 3_600_000
    await spammer.wait_for("disconnect")
    again = make_client(headers={"X-Forwarded-For": "203.0.113.9"})
    assert await again.connect_refused(server.url, room="team", name="new name") == (
        "banned from this server"
    )
    other = make_client(headers={"X-Forwarded-For": "203.0.113.10"})
    await other.connect(server.url, room="team", name="someone else")


async def test_bad_ban_requests_say_why(start_server) -> None:
    server: Server = await start_server()
    boss, _ = await admin_and_ann(server)
    for body, error in [
        ({}, "ban a handle or an address, one of them"),
        ({"handle": "ann", "address": "10.0.0.1"}, "ban a handle or an address, one of them"),
        ({"handle": "nobody"}, "no account with the handle 'nobody'"),
        ({"handle": "boss"}, "you cannot ban yourself"),
        ({"address": "not an address"}, "invalid address: 'not an address'"),
        ({"handle": "ann", "minutes": 0}, "minutes must be more than 0 and at most ten years"),
        ({"handle": "ann", "minutes": "5"}, "send {handle | address, minutes?, reason?}"),
        (["ann"], "send {handle | address, minutes?, reason?}"),
    ]:
        assert await api(server, "POST", "/api/bans", boss, body) == (400, {"error": error})
    assert (await api(server, "GET", "/api/bans", boss))[1] == []
    assert (await api(server, "GET", "/api/modlog", boss))[1] == []


async def test_a_banned_bot_cannot_post(start_server) -> None:
    server: Server = await start_server()
    boss, _ = await admin_and_ann(server)
    token = await add_bot(server, "noisy-bot")
    assert (await webhook(server, "builds", {"text": "hi"}, token))[0] == 201
    await api(server, "POST", "/api/bans", boss, {"handle": "noisy-bot"})
    # Its tokens ended with the ban; one made since is refused while the ban lasts.
    assert (await webhook(server, "builds", {"text": "hi"}, token))[0] == 401
    made = await asyncio.to_thread(_bots, "token", "noisy-bot", "--db", server.db)
    fresh = made.stdout.splitlines()[-1]
    assert await webhook(server, "builds", {"text": "hi"}, fresh) == (
        403,
        {"error": "banned from this server"},
    )


async def test_a_ban_reaches_every_process(cluster, make_client, pg_url: str) -> None:
    one, two = await cluster(2)
    boss, ann = await admin_and_ann(one, pg_url)
    client = make_client(headers=cookie(ann))
    await client.connect(two.url, room="team")
    assert (await api(one, "POST", "/api/bans", boss, {"handle": "ann"}))[0] == 201
    await client.wait_for("disconnect")
    assert (await post_sign_in(two, "ann", "ann's password"))[0] == 403
