"""A message's actions on the page: editing one's own messages (from its Edit button or
ArrowUp in the empty message box) and, for admins, reading what an edited message said
before, reactions (chips and the emoji picker) and replies (the quote, as plain text, and
the jump to an original not loaded yet); live on every page, and after a page was
offline."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from tests.conftest import NO_RATE_LIMITS, ClientFactory, ServerFactory
from tests.support import Server
from tests.test_moderation import admin_and_ann
from tests.test_users_cli import users

from .conftest import RECORD_FLASHES, ChatPage, OpenChat, expect
from .test_chat_page import send, shown
from .test_identity import bubble
from .test_sign_in import sign_in_on_page

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

#: The accessible names of a message's actions.
EDIT = "Edit message"
REACT = "Add reaction"
REPLY = "Reply"
#: The accessible name of "(edited)" where it opens the message's earlier versions (admins).
EARLIER = "Edited: show earlier versions"
#: A bot's own key: a keyed client may edit its own messages.
BOT_KEY = "actions-bot-key-0123456789"


def texts(page: Page) -> Locator:
    """The texts of the confirmed messages."""
    return page.locator("#messages .msg .text")


def by_id(page: Page, msg_id: int) -> Locator:
    """The confirmed message ``msg_id`` (found by its id: while edited, it shows no text)."""
    return page.locator(f'#messages .msg[data-id="{msg_id}"]')


def chip(page: Page, text: str, emoji: str) -> Locator:
    """The reaction chip of ``emoji`` under the message whose text is ``text``."""
    return bubble(page, text).locator(f'.reaction[data-emoji="{emoji}"]')


async def action(page: Page, text: str, name: str) -> None:
    """Click the action called ``name`` of the message whose text is ``text``, as a person
    does: hover the message, then click the button in its action bar."""
    item = bubble(page, text)
    await item.hover()
    await item.get_by_role("button", name=name, exact=True).click()


async def test_editing_my_message_shows_the_new_text_and_edited_on_every_page_live(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    await send(ann.page, "the meeting is at 3")
    await send(bo.page, "ok")
    await expect(texts(bo.page)).to_have_text(["the meeting is at 3", "ok"])
    # Only the author may edit: Bo has no Edit button on Ann's message, Ann none on his.
    await expect(
        bubble(bo.page, "the meeting is at 3").get_by_role("button", name=EDIT)
    ).to_have_count(0)
    await expect(bubble(ann.page, "ok").get_by_role("button", name=EDIT)).to_have_count(0)

    page = ann.page
    await action(page, "the meeting is at 3", EDIT)
    box = page.locator("#messages .msg .edit-box")
    await expect(box).to_be_focused()
    await expect(box).to_have_value("the meeting is at 3")
    # Escape puts the message back as it was, the focus on its Edit button.
    await box.press("End")
    await box.type(" sharp")
    await box.press("Escape")
    await expect(box).to_have_count(0)
    await expect(texts(page)).to_have_text(["the meeting is at 3", "ok"])
    await expect(
        bubble(page, "the meeting is at 3").get_by_role("button", name=EDIT)
    ).to_be_focused()

    # Enter on the Edit button opens it again; Shift+Enter is a new line, Enter saves.
    await page.keyboard.press("Enter")
    await expect(box).to_be_focused()
    await box.fill("the meeting is at 4")
    await box.press("Shift+Enter")
    await box.type("in room B")
    await expect(box).to_have_value("the meeting is at 4\nin room B")
    await box.press("Enter")
    await expect(box).to_have_count(0)
    for chat in (ann, bo):
        await expect(texts(chat.page)).to_have_text(["the meeting is at 4\nin room B", "ok"])
        edited = by_id(chat.page, 1).locator(".edited")
        await expect(edited).to_have_text("(edited)")
        await expect(edited).to_have_attribute("title", re.compile(r"^Edited \S"))
        # Still the same message, in its place.
        assert [m["id"] for m in await shown(chat.page)] == [1, 2]
    await expect(bubble(bo.page, "ok").locator(".edited")).to_have_count(0)

    # The Save button works too, and the history a page loads has the edit.
    await by_id(page, 1).hover()
    await by_id(page, 1).get_by_role("button", name=EDIT).click()
    await box.fill("the meeting is at 5")
    await page.get_by_role("button", name="Save").click()
    await expect(texts(bo.page)).to_have_text(["the meeting is at 5", "ok"])
    await bo.page.reload()
    await expect(bo.page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(texts(bo.page)).to_have_text(["the meeting is at 5", "ok"])
    await expect(bubble(bo.page, "the meeting is at 5").locator(".edited")).to_have_text("(edited)")


async def test_arrow_up_in_the_empty_box_edits_my_newest_message(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    page = ann.page
    await send(page, "first")
    await send(page, "secnod")
    await send(bo.page, "Bo's, the newest")
    await expect(texts(page)).to_have_text(["first", "secnod", "Bo's, the newest"])

    composer = page.locator("#text")
    await composer.fill("draft")
    await composer.press("ArrowUp")  # not empty: the caret moves, nothing opens
    await expect(page.locator(".edit-box")).to_have_count(0)
    await composer.fill("")
    await composer.press("ArrowUp")
    box = by_id(page, 2).locator(".edit-box")
    await expect(box).to_be_focused()
    await expect(box).to_have_value("secnod")
    # Escape goes back to writing.
    await box.press("Escape")
    await expect(composer).to_be_focused()
    await expect(page.locator(".edit-box")).to_have_count(0)

    await composer.press("ArrowUp")
    await expect(box).to_be_focused()
    await box.fill("second")
    await box.press("Enter")
    await expect(composer).to_be_focused()
    for chat in (ann, bo):
        await expect(texts(chat.page)).to_have_text(["first", "second", "Bo's, the newest"])
        await expect(bubble(chat.page, "second").locator(".edited")).to_have_count(1)
    # Bo's newest is not his to edit on Ann's page, nor hers on his: he edits his own.
    await bo.page.locator("#text").press("ArrowUp")
    await expect(by_id(bo.page, 3).locator(".edit-box")).to_be_focused()


async def test_an_edit_the_server_refuses_shows_why_and_the_editor_stays(
    start_server: ServerFactory, open_chat: OpenChat
) -> None:
    server = await start_server(*NO_RATE_LIMITS, "--edit-window", "0.000001")
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    await send(page, "tpyo")
    await action(page, "tpyo", EDIT)
    box = page.locator(".edit-box")
    await box.fill("typo")
    await box.press("Enter")
    error = by_id(page, 1).get_by_role("alert")
    await expect(error).to_contain_text("Not saved: too late to edit")
    # Still open, with what was typed, for another try or Cancel.
    await expect(box).to_have_value("typo")
    await expect(box).to_be_focused()
    await page.get_by_role("button", name="Cancel").click()
    await expect(box).to_have_count(0)
    await expect(texts(page)).to_have_text(["tpyo"])
    await expect(page.locator("#messages .edited")).to_have_count(0)


async def signed_in_admin(server: Server, open_chat: OpenChat) -> ChatPage:
    """The admin "boss" (made with the member "ann"), signed in on a page of #team."""
    await admin_and_ann(server)
    boss = await open_chat(server.url, "/r/team", name=None, wait_connected=False)
    await sign_in_on_page(boss.page, "boss", "boss's password")
    await expect(boss.page.locator("#status")).to_have_attribute("data-state", "connected")
    return boss


