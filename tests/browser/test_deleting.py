"""Deleting messages on the page: a tombstone in the message's place on every page, live,
after a reconnect, and when too much changed while away."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from tests.conftest import ClientFactory
from tests.support import Server
from tests.test_moderation import admin_and_ann
from tests.test_users_cli import users

from .conftest import OpenChat, expect
from .test_chat_page import send, shown
from .test_identity import bubble
from .test_sign_in import sign_in_on_page

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

TOMBSTONE = "message deleted"
#: The accessible name of a message's Delete button.
DELETE = "Delete message"
#: A bot's own key: a keyed client may delete its own messages.
BOT_KEY = "deleting-bot-key-0123456789"


async def delete(page: Page, text: str) -> None:
    """Delete the message whose text is ``text`` as a person does: hover it, click its
    Delete button, and confirm."""
    item = bubble(page, text)
    await item.hover()
    await item.get_by_role("button", name=DELETE).click()
    await item.get_by_role("button", name="Yes, delete").click()


def texts(page: Page) -> Locator:
    """The texts of the confirmed messages (a tombstone's is "message deleted")."""
    return page.locator("#messages .msg .text")


async def test_deleting_my_message_shows_a_tombstone_on_every_page_live(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    await send(ann.page, "hello")
    await send(ann.page, "oops, the wrong room")
    await expect(texts(bo.page)).to_have_text(["hello", "oops, the wrong room"])
    # Not Bo's to delete: no button at all on his page.
    await expect(bo.page.get_by_role("button", name=DELETE)).to_have_count(0)

    page = ann.page
    item = bubble(page, "oops, the wrong room")
    actions = item.locator(".msg-actions")
    button = item.get_by_role("button", name=DELETE)
    await expect(actions).to_have_css("opacity", "0")  # shown on hover or focus only
    await item.hover()
    await expect(actions).to_have_css("opacity", "1")
    # Asked first: Cancel, or Escape, keeps the message.
    await button.click()
    await expect(item.get_by_role("button", name="Cancel")).to_be_focused()
    await item.get_by_role("button", name="Cancel").click()
    await expect(button).to_be_focused()
    await button.press("Enter")
    await page.keyboard.press("Escape")
    await expect(button).to_be_focused()
    await expect(texts(page)).to_have_text(["hello", "oops, the wrong room"])

    await button.click()
    await item.get_by_role("button", name="Yes, delete").click()
    for chat in (ann, bo):
        await expect(texts(chat.page)).to_have_text(["hello", TOMBSTONE])
        tombstone = chat.page.locator("#messages .msg.deleted")
        await expect(tombstone).to_have_count(1)
        await expect(tombstone.locator(".text")).to_have_css("font-style", "italic")
        await expect(chat.page.locator("#messages")).not_to_contain_text("oops")
        # Still Ann's, under her first message's header; nothing left to delete in it.
        await expect(tombstone).to_have_class(re.compile(r"\bcont\b"))
        await expect(tombstone.locator(".author")).to_have_text("Ann")
        await expect(tombstone.get_by_role("button")).to_have_count(0)
    assert [m["mine"] for m in await shown(page)] == [True, True]
    # The history a page loads has it too.
    await bo.page.reload()
    await expect(bo.page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(texts(bo.page)).to_have_text(["hello", TOMBSTONE])


async def test_an_admin_deletes_anyones_message_and_others_only_their_own(
    server: Server, open_chat: OpenChat
) -> None:
    await admin_and_ann(server)
    bo = await open_chat(server.url, "/r/team", "Bo")
    cy = await open_chat(server.url, "/r/team", "Cy")
    boss = await open_chat(server.url, "/r/team", name=None, wait_connected=False)
    await sign_in_on_page(boss.page, "boss", "boss's password")
    await expect(boss.page.locator("#status")).to_have_attribute("data-state", "connected")
    await send(bo.page, "buy cheap watches")
    await send(cy.page, "a fine message")
    for chat in (bo, cy, boss):
        await expect(texts(chat.page)).to_have_text(["buy cheap watches", "a fine message"])
    # The admin may delete every message; Cy his own only.
    await expect(boss.page.get_by_role("button", name=DELETE)).to_have_count(2)
    spam_on_cy = bubble(cy.page, "buy cheap watches")
    await expect(spam_on_cy.get_by_role("button", name=DELETE)).to_have_count(0)
    fine_on_cy = bubble(cy.page, "a fine message")
    await expect(fine_on_cy.get_by_role("button", name=DELETE)).to_have_count(1)

    await delete(boss.page, "buy cheap watches")
    for chat in (bo, cy, boss):
        await expect(texts(chat.page)).to_have_text([TOMBSTONE, "a fine message"])
        # Whose it was stays, with no button left on it.
        deleted = chat.page.locator("#messages .msg.deleted")
        await expect(deleted.locator(".author")).to_have_text("Bo")
        await expect(deleted.get_by_role("button")).to_have_count(0)

    # Demoted meanwhile: the page still offers the button; the server refuses, and the
    # page says why beside the message, which stays.
    demoted = await asyncio.to_thread(users, "demote", "boss", "--db", server.db)
    assert demoted.returncode == 0, demoted.stderr
    await delete(boss.page, "a fine message")
    fine = bubble(boss.page, "a fine message")
    await expect(fine.get_by_role("alert")).to_have_text(
        "Not deleted: you can only delete your own messages"
    )
    await expect(fine.get_by_role("button", name=DELETE)).to_be_focused()
    await expect(texts(cy.page)).to_have_text([TOMBSTONE, "a fine message"])


async def test_a_page_that_was_offline_shows_what_was_deleted_meanwhile(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    bot = make_client()
    await bot.connect(server.url, room="team", name="bot", key=BOT_KEY)
    gone = (await bot.send("soon gone"))["message"]
    assert (await bot.send("stays"))["ok"]
    await expect(texts(page)).to_have_text(["soon gone", "stays"])

    await ann.context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    assert (await bot.call("delete", {"id": gone["id"]}))["ok"]
    assert (await bot.send("said while away"))["ok"]
    await ann.context.set_offline(False)
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(texts(page)).to_have_text([TOMBSTONE, "stays", "said while away"])
    # Live again: a deletion now arrives as it happens.
    assert (await bot.call("delete", {"id": gone["id"] + 1}))["ok"]
    await expect(texts(page)).to_have_text([TOMBSTONE, TOMBSTONE, "said while away"])


async def test_too_much_deleted_while_away_starts_the_page_over_from_the_newest(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = make_client()
    await bot.connect(server.url, room="purge", name="bot", key=BOT_KEY)
    for i in range(1, 561):
        assert (await bot.send(f"message {i}"))["ok"]
    ann = await open_chat(server.url, "/r/purge", "Ann")
    page = ann.page
    await expect(page.locator("#messages .msg")).to_have_count(50)
    await page.locator("#scroller").evaluate("(s) => { s.scrollTop = 0; }")
    await expect(page.locator("#messages .msg")).to_have_count(100)

    await ann.context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    # More deletions than a welcome carries (500): the welcome says to start over.
    for msg_id in range(60, 561):
        assert (await bot.call("delete", {"id": msg_id}))["ok"]
    await ann.context.set_offline(False)
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    # The newest page, as for a fresh page, in place of the 100 shown before.
    await expect(page.locator("#messages .msg")).to_have_count(50)
    await expect(page.locator("#messages .msg.deleted")).to_have_count(50)
    assert [m["id"] for m in await shown(page)] == list(range(511, 561))
    await expect(page.locator("#load-older")).to_be_visible()
    # And the page goes on from there: older pages, new messages.
    assert (await bot.send("after the purge"))["ok"]
    await expect(texts(page).last).to_have_text("after the purge")
    await page.locator("#scroller").evaluate("(s) => { s.scrollTop = 0; }")
    await expect(page.locator("#messages .msg")).to_have_count(101)
    await expect(page.locator('#messages .msg[data-id="461"] .text')).to_have_text(TOMBSTONE)
