"""Search on the page (static/ui/search.js): the box in the top bar sends what was typed
(docs/protocol.md, `search`), the panel lists the results with their matches marked, as
text, and opening one shows its message in its room, older history loaded back to it, in
the same page; the server's refusals are shown as it words them, and each person finds
only what they may read."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.conftest import ClientFactory
from tests.support import Server

from .conftest import RECORD_FLASHES, ChatPage, OpenChat, expect
from .test_chat_page import shown
from .test_identity import bubble
from .test_my_rooms import account, member, signed_in
from .test_rooms_sidebar import bot_in, my_room

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page


def box(page: Page) -> Locator:
    return page.get_by_role("searchbox", name="Search messages")


def panel(page: Page) -> Locator:
    return page.locator("#search-panel")


def results(page: Page) -> Locator:
    return page.locator("#search-results .search-result")


def status(page: Page) -> Locator:
    return page.locator("#search-status")


async def search(page: Page, query: str) -> None:
    """Type ``query`` in the search box and press Enter; wait for the answer."""
    await box(page).fill(query)
    await box(page).press("Enter")
    await expect(panel(page)).to_be_visible()
    await expect(page.locator("#search-results")).not_to_have_attribute("aria-busy", "true")


async def test_a_result_from_another_room_opens_its_old_message_in_the_same_page(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = await bot_in(make_client, server, "archive")
    assert (await bot.send("hello archive"))["ok"]
    old = (await bot.send("the zeppelin lands at dawn"))["message"]
    for i in range(1, 76):
        assert (await bot.send(f"chatter {i}"))["ok"]
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    await page.evaluate("window.__samePage = true")

    # "/" from the timeline goes to the box; typed in the message box, it is text.
    await page.locator("#text").press("/")
    await expect(page.locator("#text")).to_have_value("/")
    await expect(box(page)).not_to_be_focused()
    await page.locator("#text").fill("")
    await page.locator("#scroller").focus()
    await page.keyboard.press("/")
    await expect(box(page)).to_be_focused()
    await page.locator("#scroller").focus()
    await page.keyboard.press("Control+k")
    await expect(box(page)).to_be_focused()

    await search(page, "Zeppelin")
    await expect(results(page)).to_have_count(1)
    result = results(page).first
    await expect(result.locator(".search-room")).to_have_text("#archive")
    await expect(result.locator(".search-author")).to_have_text("archive-bot")
    await expect(result.locator(".search-time")).to_have_text(re.compile(r"^Today \d"))
    await expect(result.locator(".search-snippet")).to_have_text("the zeppelin lands at dawn")
    await expect(result.locator("mark")).to_have_text(["zeppelin"])
    await expect(status(page)).to_have_text("1 result")
    # The room shown is untouched behind the panel.
    await expect(page.locator("h1")).to_have_text("#team")

    # The keyboard opens it: down into the results, Enter.
    await page.evaluate(RECORD_FLASHES)
    await box(page).press("ArrowDown")
    await expect(result).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/r/archive$"))
    await expect(page.locator("h1")).to_have_text("#archive")
    await expect(my_room(page, "archive")).to_have_attribute("aria-current", "page")
    target = bubble(page, "the zeppelin lands at dawn")
    await expect(target).to_be_in_viewport()
    await page.wait_for_function(f"() => window.__flashed.includes({old['id']})")
    await expect(panel(page)).to_be_hidden()
    assert await page.evaluate("window.__samePage") is True
    # Loaded as a whole: every message from before it to the newest, each once.
    ids = [m["id"] for m in await shown(page)]
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert ids[0] <= old["id"] and ids[-1] == old["id"] + 75

    # Back goes to the room the search started from, still the same page.
    await page.go_back()
    await expect(page.locator("h1")).to_have_text("#team")
    assert await page.evaluate("window.__samePage") is True


async def test_phrases_from_and_this_room_narrow_a_search_and_more_results_follow(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    cy = await bot_in(make_client, server, "ops")
    di = make_client()
    await di.connect(server.url, room="ops", name="Di")
    assert (await cy.send("deploy failed on staging"))["ok"]
    assert (await di.send("it failed to deploy again"))["ok"]
    assert (await cy.send("the deploy went fine, nothing failed"))["ok"]
    elsewhere = await bot_in(make_client, server, "dev")
    assert (await elsewhere.send("deploy failed in dev too"))["ok"]
    ann = await open_chat(server.url, "/r/ops", "Ann")
    page = ann.page

    await search(page, "deploy failed")
    await expect(results(page)).to_have_count(4)
    await search(page, '"deploy failed"')
    await expect(results(page)).to_have_count(2)
    assert sorted(await results(page).locator(".search-snippet").all_text_contents()) == [
        "deploy failed in dev too",
        "deploy failed on staging",
    ]
    await search(page, "deploy from:di")
    await expect(results(page).locator(".search-snippet")).to_have_text(
        ["it failed to deploy again"]
    )
    await expect(results(page).locator(".search-author")).to_have_text(["Di"])

    # "Search in #ops" asks for the shown room only; unchecked, everywhere again.
    scope = page.get_by_role("checkbox", name="Search in #ops")
    await search(page, '"deploy failed"')
    await expect(results(page)).to_have_count(2)
    await scope.check()
    await expect(results(page).locator(".search-snippet")).to_have_text(
        ["deploy failed on staging"]
    )
    await expect(results(page).locator(".search-room")).to_have_text(["#ops"])
    await scope.uncheck()
    await expect(results(page)).to_have_count(2)

    # More than a page: "More results" brings the next one.
    for i in range(1, 26):
        assert (await cy.send(f"needle number {i}"))["ok"]
    await search(page, "needle")
    await expect(results(page)).to_have_count(20)
    await expect(status(page)).to_have_text("20 results, more below")
    more = page.get_by_role("button", name="More results")
    await more.focus()
    await page.keyboard.press("Enter")
    await expect(results(page)).to_have_count(25)
    await expect(more).to_be_hidden()
    await expect(status(page)).to_have_text("25 results")
    # Each once, newest first among equals.
    await expect(results(page).locator(".search-snippet")).to_have_text(
        [f"needle number {i}" for i in range(25, 0, -1)]
    )
    # The keyboard went on to the first of the new ones; arrows walk the list.
    await expect(results(page).nth(20)).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await expect(results(page).nth(19)).to_be_focused()
    await page.keyboard.press("Home")
    await expect(results(page).first).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await expect(box(page)).to_be_focused()


async def test_markup_in_a_message_is_shown_as_text_in_its_snippet(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = await bot_in(make_client, server, "team")
    payload = "<img src=x onerror=alert(1)> zeppelin <b>bold</b> &amp;"
    assert (await bot.send(payload))["ok"]
    ann = await open_chat(server.url, "/r/lobby", "Ann")
    page = ann.page
    await search(page, "zeppelin")
    await expect(results(page)).to_have_count(1)
    await expect(results(page).locator(".search-snippet")).to_have_text(payload)
    await expect(results(page).locator("mark")).to_have_text(["zeppelin"])
    await expect(panel(page).locator("img, b")).to_have_count(0)
    assert await page.locator("img").count() == 0
    # (The fixture checks that no alert() ran.)


async def test_the_servers_reason_for_refusing_a_search_is_shown_as_it_words_it(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    await search(page, "")
    await expect(status(page)).to_have_text("invalid search: search for at least one word")
    await expect(status(page)).to_have_class(re.compile(r"\bsearch-error\b"))
    await expect(results(page)).to_have_count(0)
    await search(page, "zeppelin before:someday")
    await expect(status(page)).to_have_text("invalid search: before: must be a date, YYYY-MM-DD")
    await search(page, "zeppelin")
    await expect(status(page)).to_have_text("No messages found.")
    await expect(status(page)).not_to_have_class(re.compile(r"\bsearch-error\b"))

    # Escape closes the panel, the focus in the box; Down opens it again; so does the close
    # button, and a click elsewhere.
    await box(page).press("Escape")
    await expect(panel(page)).to_be_hidden()
    await expect(box(page)).to_be_focused()
    await expect(box(page)).to_have_value("zeppelin")
    await box(page).press("ArrowDown")
    await expect(panel(page)).to_be_visible()
    await expect(box(page)).to_have_attribute("aria-expanded", "true")
    await page.get_by_role("button", name="Close search").click()
    await expect(panel(page)).to_be_hidden()
    await expect(box(page)).to_be_focused()
    await expect(box(page)).to_have_attribute("aria-expanded", "false")
    await box(page).press("ArrowDown")
    await expect(panel(page)).to_be_visible()
    await page.locator("#scroller").click()
    await expect(panel(page)).to_be_hidden()


async def dm_between(make_client: ClientFactory, server: Server, token: str, handle: str) -> str:
    """The direct conversation of ``token``'s account with ``handle``: its room."""
    client = await member(make_client, server, token, "team")
    ack = await client.call("dm", {"with": [handle]})
    assert ack["ok"], ack
    room: str = ack["room"]
    assert (await client.call("subscribe", {"room": room}))["ok"]
    assert (await client.send("the zeppelin plan, between us", room=room))["ok"]
    assert (await client.send("a public zeppelin", room="team"))["ok"]
    return room


