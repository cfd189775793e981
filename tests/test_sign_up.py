"""Creating accounts from the page: the first admin's claim link, admins' invite links,
open sign-up, and a server without guests."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from chatapp.accounts import AccountError, Accounts
from chatapp.handles import handle_keys
from chatapp.signup import Invites, invite_hash
from chatapp.store import Account, InviteInvalid, open_store
from chatapp.store.base import now_ms

from .support import Server
from .test_accounts import PASSWORDS, OpenAccounts, accounts, open_accounts  # noqa: F401
from .test_sign_in import add_account, cookie, me, sign_in
from .test_users_cli import users

CLAIM_RE = re.compile(r"no admin yet: whoever opens (http://\S+/join/\S+) first")
GONE = "This invite link was used already, or has expired."


async def create(
    server: Server, path: str, handle: str, password: str = "a good password", **extra: str
) -> tuple[int, str | None, str]:
    """Post the account form at ``path``: (status, the sign-in cookie, the page)."""
    data = {"handle": handle, "password": password, "password_again": password, **extra}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + path, data=data, headers={"Origin": server.url}, allow_redirects=False
        ) as resp,
    ):
        morsel = resp.cookies.get("chatapp_session")
        return resp.status, morsel.value if morsel else None, await resp.text()


async def get(server: Server, path: str, token: str | None = None) -> tuple[int, str]:
    headers = cookie(token) if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + path, headers=headers, allow_redirects=False) as resp,
    ):
        return resp.status, await resp.text()


async def post_json(server: Server, path: str, token: str | None) -> tuple[int, dict]:
    headers = {"Origin": server.url, **(cookie(token) if token else {})}
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + path, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_the_first_to_open_the_claim_link_becomes_the_admin(start_server) -> None:
    server: Server = await start_server()
    (claim,) = CLAIM_RE.findall(server.log())
    path = claim.removeprefix(server.url)
    status, page = await get(server, path)
    assert status == 200 and "will be its admin" in page
    status, token, _ = await create(server, path, "boss", display_name="The Boss")
    assert status == 303 and token is not None
    account = (await me(server, token))[1]["account"]
    assert (account["handle"], account["display_name"], account["role"]) == (
        "boss",
        "The Boss",
        "admin",
    )
    # Used: nobody else becomes admin with it.
    assert await get(server, path) == (404, (await get(server, path))[1])
    status, token, page = await create(server, path, "mallory")
    assert status == 404 and token is None and GONE in page
    # A server with an admin prints no claim link.
    await server.stop()
    again = await server.start()
    assert len(CLAIM_RE.findall(again.log())) == 1


async def test_a_claim_link_is_dead_once_an_admin_exists(start_server) -> None:
    server: Server = await start_server()
    (claim,) = CLAIM_RE.findall(server.log())
    added = await asyncio.to_thread(
        users, "add", "root", "--admin", "--db", server.db, stdin="root's password\n"
    )
    assert added.returncode == 0
    status, token, page = await create(server, claim.removeprefix(server.url), "mallory")
    assert (status, token) == (404, None) and GONE in page


async def test_an_admin_invites_and_the_invited_person_joins(start_server) -> None:
    server: Server = await start_server()
    await add_account(server.db, "boss", "boss's password")
    await asyncio.to_thread(users, "promote", "boss", "--db", server.db)
    await add_account(server.db, "ann", "ann's password")
    boss, ann = (
        await sign_in(server, "boss", "boss's password"),
        await sign_in(server, "ann", "ann's password"),
    )
    assert await post_json(server, "/api/invites", None) == (401, {"error": "not signed in"})
    assert await post_json(server, "/api/invites", ann) == (403, {"error": "only admins invite"})
    status, made = await post_json(server, "/api/invites", boss)
    assert status == 200 and made["url"] == server.url + made["path"]
    assert made["invite"]["expires"] - made["invite"]["created"] == 7 * 86_400_000
    # The form says what is wrong and keeps what was typed.
    status, _, page = await create(server, made["path"], "bo b")
    assert status == 400 and "invalid handle: must not contain spaces or @" in page
    assert 'value="bo b"' in page
    status, _, page = await create(server, made["path"], "bob", password_again="something else")
    assert status == 400 and "the two passwords differ" in page
    status, _, page = await create(server, made["path"], "\u0430nn")
    assert status == 400 and "is taken" in page
    status, token, _ = await create(server, made["path"], "bob")
    assert status == 303
    assert (await me(server, token))[1]["account"]["role"] == "member"
    assert (await create(server, made["path"], "carol"))[0] == 404  # single use
    # The page's Invite button: an HTML page with the link, for admins only.
    _, html = await get(server, "/r/team", boss)
    assert 'action="/invite"' in html
    _, html = await get(server, "/r/team", ann)
    assert 'action="/invite"' not in html


async def test_the_command_line_makes_invite_links(start_server) -> None:
    server: Server = await start_server("--sign-up", "closed")
    made = await asyncio.to_thread(users, "invite", "--admin", "--db", server.db)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0] == "an invite for one admin account, good for 7 days:"
    status, token, _ = await create(server, lines[1], "second-admin")
    assert status == 303
    assert (await me(server, token))[1]["account"]["role"] == "admin"
    bad = await asyncio.to_thread(users, "invite", "--days", "0", "--db", server.db)
    assert bad.returncode == 1 and "--days must be more than 0" in bad.stderr


async def test_open_sign_up_is_throttled_per_address(start_server) -> None:
    server: Server = await start_server("--sign-up", "open")
    status, page = await get(server, "/signin")
    assert 'href="/signup"' in page
    for i in range(5):
        status, token, page = await create(server, "/signup", f"person{i}")
        assert status == 303, page
    status, token, page = await create(server, "/signup", "person5")
    assert status == 429 and token is None
    assert "too many new accounts from your address, retry in" in page


async def test_simultaneous_sign_ups_from_one_address_make_no_more_than_allowed(
    start_server,
) -> None:
    """The sixth account is refused even when all are asked for at the same moment; an
    attempt that makes no account does not count."""
    server: Server = await start_server("--sign-up", "open")
    status, _, page = await create(server, "/signup", "taken", password="short")
    assert status == 400, page
    outcomes = await asyncio.gather(*(create(server, "/signup", f"rush{i}") for i in range(8)))
    assert sorted(status for status, _, _ in outcomes) == [303] * 5 + [429] * 3


@pytest.mark.parametrize("policy", ["invite", "closed"])
async def test_sign_up_is_only_by_invite_unless_open(start_server, policy: str) -> None:
    server: Server = await start_server("--sign-up", policy)
    status, page = await get(server, "/signup")
    assert status == 404 and "by invitation only" in page
    assert (await create(server, "/signup", "someone"))[0] == 404
    status, page = await get(server, "/signin")
    assert 'href="/signup"' not in page


async def test_closed_sign_up_lets_no_admin_invite(start_server) -> None:
    server: Server = await start_server("--sign-up", "closed")
    await add_account(server.db, "boss", "boss's password")
    await asyncio.to_thread(users, "promote", "boss", "--db", server.db)
    boss = await sign_in(server, "boss", "boss's password")
    assert await post_json(server, "/api/invites", boss) == (
        403,
        {"error": "sign-up is closed on this server"},
    )


async def test_without_guests_everyone_signs_in(make_client, start_server) -> None:
    server: Server = await start_server("--no-guests")
    reason = await make_client().connect_refused(server.url, room="team", name="Bo")
    assert reason == "sign in to chat: this server has no guests"
    status, _ = await get(server, "/r/team")
    assert status == 303
    status, page = await get(server, "/signin?next=/r/team")
    assert "Continue as a guest" not in page
    await add_account(server.db, "ann", "ann's password")
    token = await sign_in(server, "ann", "ann's password")
    assert (await get(server, "/r/team", token))[0] == 200
    welcome = await make_client(headers=cookie(token)).connect(server.url, room="team")
    assert welcome["handle"] == "ann"


async def test_an_invite_is_good_until_it_expires_and_for_one_account(
    open_accounts: OpenAccounts,  # noqa: F811
    db: str,
) -> None:
    first, second = await open_accounts(), await open_accounts()
    store = open_store(db)
    await store.open()
    try:
        path, invite = await Invites(store).create("member", days=1)
        token = path.removeprefix("/join/")
        assert await store.find_invite(invite_hash(token), now_ms()) == invite
        later = invite.expires + 1
        assert await store.find_invite(invite_hash(token), later) is None
        account = Account("u:x", "late", "late", "member", later)
        with pytest.raises(InviteInvalid):
            await store.redeem_invite(invite_hash(token), later, account, handle_keys("late"), None)
        # Two people using one invite at the same moment: one account.
        outcomes = await asyncio.gather(
            first.add("one", None, invite_hash=invite_hash(token)),
            second.add("two", None, invite_hash=invite_hash(token)),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["Account", "AccountError"]
        assert [str(o) for o in outcomes if isinstance(o, AccountError)] == [
            "this invite link was used already, or has expired"
        ]
        assert len(await first.all()) == 1
    finally:
        await store.close()


async def test_a_claim_is_good_only_while_there_is_no_admin(
    accounts: Accounts,  # noqa: F811
    db: str,
) -> None:
    store = open_store(db)
    await store.open()
    try:
        invites = Invites(store)
        path = await invites.make_claim()
        assert path is not None and invites.claim_path == path
        await accounts.add("root", None, role="admin")
        assert await store.find_invite(invite_hash(path.removeprefix("/join/")), now_ms()) is None
        assert await invites.make_claim() is None and invites.claim_path is None
    finally:
        await store.close()
