"""Accounts on the page: signing in and out, and a guest who tries to be someone."""

from __future__ import annotations

import asyncio

from tests.conftest import ClientFactory
from tests.support import Server
from tests.test_moderation import admin_and_ann, api
from tests.test_sign_in import add_account, cookie
from tests.test_users_cli import users

from .conftest import OpenChat, expect
from .test_chat_page import send, shown


async def sign_in_on_page(page, handle: str, password: str) -> None:
    # The first visit asks for a name; the dialog offers to sign in instead.
    await page.locator("#name-sign-in").click()
    await page.locator("#handle").fill(handle)
    await page.locator("#password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_sign_in_chat_as_the_account_and_sign_out(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    await add_account(server.db, "ann", "ann's password", "Ann A")
    chat = await open_chat(server.url, "/r/team", name=None, wait_connected=False)
    page = chat.page
    await sign_in_on_page(page, "ann", "wrong password")
    await expect(page.locator("#signin-error")).to_have_text("wrong handle or password")
    # The refusal is a 401, which Chromium logs; nothing else may be.
    chat.errors.remove(next(e for e in chat.errors if "status of 401" in e))
    await page.locator("#handle").fill("ANN")
    await page.locator("#password").fill("ann's password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(server.url + "/r/team")
    # No name to choose: the account's display name is used.
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#my-name")).to_have_text("Ann A")
    await expect(page.locator("#sign-out")).to_contain_text("@ann")
    await expect(page.locator("#change-name")).to_be_disabled()
    await send(page, "signed in and chatting")
    (mine,) = await shown(page)
    assert (mine["name"], mine["text"], mine["mine"]) == ("Ann A", "signed in and chatting", True)

    bo = make_client()
    welcome = await bo.connect(server.url, room="team", name="Bo")
    (seen,) = welcome["history"]
    assert (seen["name"], seen["user_id"].startswith("u:")) == ("Ann A", True)

    await page.locator("#sign-out").click()
    await expect(page.locator("#sign-in")).to_be_visible()  # a guest again
    assert "chatapp_session" not in {c["name"] for c in await chat.context.cookies()}


async def test_a_guest_who_takes_an_accounts_handle_is_asked_for_another_name(
    server: Server, open_chat: OpenChat
) -> None:
    await add_account(server.db, "ann", "ann's password")
    chat = await open_chat(server.url, "/r/team", name="\u0430nn", wait_connected=False)
    page = chat.page
    await expect(page.locator("#name-error")).to_have_text(
        "the name '\u0430nn' belongs to an account: sign in to use it"
    )
    await page.locator("#name-input").fill("Ann the guest")
    await page.locator("#name-input").press("Enter")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await send(page, "hello as a guest")


async def test_sign_up_by_invite_lands_in_the_chat_signed_in(
    server: Server, open_chat: OpenChat
) -> None:
    made = await asyncio.to_thread(users, "invite", "--db", server.db)
    path = made.stdout.splitlines()[1]
    chat = await open_chat(server.url, path, name=None, wait_connected=False)
    page = chat.page
    await page.locator("#handle").fill("zoe")
    await page.locator("#display_name").fill("Zoë Z")
    await page.locator("#password").fill("zoe's password")
    await page.locator("#password_again").fill("zoe's password")
    await page.get_by_role("button", name="Create the account").click()
    await expect(page).to_have_url(server.url + "/")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#my-name")).to_have_text("Zoë Z")
    await expect(page.locator("#sign-out")).to_contain_text("@zoe")
    await send(page, "hello, I was invited")


async def test_a_private_room_is_invisible_to_a_non_member(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    boss, ann = await admin_and_ann(server)
    member = make_client(headers=cookie(ann))
    await member.connect(server.url, room="secret")
    assert (await member.send("members only"))["ok"]
    assert (await api(server, "PUT", "/api/rooms/secret/private", boss, {"members": ["ann"]}))[
        0
    ] == 200
    visitor = make_client()
    await visitor.connect(server.url, room="open-room", name="visitor")
    assert (await visitor.send("anyone can read this"))["ok"]
    chat = await open_chat(server.url, "/r/open-room", "Bo")
    page = chat.page
    await expect(page.locator('#rooms a[data-room="open-room"]')).to_have_count(1)
    await expect(page.locator('#rooms a[data-room="secret"]')).to_have_count(0)
    # Going there by its address: refused, told nothing, shown nothing.
    await page.goto(server.url + "/r/secret")
    await expect(page.locator("#status")).to_have_attribute("data-state", "refused")
    await expect(page.locator("#status-text")).to_have_text(
        "Not connected: no such room, or you are not one of its members"
    )
    await expect(page.locator("#messages .msg")).to_have_count(0)
    # The "go to a room" form says the same.
    await page.locator("#room-input").fill("secret")
    await page.locator("#room-input").press("Enter")
    await expect(page.locator("#room-error")).to_have_text(
        "no such room, or you are not one of its members"
    )
    # The form asked the history API, whose 404 Chromium logs; nothing else may be.
    chat.errors.remove(next(e for e in chat.errors if "status of 404" in e))