async def test_a_direct_message_is_found_by_its_people_and_by_nobody_else(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann_token = await account(server, "ann", "Ann A")
    bo_token = await account(server, "bo", "Bo B")
    cy_token = await account(server, "cy", "Cy C")
    dm_room = await dm_between(make_client, server, ann_token, "bo")

    bo = await signed_in(open_chat, server, bo_token, "/r/team")
    page = bo.page
    await expect(my_room(page, dm_room).locator(".room-name")).to_have_text("Ann A")
    await page.evaluate("window.__samePage = true")
    await search(page, "zeppelin")
    await expect(results(page).locator(".search-snippet")).to_have_text(
        ["a public zeppelin", "the zeppelin plan, between us"]
    )
    # Called by the other person's name, as in the sidebar.
    await expect(results(page).locator(".search-room")).to_have_text(["#team", "Ann A"])
    await results(page).nth(1).click()
    await expect(page).to_have_url(re.compile(rf"/r/{dm_room}$"))
    await expect(page.locator("#room-name")).to_have_text("Ann A")
    await expect(bubble(page, "the zeppelin plan, between us")).to_be_in_viewport()
    assert await page.evaluate("window.__samePage") is True

    # Cy finds the public one only: over the socket, and over HTTP from a page whose
    # connection is refused (the direct conversation's own address).
    cy = await signed_in(open_chat, server, cy_token, "/r/team")
    await search(cy.page, "zeppelin")
    await expect(results(cy.page).locator(".search-snippet")).to_have_text(["a public zeppelin"])
    await check_over_http(cy, server, dm_room)


async def check_over_http(cy: ChatPage, server: Server, dm_room: str) -> None:
    page = cy.page
    await page.goto(server.url + f"/r/{dm_room}")
    await expect(page.locator("#status")).to_have_attribute("data-state", "refused")
    async with page.expect_response(lambda r: "/api/search?" in r.url) as answer:
        await search(page, "zeppelin")
    assert (await answer.value).status == 200
    await expect(results(page).locator(".search-snippet")).to_have_text(["a public zeppelin"])
    # Its refusals come the same way.
    async with page.expect_response(lambda r: "/api/search?" in r.url) as answer:
        await search(page, "")
    assert (await answer.value).status == 400
    await expect(status(page)).to_have_text("invalid search: search for at least one word")
    # The browser logs the 400 itself; it is the answer expected here, not a page error.
    bad_request = "the server responded with a status of 400"
    cy.errors[:] = [e for e in cy.errors if bad_request not in e]
