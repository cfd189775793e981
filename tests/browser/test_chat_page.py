"""The chat page in a real browser: messages, rooms, presence, typing, history, safety."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.conftest import ClientFactory, ServerFactory
from tests.support import Server

from .conftest import OpenChat, expect

if TYPE_CHECKING:
    from playwright.async_api import Page


async def shown(page: Page) -> list[dict[str, Any]]:
    """The confirmed messages on the page, top to bottom."""
    result: list[dict[str, Any]] = await page.evaluate(
        """() => [...document.querySelectorAll('#messages .msg')].map((li) => ({
            id: Number(li.dataset.id),
            name: li.querySelector('.author').textContent,
            text: li.querySelector('.text').textContent,
            mine: li.classList.contains('mine'),
        }))"""
    )
    return result


async def send(page: Page, text: str) -> None:
    """Type ``text`` and press Enter; wait until the server acknowledged it."""
    box = page.locator("#text")
    await box.fill(text)
    await box.press("Enter")
    await expect(box).to_have_value("")
    await expect(page.locator("#pending .msg")).to_have_count(0)


def message(page: Page, text: str) -> Any:
    return page.locator("#messages .msg .text", has_text=text)


async def test_message_sent_with_enter_reaches_its_room_only(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/alpha", "Ann")
    bo = await open_chat(server.url, "/r/alpha", "Bo")
    cy = await open_chat(server.url, "/r/beta", "Cy")

    await ann.page.locator("#text").fill("hello alpha")
    await ann.page.locator("#text").press("Enter")

    await expect(message(bo.page, "hello alpha")).to_have_count(1)
    await expect(ann.page.locator("#messages .msg.mine.sent .text")).to_have_text("hello alpha")
    # Beta's own message going round trip shows its stream is live and has nothing else.
    await send(cy.page, "hello beta")
    assert [m["text"] for m in await shown(cy.page)] == ["hello beta"]
    assert [m["text"] for m in await shown(bo.page)] == ["hello alpha"]
    mine, theirs = (await shown(ann.page))[0], (await shown(bo.page))[0]
    assert mine["mine"] and not theirs["mine"]
    assert theirs["name"] == "Ann"
    # The page shows the room and a local time with the exact time on hover.
    await expect(bo.page.locator("h1")).to_have_text("#alpha")
    time = bo.page.locator("#messages .msg time")
    await expect(time).to_have_attribute("title", re.compile(r"\d{1,2}:\d{2}:\d{2}"))


async def test_shift_enter_is_a_new_line_and_whitespace_and_emoji_survive(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/", "Ann")
    bo = await open_chat(server.url, "/", "Bo")
    box = ann.page.locator("#text")
    await box.type("  two  spaces 👋🏽")
    await box.press("Shift+Enter")
    await box.type("\tsecond line ✨")
    await expect(box).to_have_value("  two  spaces 👋🏽\n\tsecond line ✨")
    await box.press("Enter")
    await expect(bo.page.locator("#messages .msg")).to_have_count(1)
    assert (await shown(bo.page))[0]["text"] == "  two  spaces 👋🏽\n\tsecond line ✨"


async def test_html_and_script_payloads_are_shown_as_text(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/", "Ann")
    bo = await open_chat(server.url, "/", "Bo<b>")
    payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>alert(2)</script>",
        '<a href="javascript:alert(3)">click</a> javascript:alert(4)',
        "<style>body{display:none}</style>",
    ]
    for text in payloads:
        await send(ann.page, text)
    await expect(bo.page.locator("#messages .msg")).to_have_count(len(payloads))
    assert [m["text"] for m in await shown(bo.page)] == payloads
    log = bo.page.locator("#messages")
    for tag in ("img", "script", "style", "b"):
        await expect(log.locator(tag)).to_have_count(0)
    await expect(log.locator("a")).to_have_count(0)  # only http(s) URLs become links
    # A name is text too.
    await expect(ann.page.locator("#people")).to_contain_text("Bo<b>")
    await expect(bo.page.locator("body")).to_be_visible()
    # (The fixture fails the test if any alert() ran or a script errored.)


async def test_http_links_become_safe_links(server: Server, open_chat: OpenChat) -> None:
    ann = await open_chat(server.url, "/", "Ann")
    await send(ann.page, "docs at https://example.com/a?b=1&c=(2)), or http://x.test/y.")
    links = ann.page.locator("#messages .text a")
    await expect(links).to_have_count(2)
    first, second = links.nth(0), links.nth(1)
    await expect(first).to_have_attribute("href", "https://example.com/a?b=1&c=(2)")
    await expect(first).to_have_text("https://example.com/a?b=1&c=(2)")
    await expect(second).to_have_attribute("href", "http://x.test/y")
    for link in (first, second):
        await expect(link).to_have_attribute("rel", "noopener noreferrer")
        await expect(link).to_have_attribute("target", "_blank")
    text = (await shown(ann.page))[0]["text"]
    assert text == "docs at https://example.com/a?b=1&c=(2)), or http://x.test/y."


async def test_presence_list_follows_pages_opening_closing_and_renaming(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    people = ann.page.locator("#people .person-name")
    await expect(people).to_have_text(["Ann"])
    await expect(ann.page.locator("#people .you-tag")).to_have_count(1)

    bo = await open_chat(server.url, "/r/team", "Bo")
    await expect(people).to_have_text(["Ann", "Bo"])
    await expect(ann.page.locator("#online-count")).to_have_text("2 online")
    await expect(bo.page.locator("#people .person-name")).to_have_text(["Bo", "Ann"])

    await bo.page.locator("#change-name").click()
    await bo.page.locator("#name-input").fill("Bob")
    await bo.page.locator("#name-input").press("Enter")
    await expect(people).to_have_text(["Ann", "Bob"])
    await expect(bo.page.locator("#my-name")).to_have_text("Bob")

    await bo.page.close()
    await expect(people).to_have_text(["Ann"])
    await expect(ann.page.locator("#online-count")).to_have_text("1 online")


async def test_typing_indicator_shows_in_other_pages_only(
    start_server: ServerFactory, open_chat: OpenChat
) -> None:
    # Indicators last a few seconds without a keystroke: the pages' clocks stand still, so
    # only the events below start and end them, however slowly the test runs, and the
    # server's own expiry is pushed out of the way.
    server = await start_server("--typing-timeout", "60")
    ann = await open_chat(server.url, "/", "Ann", paused_clock=True)
    bo = await open_chat(server.url, "/", "Bo", paused_clock=True)
    cy = await open_chat(server.url, "/", "Cy", paused_clock=True)

    await ann.page.locator("#text").type("hel")
    await expect(bo.page.locator("#typing")).to_have_text("Ann is typing…")
    await expect(cy.page.locator("#typing")).to_have_text("Ann is typing…")
    await expect(ann.page.locator("#typing")).to_have_text("")  # never yourself

    await ann.page.locator("#text").type("l")
    await bo.page.locator("#text").type("wor")
    await expect(cy.page.locator("#typing")).to_have_text("Ann and Bo are typing…")
    await expect(ann.page.locator("#typing")).to_have_text("Bo is typing…")
    await expect(bo.page.locator("#typing")).to_have_text("Ann is typing…")

    # Sending ends the sender's indicator; so does emptying the box.
    await bo.page.locator("#text").type("l")
    await ann.page.locator("#text").press("Enter")
    await expect(cy.page.locator("#typing")).to_have_text("Bo is typing…")
    await bo.page.locator("#text").fill("")
    await bo.page.locator("#text").dispatch_event("input")
    await expect(cy.page.locator("#typing")).to_have_text("")
    await expect(ann.page.locator("#typing")).to_have_text("")

    # Four seconds without a keystroke end an indicator too.
    await bo.page.locator("#text").type("again")
    await expect(cy.page.locator("#typing")).to_have_text("Bo is typing…")
    await bo.page.clock.run_for(4000)
    await expect(cy.page.locator("#typing")).to_have_text("")


async def test_reload_shows_history_and_remembers_the_name(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/notes", "Ann")
    for i in range(3):
        await send(ann.page, f"note {i}")
    await ann.page.reload()
    # The name is remembered: no dialog, straight back in.
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(ann.page.locator("#name-dialog")).not_to_be_visible()
    await expect(ann.page.locator("#my-name")).to_have_text("Ann")
    await expect(ann.page.locator("#messages .msg .text")).to_have_text(
        ["note 0", "note 1", "note 2"]
    )
    assert all(m["mine"] for m in await shown(ann.page))
    await expect(ann.page.locator("#history-start")).to_be_visible()


async def test_scrolling_up_loads_older_messages_without_jumping(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = make_client()
    await bot.connect(server.url, room="busy", name="bot")
    for i in range(1, 131):
        ack = await bot.send(f"message {i}")
        assert ack["ok"]
    ann = await open_chat(server.url, "/r/busy", "Ann")
    page = ann.page
    await expect(page.locator("#messages .msg")).to_have_count(50)
    assert [m["id"] for m in await shown(page)] == list(range(81, 131))
    await expect(page.locator("#history-start")).to_be_hidden()

    anchor = page.locator('#messages .msg[data-id="81"]')
    await page.locator("#scroller").evaluate("(s) => { s.scrollTop = 0; }")
    await expect(page.locator("#messages .msg")).to_have_count(100)
    # The message that was at the top is still where the reader left it: near the top,
    # not pushed down by the 50 inserted above it.
    box = await anchor.bounding_box()
    scroller = await page.locator("#scroller").bounding_box()
    assert box is not None and scroller is not None
    assert scroller["y"] <= box["y"] <= scroller["y"] + 200

    await page.locator("#scroller").evaluate("(s) => { s.scrollTop = 0; }")
    await expect(page.locator("#messages .msg")).to_have_count(130)
    assert [m["id"] for m in await shown(page)] == list(range(1, 131))
    await expect(page.locator("#history-start")).to_be_visible()
    await expect(page.locator("#load-older")).to_be_hidden()
    # History went in unannounced; the log is polite again for new messages.
    await expect(page.locator("#log")).to_have_attribute("aria-live", "polite")


async def test_new_messages_button_when_reading_older_messages(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bot = make_client()
    await bot.connect(server.url, room="news", name="bot")
    for i in range(40):
        await bot.send(f"filler {i}")
    ann = await open_chat(server.url, "/r/news", "Ann", viewport={"width": 800, "height": 500})
    page = ann.page
    await expect(page.locator("#messages .msg")).to_have_count(40)
    scroller = page.locator("#scroller")
    # At the bottom, a new message scrolls into view by itself.
    await bot.send("while at the bottom")
    await expect(message(page, "while at the bottom")).to_be_in_viewport()
    await expect(page.locator("#jump")).to_be_hidden()

    # Dispatch the scroll event at once, so the page knows we left the bottom before the
    # next message can arrive (browsers deliver it only at the next frame).
    await scroller.evaluate(
        "(s) => { s.scrollTop = s.scrollHeight / 3; s.dispatchEvent(new Event('scroll')); }"
    )
    top = await scroller.evaluate("(s) => s.scrollTop")
    await bot.send("while reading")
    await expect(page.locator("#jump")).to_be_visible()
    await expect(page.locator("#jump")).to_have_text("1 new message")
    await expect(message(page, "while reading")).not_to_be_in_viewport()
    assert await scroller.evaluate("(s) => s.scrollTop") == top

    await page.locator("#jump").click()
    await expect(message(page, "while reading")).to_be_in_viewport()
    await expect(page.locator("#jump")).to_be_hidden()


async def test_unread_count_in_title_while_hidden(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/quiet", "Ann")
    page = ann.page
    await expect(page).to_have_title("#quiet · chatapp")
    # Headless tabs are always visible: switch the Page Visibility API by hand.
    set_hidden = """(hidden) => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
        Object.defineProperty(document, 'visibilityState',
            {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    await page.evaluate(set_hidden, True)
    bot = make_client()
    await bot.connect(server.url, room="quiet", name="bot")
    await bot.send("one")
    await bot.send("two")
    await expect(page).to_have_title("(2) #quiet · chatapp")
    await send(page, "my own does not count")
    await expect(page).to_have_title("(2) #quiet · chatapp")
    await page.evaluate(set_hidden, False)
    await expect(page).to_have_title("#quiet · chatapp")


async def test_server_restart_shows_every_message_exactly_once(
    start_server: ServerFactory, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    first = await start_server()
    # The page's clock stands still, so its reconnect timer cannot fire while the server
    # is away: only "Try now" brings it back, when the test says so.
    ann = await open_chat(first.url, "/r/ops", "Ann", paused_clock=True)
    page = ann.page
    for i in range(1, 4):
        await send(page, f"before {i}")

    assert await first.stop() == 0
    await expect(page.locator("#status")).to_have_attribute("data-state", "waiting")
    await expect(page.locator("#status-text")).to_contain_text("Reconnecting in")
    await expect(page.locator("#retry-now")).to_be_visible()
    # Writing goes on: the message waits for the connection.
    await page.locator("#text").fill("written while away")
    await page.locator("#text").press("Enter")
    await expect(page.locator("#pending .msg .state-label")).to_have_text("Queued")

    # The same port and database; others talk while the page is still away.
    second = await start_server("--port", str(first.port))
    bot = make_client()
    await bot.connect(second.url, room="ops", name="bot")
    for i in range(1, 4):
        assert (await bot.send(f"missed {i}"))["ok"]

    await page.locator("#retry-now").click()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#retry-now")).to_be_hidden()
    await page.clock.resume()
    await expect(page.locator("#pending .msg")).to_have_count(0)
    await bot.send("live after")
    expected = [f"before {i}" for i in range(1, 4)] + [f"missed {i}" for i in range(1, 4)]
    expected += ["written while away", "live after"]
    await expect(page.locator("#messages .msg .text")).to_have_text(expected)
    assert [m["id"] for m in await shown(page)] == list(range(1, 9))
    await send(page, "and mine")
    assert [m["id"] for m in await shown(page)] == list(range(1, 10))


async def test_reconnecting_page_keeps_the_last_known_people_and_counts(
    start_server: ServerFactory, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    first = await start_server()
    bo = await open_chat(first.url, "/r/team", "Bo")
    cy = make_client()
    await cy.connect(first.url, room="other", name="Cy")
    # Ann's clock stands still: she stays away until she clicks "Try now", and her room
    # list is polled only when the page asks for it itself.
    ann = await open_chat(first.url, "/r/team", "Ann", paused_clock=True)
    eve = await open_chat(first.url, "/r/solo", "Eve", paused_clock=True)  # alone in a room
    page = ann.page
    people = page.locator("#people .person-name")
    team = page.locator('#rooms a[data-room="team"] .room-count')
    other = page.locator('#rooms a[data-room="other"] .room-count')
    await expect(people).to_have_text(["Ann", "Bo"])
    await expect(team).to_have_text("2")
    await expect(other).to_have_text("1")

    assert await first.stop() == 0
    await expect(page.locator("#status")).to_have_attribute("data-state", "waiting")
    # The last known state, marked as such: Ann still in it, nobody at 0.
    stale = re.compile(r"\bstale\b")
    await expect(people).to_have_text(["Ann", "Bo"])
    await expect(page.locator("#people")).to_have_class(stale)
    await expect(page.locator("#people-count")).to_have_text("2")
    await expect(page.locator("#online-count")).to_have_text("2 online (last known)")
    await expect(page.locator("#rooms")).to_have_class(stale)
    await expect(team).to_have_text("2")
    await expect(other).to_have_text("1")
    await expect(other).to_have_attribute("title", "1 online when last connected")
    await expect(eve.page.locator("#status")).to_have_attribute("data-state", "waiting")
    await expect(eve.page.locator("#people .person-name")).to_have_text(["Eve"])
    await expect(eve.page.locator("#people-count")).to_have_text("1")
    await expect(eve.page.locator('#rooms a[data-room="solo"] .room-count')).to_have_text("1")

    # Back: Bo reconnects by himself, Cy does not come back, Dee opens a new room.
    second = await start_server("--port", str(first.port))
    await expect(bo.page.locator("#status")).to_have_attribute("data-state", "connected")
    dee = make_client()
    await dee.connect(second.url, room="fresh", name="Dee")
    await page.locator("#retry-now").click()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    # The welcome replaces it all, and the room list is asked for again at once.
    await expect(people).to_have_text(["Ann", "Bo"])
    await expect(page.locator("#people")).not_to_have_class(stale)
    await expect(page.locator("#online-count")).to_have_text("2 online")
    await expect(page.locator("#rooms")).not_to_have_class(stale)
    await expect(page.locator('#rooms a[data-room="fresh"] .room-count')).to_have_text("1")
    await expect(page.locator('#rooms a[data-room="other"]')).to_have_count(0)  # empty now
    await expect(team).to_have_text("2")


async def test_page_loads_nothing_from_other_origins(server: Server, open_chat: OpenChat) -> None:
    ann = await open_chat(server.url, "/r/lan", "Ann")
    await send(ann.page, "an image? https://example.com/cat.png <img src=https://example.com/x>")
    await ann.page.reload()
    await expect(ann.page.locator("#messages .msg")).to_have_count(1)
    await expect(ann.page.locator("#rooms .room-link")).not_to_have_count(0)
    own = [u for u in ann.urls if u.startswith(server.url)]
    assert any("/static/vendor/socket.io.esm.min.js" in u for u in own)
    assert any(u.startswith(server.url.replace("http", "ws") + "/socket.io/") for u in ann.urls)
    assert ann.foreign_urls() == []


async def test_offline_page_catches_up_on_more_than_one_welcome_holds(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/flood", "Ann")
    page = ann.page
    for i in range(1, 4):
        await send(page, f"mine {i}")
    await ann.context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    await expect(page.locator("#status-text")).to_have_text("Offline: waiting for the network")
    # More than the 500 a catch-up welcome carries: the page fetches the rest itself.
    bot = make_client()
    await bot.connect(server.url, room="flood", name="bot")
    for i in range(1, 621):
        assert (await bot.send(f"missed {i}"))["ok"]
    await ann.context.set_offline(False)
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#messages .msg")).to_have_count(623)
    assert [m["id"] for m in await shown(page)] == list(range(1, 624))
    await bot.send("live")
    await expect(page.locator("#messages .msg")).to_have_count(624)


async def test_day_separators_and_grouping(
    start_server: ServerFactory, open_chat: OpenChat
) -> None:
    # History from earlier days can only be made by writing it into the database.
    first = await start_server()
    assert await first.stop() == 0
    now = datetime.now(UTC)
    earlier = (now - timedelta(days=3)).replace(hour=10, minute=0)
    yesterday = (now - timedelta(days=1)).replace(hour=23, minute=58)
    rows = [
        (1, "Bo", "three days ago", earlier),
        (2, "Bo", "a minute later", earlier + timedelta(minutes=1)),
        (3, "Cy", "late yesterday", yesterday),
        (4, "Cy", "today", now),
    ]
    with sqlite3.connect(first.db) as db:
        db.executemany(
            "INSERT INTO messages (room, id, name, text, ts) VALUES ('days', ?, ?, ?, ?)",
            [(i, name, text, int(ts.timestamp() * 1000)) for i, name, text, ts in rows],
        )
    db.close()
    server = await start_server("--port", str(first.port))
    ann = await open_chat(server.url, "/r/days", "Ann", timezone_id="UTC", locale="en-US")
    page = ann.page
    await expect(page.locator("#messages .msg")).to_have_count(4)
    await expect(page.locator("#messages .day-sep")).to_have_text(
        [f"{earlier:%A}, {earlier:%B} {earlier.day}", "Yesterday", "Today"]
    )
    classes = [await li.get_attribute("class") or "" for li in await page.locator(".msg").all()]
    assert ["cont" in c.split() for c in classes] == [False, True, False, False]
    time = page.locator('.msg[data-id="3"] time')
    await expect(time).to_have_text("11:58 PM")
    await expect(time).to_have_attribute("title", re.compile(r"11:58:\d\d PM"))


async def test_page_uses_only_the_transports_the_server_accepts(
    start_server, open_chat: OpenChat
) -> None:
    # Topology (b) of docs/deploy.md: websocket only, so no long-polling request at all.
    server = await start_server("--transports", "websocket")
    ann = await open_chat(server.url, "/r/ws", "Ann")
    await send(ann.page, "over a websocket")
    await expect(message(ann.page, "over a websocket")).to_have_count(1)
    assert await ann.page.evaluate("document.body.dataset.transports") == "websocket"
    # The server's access log (on at --log-level debug) shows every finished HTTP request,
    # so long-polling would show up; the page's WebSocket is still open.
    assert "transport=polling" not in server.log()