async def test_an_admin_reads_what_an_edited_message_said_before_and_others_cannot(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = make_client()
    await bot.connect(server.url, room="team", name="Cy", key=BOT_KEY)
    msg_id = (await bot.send("the meeting is at **3**"))["message"]["id"]
    boss = await signed_in_admin(server, open_chat)
    bo = await open_chat(server.url, "/r/team", "Bo")
    for text in ("the meeting is at 4", "the meeting is at `5`, room B"):
        assert (await bot.call("edit", {"id": msg_id, "text": text}))["ok"]
    for chat in (bo, boss):
        await expect(by_id(chat.page, msg_id).locator(".text")).to_have_text(
            "the meeting is at 5, room B"
        )
        await expect(by_id(chat.page, msg_id).locator(".edited")).to_have_text("(edited)")
    # Not an admin: "(edited)" is text, as before, with nothing to open.
    await expect(bo.page.locator("#messages .edited")).to_have_js_property("tagName", "SPAN")
    await expect(by_id(bo.page, msg_id).get_by_role("button", name=EARLIER)).to_have_count(0)

    page = boss.page
    marker = by_id(page, msg_id).get_by_role("button", name=EARLIER)
    await expect(marker).to_have_attribute("aria-expanded", "false")
    await marker.click()
    panel = by_id(page, msg_id).get_by_role("region", name="Earlier versions")
    versions = panel.locator(".edit-version")
    # Oldest first, each drawn as a message is (its Markdown too), the current one last.
    await expect(versions.locator(".edit-version-text")).to_have_text(
        ["the meeting is at 3", "the meeting is at 4", "the meeting is at 5, room B"]
    )
    await expect(versions.nth(0).locator("strong")).to_have_text("3")
    await expect(versions.nth(2).locator("code")).to_have_text("5")
    await expect(versions.locator(".edit-version-head")).to_have_text(
        [re.compile(r"^Sent \S"), re.compile(r"^Edited \S"), re.compile(r"^Current, edited \S")]
    )
    await expect(marker).to_have_attribute("aria-expanded", "true")
    await expect(marker).to_have_attribute("aria-controls", str(await panel.get_attribute("id")))
    await expect(marker).to_be_focused()
    # Escape closes it, the focus stays on "(edited)"; Enter opens it again.
    await page.keyboard.press("Escape")
    await expect(panel).to_have_count(0)
    await expect(marker).to_have_attribute("aria-expanded", "false")
    await expect(marker).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(versions).to_have_count(3)
    # Edited again while it is open: the versions follow.
    assert (await bot.call("edit", {"id": msg_id, "text": "cancelled"}))["ok"]
    await expect(versions.locator(".edit-version-text")).to_have_text(
        [
            "the meeting is at 3",
            "the meeting is at 4",
            "the meeting is at 5, room B",
            "cancelled",
        ]
    )
    await panel.get_by_role("button", name="Close earlier versions").click()
    await expect(panel).to_have_count(0)
    await expect(marker).to_be_focused()

    # Demoted meanwhile: the server refuses, and the panel says why.
    demoted = await asyncio.to_thread(users, "demote", "boss", "--db", server.db)
    assert demoted.returncode == 0, demoted.stderr
    await marker.click()
    await expect(panel.get_by_role("alert")).to_have_text(
        "Could not load them: only admins may see what a message said before its edits"
    )
    await expect(versions).to_have_count(0)


async def test_a_reaction_by_two_people_counts_on_both_pages(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    await send(ann.page, "ship it?")
    await action(bo.page, "ship it?", REACT)
    # The picker opens on the common emoji; a click on one adds it.
    picker = bo.page.get_by_role("dialog", name="Add a reaction")
    await expect(picker).to_be_visible()
    await picker.get_by_role("option", name=re.compile(r"^👍 ")).click()
    await expect(picker).to_be_hidden()
    for chat in (ann, bo):
        await expect(chip(chat.page, "ship it?", "👍")).to_have_text("👍 1")
    await expect(chip(bo.page, "ship it?", "👍")).to_have_attribute("aria-pressed", "true")
    await expect(chip(ann.page, "ship it?", "👍")).to_have_attribute("aria-pressed", "false")
    await chip(ann.page, "ship it?", "👍").hover()
    await expect(chip(ann.page, "ship it?", "👍")).to_have_attribute("title", "Bo reacted with 👍")

    # Ann adds hers by clicking the chip: 2, pressed for each of them.
    await chip(ann.page, "ship it?", "👍").click()
    for chat in (ann, bo):
        await expect(chip(chat.page, "ship it?", "👍")).to_have_text("👍 2")
        await expect(chip(chat.page, "ship it?", "👍")).to_have_attribute("aria-pressed", "true")
    await chip(bo.page, "ship it?", "👍").hover()
    await expect(chip(bo.page, "ship it?", "👍")).to_have_attribute(
        "title", "you and Ann reacted with 👍"
    )
    # The chip keeps the focus as the message is drawn again: the keyboard can take it back.
    await expect(chip(ann.page, "ship it?", "👍")).to_be_focused()
    await ann.page.keyboard.press("Enter")
    for chat in (ann, bo):
        await expect(chip(chat.page, "ship it?", "👍")).to_have_text("👍 1")
    await expect(chip(ann.page, "ship it?", "👍")).to_have_attribute("aria-pressed", "false")
    await expect(chip(bo.page, "ship it?", "👍")).to_have_attribute("aria-pressed", "true")
    # And Bo's goes too: no chip left.
    await chip(bo.page, "ship it?", "👍").click()
    for chat in (ann, bo):
        await expect(bubble(chat.page, "ship it?").locator(".reaction")).to_have_count(0)


async def test_the_picker_finds_an_emoji_by_its_shortcode(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    page = ann.page
    await send(bo.page, "we shipped!")
    await action(page, "we shipped!", REACT)
    picker = page.get_by_role("dialog", name="Add a reaction")
    search = picker.get_by_role("combobox", name="Find an emoji by name")
    await expect(search).to_be_focused()
    await expect(picker.get_by_role("option")).to_have_count(32)
    # Escape closes it, and the focus goes back to the message's React button.
    await search.press("Escape")
    await expect(picker).to_be_hidden()
    react = bubble(page, "we shipped!").get_by_role("button", name=REACT)
    await expect(react).to_be_focused()

    await page.keyboard.press("Enter")
    await expect(search).to_be_focused()
    await search.fill("thu")
    thumbs = picker.get_by_role("option", name=re.compile(":thumbsup:"))
    await expect(thumbs).to_have_attribute("aria-selected", "true")
    await expect(picker.get_by_role("option", name=re.compile(":thumbsdown:"))).to_be_visible()
    await search.fill(":tada")
    await expect(picker.get_by_role("option")).to_have_count(1)
    await expect(picker.get_by_role("option")).to_have_text("🎉")
    await search.fill("zzzz")
    await expect(picker.get_by_role("option")).to_have_count(0)
    await expect(picker).to_contain_text("No emoji by that name")
    # The arrows move in the grid, Enter adds the highlighted one.
    await search.fill("heart")
    await expect(picker.get_by_role("option").first).to_have_attribute("aria-selected", "true")
    await search.press("ArrowDown")
    await search.press("ArrowUp")
    await search.press("Enter")
    await expect(picker).to_be_hidden()
    for chat in (ann, bo):
        await expect(chip(chat.page, "we shipped!", "❤️")).to_have_text("❤️ 1")
    await expect(react).to_be_focused()
    # Adding one that is there already changes nothing.
    await page.keyboard.press("Enter")
    await search.fill("heart")
    await search.press("Enter")
    await expect(chip(page, "we shipped!", "❤️")).to_have_text("❤️ 1")
    await expect(chip(page, "we shipped!", "❤️")).to_have_attribute("aria-pressed", "true")
    # An emoji typed into the box is offered as typed; the server says what is one.
    await page.keyboard.press("Enter")
    await search.fill("🦀")
    await expect(picker.get_by_role("option").first).to_have_text("🦀")
    await search.press("Enter")
    await expect(chip(bo.page, "we shipped!", "🦀")).to_have_text("🦀 1")
    await page.keyboard.press("Enter")
    await search.fill("é")
    await search.press("Enter")
    note = bubble(page, "we shipped!").get_by_role("alert")
    await expect(note).to_have_text(
        "Reaction not added: invalid emoji: must be one emoji (at most 32 bytes)"
    )
    await expect(bubble(page, "we shipped!").locator(".reaction")).to_have_count(2)


async def test_a_reply_quotes_its_original_and_jumps_to_it_when_not_loaded(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = make_client()
    await bot.connect(server.url, room="team", name="Cy", key=BOT_KEY)
    original = (await bot.send("the plan: ship on Friday"))["message"]
    for i in range(1, 71):
        assert (await bot.send(f"chatter {i}"))["ok"]
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    await expect(page.locator("#messages .msg")).to_have_count(50)
    assert (await bot.send("re: the plan", reply_to=original["id"]))["ok"]
    quote = bubble(page, "re: the plan").locator(".reply-quote")
    await expect(quote).to_have_text("In reply to an earlier message")

    # Ann replies from the page to the newest chatter: a bar above the box says to what.
    await action(page, "chatter 70", REPLY)
    bar = page.locator("#reply-bar")
    await expect(bar).to_have_text("Replying to Cy: chatter 70")
    await expect(page.locator("#text")).to_be_focused()
    # Cancelled (Escape, or its Cancel button), nothing is answered; chosen again, the next one is.
    await page.locator("#text").press("Escape")
    await expect(bar).to_be_hidden()
    await action(page, "chatter 70", REPLY)
    await page.get_by_role("button", name="Cancel reply").click()
    await expect(bar).to_be_hidden()
    await action(page, "chatter 70", REPLY)
    await send(page, "agreed")
    await expect(bar).to_be_hidden()
    mine = bubble(page, "agreed").locator(".reply-quote")
    await expect(mine).to_have_text("In reply to Cy: chatter 70")
    sent = await bot.wait_for("message", lambda m: m["text"] == "agreed")
    assert sent["reply_to"] == original["id"] + 70
    await send(page, "no reply")
    await expect(bubble(page, "no reply").locator(".reply-quote")).to_have_count(0)

    # The quote of a message not loaded: older history comes back to it, and it shows.
    await page.evaluate(RECORD_FLASHES)
    await quote.click()
    target = bubble(page, "the plan: ship on Friday")
    await expect(target).to_be_in_viewport()
    await page.wait_for_function(f"() => window.__flashed.includes({original['id']})")
    await expect(quote).to_have_text("In reply to Cy: the plan: ship on Friday")
    # Loaded as a whole: every message between it and the newest, each once.
    ids = [m["id"] for m in await shown(page)]
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert ids[0] <= original["id"]
    # Deleted, the quote says so.
    assert (await bot.call("delete", {"id": original["id"]}))["ok"]
    await expect(quote).to_have_text("In reply to a deleted message")


async def test_a_reply_quotes_its_original_as_plain_text_without_markdown_marks(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = make_client()
    await bot.connect(server.url, room="team", name="Cy", key=BOT_KEY)
    original = (
        "**Ship** it on `friday`, see [the plan](https://example.com/plan) ~~maybe~~\n"
        "- one\n- _two_"
    )
    msg_id = (await bot.send(original))["message"]["id"]
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    assert (await bot.send("sounds good", reply_to=msg_id))["ok"]
    quote = bubble(page, "sounds good").locator(".reply-quote")
    plain = "Ship it on friday, see the plan maybe one two"
    await expect(quote).to_have_text(f"In reply to Cy: {plain}")
    await expect(quote.locator("strong, em, del, code, a")).to_have_count(0)
    # The bar above the box, replying to it from the page, says the same.
    await by_id(page, msg_id).hover()
    await by_id(page, msg_id).get_by_role("button", name=REPLY).click()
    await expect(page.locator("#reply-bar")).to_have_text(f"Replying to Cy: {plain}")
    # Edited, the quote follows, still without marks.
    assert (await bot.call("edit", {"id": msg_id, "text": "**moved** to _monday_"}))["ok"]
    await expect(quote).to_have_text("In reply to Cy: moved to monday")


async def test_a_page_that_was_offline_shows_edits_and_reactions_made_meanwhile(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    bot = make_client()
    await bot.connect(server.url, room="team", name="bot", key=BOT_KEY)
    first = (await bot.send("lunch at noon"))["message"]
    await send(page, "count me in")
    mine = (await shown(page))[-1]
    await expect(texts(page)).to_have_text(["lunch at noon", "count me in"])

    await ann.context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    assert (await bot.call("edit", {"id": first["id"], "text": "lunch at 1"}))["ok"]
    assert (await bot.call("react", {"id": mine["id"], "emoji": "🎉", "add": True}))["ok"]
    # Someone the page never sees: gone before it is back, and no message of theirs held.
    passer = make_client()
    await passer.connect(server.url, room="team", name="Eve", key="passer-by-key-0123456789")
    assert (await passer.call("react", {"id": mine["id"], "emoji": "🎉", "add": True}))["ok"]
    await passer.close()
    await ann.context.set_offline(False)
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(texts(page)).to_have_text(["lunch at 1", "count me in"])
    await expect(bubble(page, "lunch at 1").locator(".edited")).to_have_text("(edited)")
    party = chip(page, "count me in", "🎉")
    await expect(party).to_have_text("🎉 2")
    await expect(party).to_have_attribute("aria-pressed", "false")
    await party.hover()
    await expect(party).to_have_attribute("title", "bot and someone reacted with 🎉")
    # Live again: a change now arrives as it happens.
    assert (await bot.call("react", {"id": mine["id"], "emoji": "🎉", "add": False}))["ok"]
    await expect(party).to_have_text("🎉 1")
    await party.hover()
    await expect(party).to_have_attribute("title", "someone reacted with 🎉")
