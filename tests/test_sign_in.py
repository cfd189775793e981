"""Signing in: a browser's sign-in is a server-side row behind an HttpOnly cookie, its
Socket.IO connection is the account's, nobody else may use the handle, and ending a
sign-in (here, elsewhere, from the command line, on another process) ends its sockets."""

from __future__ import annotations

import asyncio
import re
from http.cookies import SimpleCookie

import aiohttp
import pytest

from chatapp.accounts import Accounts
from chatapp.passwords import Passwords
from chatapp.signin import token_hash
from chatapp.store import SignIn, open_store
from chatapp.store.base import now_ms

from .conftest import NO_RATE_LIMITS
from .support import Client, Server
from .test_users_cli import users

PASSWORDS = Passwords()
SIGNED_OUT = "signed out: sign in again, or reload the page to chat as a guest"


async def add_account(db: str, handle: str, password: str, display_name: str | None = None):
    store = open_store(db)
    await store.open()
    try:
        return await Accounts(store, PASSWORDS).add(
            handle, await PASSWORDS.hash(password), display_name=display_name
        )
    finally:
        await store.close()


async def post_sign_in(
    server: Server, handle: str, password: str, headers: dict[str, str] | None = None
) -> tuple[int, str | None, SimpleCookie, str]:
    """(status, Location, the Set-Cookie headers, the body) of a sign-in form post."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/signin",
            data={"handle": handle, "password": password, "next": "/r/team"},
            headers={"Origin": server.url, **(headers or {})},
            allow_redirects=False,
        ) as resp,
    ):
        jar: SimpleCookie = SimpleCookie()
        for header in resp.headers.getall("Set-Cookie", []):
            jar.load(header)
        return resp.status, resp.headers.get("Location"), jar, await resp.text()


async def sign_in(server: Server, handle: str, password: str) -> str:
    status, _, jar, body = await post_sign_in(server, handle, password)
    assert status == 303, body
    return jar["chatapp_session"].value


async def me(server: Server, token: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/api/me", headers={"Cookie": f"chatapp_session={token}"}) as resp,
    ):
        return resp.status, await resp.json()


async def post(server: Server, path: str, token: str, data: dict | None = None) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + path,
            data=data or {},
            headers={"Cookie": f"chatapp_session={token}", "Origin": server.url},
            allow_redirects=False,
        ) as resp,
    ):
        return resp.status


def cookie(token: str) -> dict[str, str]:
    """Headers carrying the sign-in cookie (a new dict each time: engine.io's client takes
    the Cookie header out of the dict it is given)."""
    return {"Cookie": f"chatapp_session={token}"}


async def test_a_signed_in_connection_is_the_account(make_client, start_server) -> None:
    server: Server = await start_server()
    ann = await add_account(server.db, "ann", "ann's password", "Ann A")
    status, _, jar, body = await post_sign_in(server, "ann", "wrong password")
    assert status == 401 and "wrong handle or password" in body and not jar
    status, location, jar, _ = await post_sign_in(server, "ANN", "ann's password")
    assert (status, location) == (303, "/r/team")
    morsel = jar["chatapp_session"]
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and morsel["path"] == "/"
    assert morsel["max-age"] == "2592000" and not morsel["secure"]  # plain HTTP here
    token = morsel.value
    status, body = await me(server, token)
    assert status == 200 and body["account"]["handle"] == "ann"
    assert [s["id"] for s in body["sign_ins"]] == [body["sign_in"]]
    assert body["sign_ins"][0]["address"] == "127.0.0.1"

    client = make_client(headers=cookie(token))
    welcome = await client.connect(server.url, room="team", name="mallory")  # name ignored
    assert (welcome["name"], welcome["user_id"], welcome["handle"]) == ("Ann A", ann.id, "ann")
    ack = await client.send("hello")
    assert (ack["message"]["name"], ack["message"]["user_id"]) == ("Ann A", ann.id)
    assert await client.call("rename", {"name": "Annie"}) == {
        "ok": False,
        "error": "signed in: your name is your account's display name",
    }
    assert ack["message"]["handle"] == "ann" and "bot" not in ack["message"]
    guest = make_client()
    welcome = await guest.connect(server.url, room="team", name="Bo")
    assert welcome["handle"] is None and welcome["guest"] and welcome["user_id"].startswith("n:")
    assert [(m["name"], m["user_id"], m.get("handle")) for m in welcome["history"]] == [
        ("Ann A", ann.id, "ann")
    ]
    # Everyone is shown who is who: presence, typing and messages carry it.
    assert welcome["people"] == [
        {"user_id": ann.id, "name": "Ann A", "handle": "ann"},
        {"user_id": welcome["user_id"], "name": "Bo"},  # a guest: no handle
    ]
    assert (await client.call("typing", {"typing": True}))["ok"]
    typing = await guest.wait_for("typing")
    assert typing == {"name": "Ann A", "user_id": ann.id, "handle": "ann", "typing": True}
    assert "handle" not in (await guest.send("hi from a guest"))["message"]


@pytest.mark.parametrize("name", ["ann", "ANN", "\u0430nn", "\uff41nn"])
async def test_a_guest_cannot_use_an_accounts_handle_or_a_look_alike(
    make_client, start_server, name: str
) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    reason = await make_client().connect_refused(server.url, room="team", name=name)
    assert reason == f"the name {name!r} belongs to an account: sign in to use it"
    guest = make_client()
    await guest.connect(server.url, room="team", name="anne")
    assert await guest.call("rename", {"name": name}) == {
        "ok": False,
        "error": f"the name {name!r} belongs to an account: sign in to use it",
    }


async def test_signing_out_ends_that_sign_in_and_disconnects_its_sockets(
    make_client, start_server
) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    laptop, phone = (
        await sign_in(server, "ann", "ann's password"),
        await sign_in(server, "ann", "ann's password"),
    )
    on_laptop, on_phone = make_client(headers=cookie(laptop)), make_client(headers=cookie(phone))
    await on_laptop.connect(server.url, room="team")
    await on_phone.connect(server.url, room="team")
    assert len((await me(server, laptop))[1]["sign_ins"]) == 2

    assert await post(server, "/signout", laptop) == 303
    assert (await me(server, laptop))[0] == 401
    await on_laptop.wait_for("disconnect")
    assert await make_client(headers=cookie(laptop)).connect_refused(server.url) == SIGNED_OUT
    # The phone stays signed in and connected.
    status, body = await me(server, phone)
    assert status == 200 and len(body["sign_ins"]) == 1
    assert (await on_phone.send("still here"))["ok"]

    assert await post(server, "/signout", phone, {"all": "1"}) == 303
    await on_phone.wait_for("disconnect")
    assert (await me(server, phone))[0] == 401


async def test_a_socket_connecting_while_the_sign_ins_are_checked_stays(
    make_client, start_server
) -> None:
    """Once a second the server asks the database which of its sockets' sign-ins have
    ended; a socket that connects while it waits for the answer was not asked about, and
    is not taken for signed out. Sockets of new sign-ins connect back to back through
    several checks; then a sign-out, noticed by a later check, shows the checks have run."""
    server: Server = await start_server(
        *NO_RATE_LIMITS, "--max-connections-per-ip", "0", "--max-tcp-connections-per-ip", "0"
    )
    ann = await add_account(server.db, "ann", "ann's password")
    tokens = [f"token-{i}" for i in range(3000)]
    store = open_store(server.db)
    await store.open()
    try:
        # Many accounts make each check's reading of them take a while: sockets connecting
        # meanwhile are the ones a check must not judge.
        accounts = Accounts(store, PASSWORDS)
        await asyncio.gather(*(accounts.add(f"user{i}", None) for i in range(5000)))
        now = now_ms()
        for i, token in enumerate(tokens):
            sign_in_row = SignIn(f"s{i}", ann.id, now, now + 86_400_000, "127.0.0.1", "test")
            await store.add_sign_in(sign_in_row, token_hash(token))
    finally:
        await store.close()
    loop = asyncio.get_running_loop()
    until = loop.time() + 3.5  # three checks or more (how long, not how fast)
    clients: list[Client] = []

    async def connect_back_to_back() -> None:
        while loop.time() < until and tokens:
            client = make_client(headers=cookie(tokens.pop()))
            await client.connect(server.url, room="team")
            clients.append(client)

    await asyncio.gather(*(connect_back_to_back() for _ in range(8)))
    ending = await sign_in(server, "ann", "ann's password")
    last = make_client(headers=cookie(ending))
    await last.connect(server.url, room="team")
    assert await post(server, "/signout", ending) == 303
    await last.wait_for("disconnect")
    dropped = [c for c in clients if c.of("disconnect")]
    assert not dropped, f"{len(dropped)} of {len(clients)} sockets taken for signed out"


async def test_one_sign_in_ends_another(start_server) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    await add_account(server.db, "bob", "bob's password")
    lost, kept = (
        await sign_in(server, "ann", "ann's password"),
        await sign_in(server, "ann", "ann's password"),
    )
    bob = await sign_in(server, "bob", "bob's password")
    lost_id = (await me(server, lost))[1]["sign_in"]
    # Another account cannot end it.
    assert await post(server, f"/api/me/sign-ins/{lost_id}/end", bob) == 404
    assert (await me(server, lost))[0] == 200
    assert await post(server, f"/api/me/sign-ins/{lost_id}/end", kept) == 200
    assert (await me(server, lost))[0] == 401
    assert (await me(server, kept))[0] == 200
    assert await post(server, f"/api/me/sign-ins/{lost_id}/end", "no-such-token") == 401


async def test_a_password_set_from_the_command_line_signs_the_account_out(
    make_client, start_server
) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    token = await sign_in(server, "ann", "ann's password")
    client = make_client(headers=cookie(token))
    await client.connect(server.url, room="team")
    changed = await asyncio.to_thread(
        users, "set-password", "ann", "--db", server.db, stdin="a new password\n"
    )
    assert changed.returncode == 0, changed.stderr
    await client.wait_for("disconnect")  # the server noticed, without being told
    assert (await me(server, token))[0] == 401
    assert (await post_sign_in(server, "ann", "ann's password"))[0] == 401
    assert (await post_sign_in(server, "ann", "a new password"))[0] == 303


async def test_an_account_removed_from_the_command_line_is_signed_out(
    make_client, start_server
) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    token = await sign_in(server, "ann", "ann's password")
    client = make_client(headers=cookie(token))
    await client.connect(server.url, room="team")
    removed = await asyncio.to_thread(users, "remove", "ann", "--db", server.db)
    assert removed.returncode == 0, removed.stderr
    await client.wait_for("disconnect")
    assert (await me(server, token))[0] == 401


async def test_failed_sign_ins_are_throttled_per_address_and_per_account(start_server) -> None:
    server: Server = await start_server("--trust-proxy")
    await add_account(server.db, "ann", "ann's password")
    await add_account(server.db, "bob", "bob's password")

    def from_(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    # Ten wrong guesses from one address: the eleventh attempt is refused, right or wrong.
    for i in range(10):
        assert (await post_sign_in(server, f"nobody{i}", "guess", from_("10.0.0.1")))[0] == 401
    status, _, _, body = await post_sign_in(server, "ann", "ann's password", from_("10.0.0.1"))
    assert status == 429 and "too many failed attempts, retry in" in body
    # Ten wrong guesses at one account, each from another address: that account is refused
    # (whatever case or look-alike its handle is written in), others are not.
    for i in range(10):
        assert (await post_sign_in(server, "bob", "guess", from_(f"10.0.1.{i}")))[0] == 401
    for handle in ("bob", "BOB"):
        status, _, _, _ = await post_sign_in(server, handle, "bob's password", from_("10.0.2.1"))
        assert status == 429
    assert (await post_sign_in(server, "ann", "ann's password", from_("10.0.2.1")))[0] == 303
    assert "failed to sign in (from this address) 10 times" in server.log()


async def test_the_cookie_is_secure_behind_an_https_proxy(start_server) -> None:
    server: Server = await start_server("--trust-proxy")
    await add_account(server.db, "ann", "ann's password")
    status, _, jar, _ = await post_sign_in(
        server, "ann", "ann's password", {"X-Forwarded-Proto": "https"}
    )
    assert status == 303 and jar["chatapp_session"]["secure"]


async def test_a_sign_in_from_another_origin_is_refused(start_server) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    status, _, jar, _ = await post_sign_in(
        server, "ann", "ann's password", {"Origin": "http://evil.example"}
    )
    assert status == 403 and not jar


async def test_the_page_shows_who_is_signed_in_and_forgets_an_ended_sign_in(
    start_server,
) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password", "Ann A")
    token = await sign_in(server, "ann", "ann's password")

    async def page(cookie: str | None) -> tuple[str, list[str]]:
        headers = {"Cookie": f"chatapp_session={cookie}"} if cookie else {}
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.url + "/r/team", headers=headers) as resp,
        ):
            return await resp.text(), resp.headers.getall("Set-Cookie", [])

    html, cookies = await page(token)
    assert 'data-handle="ann" data-display-name="Ann A"' in html
    assert 'action="/signout"' in html and "/signin?next" not in html and not cookies
    html, _ = await page(None)
    assert 'href="/signin?next=/r/team"' in html and "data-handle" not in html
    assert await post(server, "/signout", token) == 303
    html, cookies = await page(token)
    assert "data-handle" not in html
    assert any(re.match(r'chatapp_session=""?;.*Max-Age=0', c) for c in cookies), cookies


async def test_a_sign_out_reaches_a_socket_on_another_process(
    cluster, make_client, pg_url: str
) -> None:
    """Two processes sharing PostgreSQL and Redis: a sign-out on one ends the sign-in's
    socket on the other."""
    one, two = await cluster(2)
    await add_account(pg_url, "ann", "ann's password")
    token = await sign_in(one, "ann", "ann's password")
    client = make_client(headers=cookie(token))
    welcome = await client.connect(two.url, room="team")
    assert welcome["handle"] == "ann"
    assert await post(one, "/signout", token) == 303
    await client.wait_for("disconnect")
    assert await make_client(headers=cookie(token)).connect_refused(two.url) == SIGNED_OUT


async def get_page(server: Server, path: str, token: str | None) -> tuple[int, str, str | None]:
    """GET a page with the sign-in ``token`` (none: signed out): status, HTML, Location."""
    headers = cookie(token) if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + path, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.text(), resp.headers.get("Location")


async def account_page(server: Server, token: str | None) -> tuple[int, str, str | None]:
    return await get_page(server, "/account", token)


async def post_form(
    server: Server, path: str, token: str, data: dict[str, str]
) -> tuple[int, str | None, SimpleCookie, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + path,
            data=data,
            headers={**cookie(token), "Origin": server.url},
            allow_redirects=False,
        ) as resp,
    ):
        jar: SimpleCookie = SimpleCookie()
        for header in resp.headers.getall("Set-Cookie", []):
            jar.load(header)
        return resp.status, resp.headers.get("Location"), jar, await resp.text()


async def test_the_account_page_lists_sign_ins_and_ends_any(start_server) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    assert (await account_page(server, None))[::2] == (303, "/signin?next=/account")
    laptop, phone = (
        await sign_in(server, "ann", "ann's password"),
        await sign_in(server, "ann", "ann's password"),
    )
    status, html, _ = await account_page(server, laptop)
    assert status == 200 and "@ann" in html
    assert html.count('action="/account/sign-ins/') == 2 and html.count("this browser") == 1
    phone_id = (await me(server, phone))[1]["sign_in"]
    status, location, _, _ = await post_form(
        server, f"/account/sign-ins/{phone_id}/end", laptop, {}
    )
    assert (status, location) == (303, "/account")
    assert (await me(server, phone))[0] == 401 and (await me(server, laptop))[0] == 200
    laptop_id = (await me(server, laptop))[1]["sign_in"]
    status, location, jar, _ = await post_form(
        server, f"/account/sign-ins/{laptop_id}/end", laptop, {}
    )
    assert (status, location) == (303, "/") and jar["chatapp_session"]["max-age"] == "0"
    assert (await me(server, laptop))[0] == 401


async def test_changing_the_password_signs_out_everywhere_else(start_server) -> None:
    server: Server = await start_server()
    await add_account(server.db, "ann", "ann's password")
    here, elsewhere = (
        await sign_in(server, "ann", "ann's password"),
        await sign_in(server, "ann", "ann's password"),
    )

    def form(current: str, new: str, again: str | None = None) -> dict[str, str]:
        return {"current": current, "password": new, "password_again": again or new}

    status, _, _, html = await post_form(
        server, "/account/password", here, form("wrong password", "a new password")
    )
    assert status == 401 and "wrong handle or password" in html
    status, _, _, html = await post_form(
        server, "/account/password", here, form("ann's password", "a new password", "typo")
    )
    assert status == 400 and "the two new passwords differ" in html
    status, _, _, html = await post_form(
        server, "/account/password", here, form("ann's password", "short")
    )
    assert status == 400 and "invalid password" in html
    assert (await me(server, elsewhere))[0] == 200  # nothing changed yet
    status, location, jar, _ = await post_form(
        server, "/account/password", here, form("ann's password", "a new password")
    )
    assert (status, location) == (303, "/account")
    renewed = jar["chatapp_session"].value
    assert (await me(server, renewed))[0] == 200
    assert (await me(server, here))[0] == 401 and (await me(server, elsewhere))[0] == 401
    assert (await post_sign_in(server, "ann", "ann's password"))[0] == 401
    assert (await post_sign_in(server, "ann", "a new password"))[0] == 303
