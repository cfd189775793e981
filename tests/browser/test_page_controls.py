"""The page's controls: sending states, limits, name, rooms, keyboard, layout and themes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chatapp import protocol
from tests.conftest import ClientFactory, ServerFactory
from tests.support import Server

from .conftest import OpenChat, expect
from .test_chat_page import send, shown

if TYPE_CHECKING:
    from playwright.async_api import Page


#: Records the states the page's pending messages go through, and every label shown.
RECORD_SEND_STATES = """() => {
    window.__sendLog = [];
    window.__sendLabels = new Set();
    new MutationObserver((records) => {
        for (const r of records) {
            if (r.type === "attributes" && r.oldValue !== null) {
                window.__sendLog.push([r.target.dataset.clientId, r.oldValue]);
            }
        }
        for (const label of document.querySelectorAll("#pending .state-label")) {
            window.__sendLabels.add(label.textContent);
        }
    }).observe(document.getElementById("pending"), {
        subtree: true, childList: true, characterData: true,
        attributes: true, attributeFilter: ["data-state"], attributeOldValue: true,
    });
}"""


async def send_states(page: Page) -> dict[str, list[str]]:
    """Each pending message's states in order, by client_id. A delivered message's last
    state, "sending", is missing: it left the list in that state."""
    states: dict[str, list[str]] = await page.evaluate(
        """() => {
            const states = {};
            for (const [id, state] of window.__sendLog) (states[id] ??= []).push(state);
            for (const li of document.querySelectorAll("#pending .msg")) {
                (states[li.dataset.clientId] ??= []).push(li.dataset.state);
            }
            return states;
        }"""
    )
    return states


async def test_quick_sends_over_the_rate_limit_arrive_in_typed_order_without_a_click(
    start_server: ServerFactory, open_chat: OpenChat
) -> None:
    server = await start_server()  # the default limits: 10 messages at once, then 1 a second
    ann = await open_chat(server.url, "/", "Ann")
    bo = await open_chat(server.url, "/", "Bo")
    await ann.page.evaluate(RECORD_SEND_STATES)
    texts = [f"quick {i}" for i in range(1, 15)]
    box = ann.page.locator("#text")
    for text in texts:
        await box.fill(text)
        await box.press("Enter")
    # Nobody clicks anything: the page waits out the limit and sends the rest itself.
    await expect(bo.page.locator("#messages .msg .text")).to_have_text(texts)
    await expect(ann.page.locator("#messages .msg.sent .text")).to_have_text(texts)
    await expect(ann.page.locator("#pending .msg")).to_have_count(0)
    assert [m["id"] for m in await shown(bo.page)] == list(range(1, 15))
    states = await send_states(ann.page)
    # The server did say "rate limited" (messages went from sending back to the queue), and
    # nothing ever failed or showed a countdown.
    assert any("sending" in s for s in states.values()), states
    assert not any("failed" in s for s in states.values()), states
    assert set(await ann.page.evaluate("[...window.__sendLabels]")) <= {"Queued", "Sending…"}


async def test_messages_written_offline_are_queued_and_go_in_order_once_back(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/train", "Ann")
    bo = await open_chat(server.url, "/r/train", "Bo")
    await send(ann.page, "before the tunnel")
    await ann.context.set_offline(True)
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "offline")
    box = ann.page.locator("#text")
    away = [f"in the tunnel {i}" for i in range(1, 4)]
    for text in away:
        await box.fill(text)
        await box.press("Enter")
    queued = ann.page.locator("#pending .msg")
    await expect(queued.locator(".text")).to_have_text(away)
    await expect(queued.locator(".state-label")).to_have_text(["Queued"] * 3)
    await expect(queued.locator("button")).to_have_count(0)
    await send(bo.page, "meanwhile")
    await ann.context.set_offline(False)
    expected = ["before the tunnel", "meanwhile", *away]
    await expect(bo.page.locator("#messages .msg .text")).to_have_text(expected)
    await expect(ann.page.locator("#messages .msg .text")).to_have_text(expected)
    await expect(ann.page.locator("#pending .msg")).to_have_count(0)
    assert [m["id"] for m in await shown(ann.page)] == [1, 2, 3, 4, 5]


async def test_a_refused_message_keeps_retry_and_discard_while_later_ones_go(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    # A lone surrogate (broken text, say from a bad paste) is a text the server refuses.
    bad = "broken \ud800 text"
    probe = make_client()
    await probe.connect(server.url, room="elsewhere", name="probe")
    refused = await probe.send(bad)
    assert not refused["ok"] and "retry_after" not in refused
    ann = await open_chat(server.url, "/", "Ann")
    bo = await open_chat(server.url, "/", "Bo")
    page = ann.page
    await page.evaluate(RECORD_SEND_STATES)
    box = page.locator("#text")
    await box.evaluate(
        "(box, bad) => { box.value = bad; box.dispatchEvent(new Event('input')); }", bad
    )
    await box.press("Enter")
    for text in ("after 1", "after 2"):
        await box.fill(text)
        await box.press("Enter")

    failed = page.locator('#pending .msg[data-state="failed"]')
    await expect(failed.locator(".state-label")).to_have_text(f"Not sent: {refused['error']}")
    # The ones behind it were not held up.
    await expect(bo.page.locator("#messages .msg .text")).to_have_text(["after 1", "after 2"])
    await expect(page.locator("#messages .msg.sent .text")).to_have_text(["after 1", "after 2"])
    await expect(page.locator("#pending .msg")).to_have_count(1)

    # Retry sends it again, with its client_id (and the server refuses it again).
    client_id = await failed.get_attribute("data-client-id")
    await failed.locator("button.retry").click()
    # (Its second "failed" is the current state: the first is in the log once left.)
    await page.wait_for_function(
        "(id) => window.__sendLog.filter(([c, s]) => c === id && s === 'failed').length === 1"
        " && document.querySelector(`[data-client-id='${id}']`).dataset.state === 'failed'",
        arg=client_id,
    )
    assert (await send_states(page))[client_id] == ["queued", "sending", "failed"] * 2
    await expect(failed.locator(".state-label")).to_have_text(f"Not sent: {refused['error']}")
    await expect(page.locator("#pending .msg")).to_have_count(1)

    await failed.locator("button.discard").click()
    await expect(page.locator("#pending .msg")).to_have_count(0)
    await expect(box).to_be_focused()
    await send(page, "after 3")
    await expect(bo.page.locator("#messages .msg .text")).to_have_text(
        ["after 1", "after 2", "after 3"]
    )


async def test_character_counter_counts_the_text_as_sent_against_the_servers_limit(
    server: Server, open_chat: OpenChat
) -> None:
    limit = protocol.MAX_TEXT
    ann = await open_chat(server.url, "/", "Ann")
    # The server renders its limits into the page; the page keeps no copy of its own.
    body = ann.page.locator("body")
    await expect(body).to_have_attribute("data-max-text", str(limit))
    await expect(body).to_have_attribute("data-max-name", str(protocol.MAX_NAME))
    await expect(body).to_have_attribute("data-max-history", str(protocol.HISTORY_MAX))
    box, counter, button = (ann.page.locator(s) for s in ("#text", "#counter", "#send"))
    await box.fill("short")
    await expect(counter).to_have_text("")
    await expect(button).to_be_enabled()
    await box.fill("x" * (limit - 10))
    await expect(counter).to_have_text("10 characters left")
    # The server counts code points: an emoji is one character, not two.
    await box.fill("😀" * (limit - 5))
    await expect(counter).to_have_text("5 characters left")
    await box.fill("x" * (limit + 3))
    await expect(counter).to_have_text(f"3 characters over the {limit} limit")
    await expect(button).to_be_disabled()
    await box.press("Enter")
    await expect(ann.page.locator("#pending .msg")).to_have_count(0)
    # Whitespace is part of the text as sent: it counts.
    await box.fill(" " * 10 + "x" * (limit - 5))
    await expect(counter).to_have_text(f"5 characters over the {limit} limit")
    await expect(button).to_be_disabled()
    # A blank text is refused, however long.
    await box.fill(" \n\t " * 3)
    await expect(counter).to_have_text("")
    await expect(button).to_be_disabled()
    await box.press("Enter")
    await expect(ann.page.locator("#pending .msg")).to_have_count(0)
    text = " " + "x" * (limit - 2) + " "
    await box.fill(text)
    await expect(counter).to_have_text("0 characters left")
    await box.press("Enter")
    await expect(ann.page.locator("#messages .msg.sent")).to_have_count(1)
    assert (await shown(ann.page))[0]["text"] == text


async def test_send_button_waits_for_the_connection_and_the_name_is_asked_once(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/", name=None)
    page = ann.page
    dialog = page.locator("#name-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#send")).to_be_disabled()
    # A name is required: Escape does not skip it, an empty one is refused.
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_visible()
    await page.locator("#name-ok").click()
    await expect(page.locator("#name-error")).to_have_text("Please enter a name.")
    # Longer than the server's limit (in code points): said before asking the server.
    await page.locator("#name-input").fill("é" * (protocol.MAX_NAME + 1))
    await page.locator("#name-input").press("Enter")
    await expect(page.locator("#name-error")).to_have_text(
        f"At most {protocol.MAX_NAME} characters, please."
    )
    await page.locator("#name-input").fill("  Ann  ")
    await page.locator("#name-input").press("Enter")
    await expect(dialog).to_be_hidden()
    # The name chosen, the message box is where the next keystrokes go.
    await expect(page.locator("#text")).to_be_focused()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#my-name")).to_have_text("Ann")
    await expect(page.locator("#send")).to_be_disabled()  # nothing to send yet
    await page.locator("#text").fill("hi")
    await expect(page.locator("#send")).to_be_enabled()
    await page.locator("#send").click()
    await expect(page.locator("#messages .msg.sent")).to_have_count(1)

    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(dialog).to_be_hidden()
    assert await page.evaluate("localStorage.getItem('chatapp.name')") == "Ann"


async def test_a_name_the_server_refuses_is_asked_again_with_its_reason(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bad = "a\u0007b"
    reason = await make_client().connect_refused(server.url, name=bad)
    assert reason.startswith("invalid name")
    # Typed on the first visit: the page has no rule of its own for it, the server says no.
    ann = await open_chat(server.url, "/", bad, wait_connected=False)
    await expect(ann.page.locator("#name-dialog")).to_be_visible()
    await expect(ann.page.locator("#name-error")).to_have_text(reason)
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "refused")
    await ann.page.locator("#name-input").fill("Ann")
    await ann.page.locator("#name-input").press("Enter")
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(ann.page.locator("#text")).to_be_focused()
    # Stored by an older version of the page: asked again as well.
    await ann.page.evaluate("(bad) => localStorage.setItem('chatapp.name', bad)", bad)
    await ann.page.reload()
    await expect(ann.page.locator("#name-dialog")).to_be_visible()
    await expect(ann.page.locator("#name-error")).to_have_text(reason)
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "refused")
    await ann.page.locator("#name-input").fill("Ann")
    await ann.page.locator("#name-input").press("Enter")
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "connected")


async def test_rename_is_refused_with_the_servers_reason_or_applied(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    probe = make_client()
    await probe.connect(server.url, room="elsewhere", name="probe")
    refused = await probe.call("rename", {"name": "tab\there"})
    assert not refused["ok"]
    ann = await open_chat(server.url, "/", "Ann")
    bo = await open_chat(server.url, "/", "Bo")
    await send(ann.page, "as Ann")
    page = ann.page
    await page.locator("#change-name").click()
    await expect(page.locator("#name-dialog")).to_be_visible()
    await page.locator("#name-input").fill("   ")
    await page.locator("#name-input").press("Enter")
    await expect(page.locator("#name-error")).to_have_text("Please enter a name.")
    # What the server refuses, it says why, in its own words.
    await page.locator("#name-input").fill("tab\there")
    await page.locator("#name-input").press("Enter")
    await expect(page.locator("#name-error")).to_have_text(refused["error"])
    await expect(page.locator("#name-dialog")).to_be_visible()
    await page.keyboard.press("Escape")  # changing is optional
    await expect(page.locator("#name-dialog")).to_be_hidden()
    await expect(page.locator("#my-name")).to_have_text("Ann")

    await page.locator("#change-name").click()
    await page.locator("#name-input").fill("Annie")
    await page.locator("#name-ok").click()
    await expect(page.locator("#name-dialog")).to_be_hidden()
    await expect(bo.page.locator("#people .person-name")).to_have_text(["Bo", "Annie"])
    await send(page, "as Annie")
    # Both are this reader's own messages, under either name.
    assert [m["mine"] for m in await shown(page)] == [True, True]
    assert [m["name"] for m in await shown(bo.page)] == ["Ann", "Annie"]
    assert await page.evaluate("localStorage.getItem('chatapp.name')") == "Annie"


async def test_going_to_another_room_and_the_active_rooms_list(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/alpha", "Ann")
    await send(ann.page, "hello")
    bo = await open_chat(server.url, "/", "Bo")
    alpha = bo.page.locator('#rooms a[data-room="alpha"]')
    await expect(alpha).to_have_attribute("href", "/r/alpha")
    await expect(alpha.locator(".room-count")).to_have_text("1")
    await expect(bo.page.locator('#rooms a[aria-current="page"]')).to_have_attribute(
        "data-room", "lobby"
    )

    room_input = bo.page.locator("#room-input")
    await room_input.fill("no spaces!")
    await room_input.press("Enter")
    # The server's rule, in its words (the page keeps no copy of it).
    await expect(bo.page.locator("#room-error")).to_have_text(protocol.ROOM_RULE)
    await expect(bo.page).to_have_url(server.url + "/")
    await room_input.fill("x" * 65)
    await room_input.press("Enter")
    await expect(bo.page.locator("#room-error")).to_have_text(protocol.ROOM_RULE)
    await room_input.fill("  ")
    await room_input.press("Enter")
    await expect(bo.page.locator("#room-error")).to_have_text("Please enter a room name.")
    # Asked over the page's connection (a subscription): no failed request to log.
    assert bo.errors == []

    await room_input.fill("#Alpha")
    await room_input.press("Enter")
    await expect(bo.page).to_have_url(server.url + "/r/alpha")
    await expect(bo.page.locator("h1")).to_have_text("#alpha")
    await expect(bo.page.locator("#messages .msg .text")).to_have_text(["hello"])
    await expect(ann.page.locator("#people .person-name")).to_have_text(["Ann", "Bo"])
    await expect(ann.page.locator('#rooms a[data-room="alpha"] .room-count')).to_have_text("2")


async def test_copy_link_puts_the_room_url_on_the_clipboard(
    server: Server, open_chat: OpenChat
) -> None:
    # "Copied!" lasts two seconds of the page's clock: it stands still until the test has
    # seen it.
    ann = await open_chat(
        server.url,
        "/r/share",
        "Ann",
        paused_clock=True,
        permissions=["clipboard-read", "clipboard-write"],
    )
    await ann.page.locator("#copy-link").click()
    await expect(ann.page.locator("#copy-label")).to_have_text("Copied!")
    assert await ann.page.evaluate("navigator.clipboard.readText()") == server.url + "/r/share"
    await ann.page.clock.run_for(1900)
    await expect(ann.page.locator("#copy-label")).to_have_text("Copied!")
    await ann.page.clock.run_for(200)
    await expect(ann.page.locator("#copy-label")).to_have_text("Copy link")


async def test_accessible_names_live_region_and_keyboard_only_use(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/", "Ann")
    bo = await open_chat(server.url, "/", "Bo")
    page = ann.page
    log = page.locator("#log")
    await expect(log).to_have_attribute("role", "log")
    await expect(log).to_have_attribute("aria-live", "polite")
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('button, input, textarea, a[href]')]
            .filter((e) => !(e.getAttribute('aria-label')
                || (e.labels && [...e.labels].some((l) => l.textContent.trim()))
                || e.textContent.trim()))
            .map((e) => e.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []
    await expect(page.get_by_role("textbox", name="Message #lobby")).to_be_visible()
    await expect(page.get_by_role("button", name="Send message")).to_be_visible()
    await expect(page.get_by_role("textbox", name="Go to a room")).to_be_visible()

    # From the top of a freshly loaded page (the name remembered): Tab to the skip link,
    # follow it, type, Enter.
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await page.keyboard.press("Tab")
    await expect(page.locator(".skip-link")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#text")).to_be_focused()
    await page.keyboard.type("sent from the keyboard")
    await page.keyboard.press("Enter")
    await expect(bo.page.locator("#messages .msg .text")).to_have_text(["sent from the keyboard"])
    # The name dialog by keyboard too.
    await page.locator("#change-name").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#name-input")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#change-name")).to_be_focused()


async def test_phone_width_hides_the_side_panel_behind_a_menu(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(
        server.url, "/", "Ann", viewport={"width": 390, "height": 780}, is_mobile=True
    )
    page = ann.page
    sidebar, menu = page.locator("#sidebar"), page.locator("#menu-toggle")
    await expect(sidebar).not_to_be_in_viewport()
    await expect(menu).to_be_visible()
    await expect(menu).to_have_attribute("aria-expanded", "false")
    await expect(page.locator("#text")).to_be_in_viewport()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing sticks out sideways

    await menu.click()
    await expect(sidebar).to_be_in_viewport()
    await expect(menu).to_have_attribute("aria-expanded", "true")
    await expect(page.locator("#people .person-name")).to_have_text(["Ann"])
    await expect(page.locator("#room-input")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(sidebar).not_to_be_in_viewport()
    await expect(menu).to_be_focused()


async def test_dark_mode_and_reduced_motion_follow_the_system(
    server: Server, open_chat: OpenChat
) -> None:
    background = "getComputedStyle(document.body).backgroundColor"
    animation = "getComputedStyle(document.getElementById('jump')).animationName"

    light = await open_chat(server.url, "/", "Ann", color_scheme="light")
    dark = await open_chat(server.url, "/", "Bo", color_scheme="dark", reduced_motion="reduce")

    def brightness(rgb: str) -> float:
        r, g, b = (int(v) for v in re.findall(r"\d+", rgb)[:3])
        return (r * 299 + g * 587 + b * 114) / 1000

    assert brightness(await light.page.evaluate(background)) > 200
    assert brightness(await dark.page.evaluate(background)) < 60
    assert await light.page.evaluate(animation) == "rise"
    assert await dark.page.evaluate(animation) == "none"
