"""Who is who on the page: "mine" is the browser's key (its user_id), never a name.

A display name is a label anyone may take (docs/protocol.md, "Who is who"). The impostor
below is a bot connecting under the reader's name with a key of its own.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from tests.conftest import ClientFactory
from tests.support import Client, Server

from .conftest import OpenChat, expect
from .test_chat_page import send, shown

if TYPE_CHECKING:
    from playwright.async_api import Page, WebSocketRoute

#: Headless tabs are always visible: switch the Page Visibility API by hand.
SET_HIDDEN = """(hidden) => {
    Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
    Object.defineProperty(document, 'visibilityState',
        {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
    document.dispatchEvent(new Event('visibilitychange'));
}"""
IMPOSTOR_KEY = "impostor-key-0123456789"
#: The page's own key: 16 random bytes in base64url.
PAGE_KEY = re.compile(r"[A-Za-z0-9_-]{22}")


async def impostor(make_client: ClientFactory, server: Server, room: str) -> Client:
    """A bot in ``room`` calling itself "Ann", with a key of its own."""
    bot = make_client()
    await bot.connect(server.url, room=room, name="Ann", key=IMPOSTOR_KEY)
    return bot


def bubble(page: Page, text: str) -> Any:
    """The confirmed messages whose text is ``text``."""
    return page.locator("#messages .msg").filter(
        has=page.locator(".text").get_by_text(text, exact=True)
    )


async def hue(item: Any) -> str:
    """The color class ("hue-N") of a message or an avatar."""
    classes = (await item.get_attribute("class") or "").split()
    return next(c for c in classes if c.startswith("hue-"))


async def looks(item: Any) -> dict[str, Any]:
    """How a message is drawn: its side of the timeline, the sent tick, its grouping."""
    result: dict[str, Any] = await item.evaluate(
        """(li) => {
            const box = li.querySelector('.bubble').getBoundingClientRect();
            const list = li.parentElement.getBoundingClientRect();
            const tick = getComputedStyle(li.querySelector('.time'), '::after').content;
            return {
                right: list.right - box.right < box.left - list.left,
                tick: tick.includes('\\u2713'),
                grouped: li.classList.contains('cont'),
            };
        }"""
    )
    return result


async def test_an_impostor_with_my_name_is_not_me(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    await send(page, "the real Ann")
    bot = await impostor(make_client, server, "team")
    await page.evaluate(SET_HIDDEN, True)
    assert (await bot.send("not Ann at all"))["ok"]
    await expect(bubble(page, "not Ann at all")).to_have_count(1)
    # Hers: on the right with the tick. The impostor's: on the left, no tick, and not a
    # continuation of her message either (the same name, but not the same person).
    assert await looks(bubble(page, "the real Ann")) == {
        "right": True,
        "tick": True,
        "grouped": False,
    }
    assert await looks(bubble(page, "not Ann at all")) == {
        "right": False,
        "tick": False,
        "grouped": False,
    }
    assert [m["mine"] for m in await shown(page)] == [True, False]
    # Someone else's message, so it counts as unread while the tab is hidden; hers do not.
    await expect(page).to_have_title("(1) #team · chatapp")
    await send(page, "still me")
    await expect(page).to_have_title("(1) #team · chatapp")
    assert await looks(bubble(page, "still me")) == {"right": True, "tick": True, "grouped": False}
    await page.evaluate(SET_HIDDEN, False)
    await expect(page).to_have_title("#team · chatapp")


async def test_an_impostors_copy_of_my_message_on_its_way_does_not_take_its_place(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    # Hold the page's `message` events on their way to the server (everything else goes
    # through), so that her message is still on its way when the impostor's copy arrives.
    held: list[str | bytes] = []
    holding = asyncio.Event()
    upstream: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()
        upstream.append(server_side)

        def from_page(frame: str | bytes) -> None:
            if isinstance(frame, str) and re.match(r'42\d*\["message"', frame):
                held.append(frame)
                holding.set()
            else:
                server_side.send(frame)

        ws.on_message(from_page)

    await page.route_web_socket(re.compile(r"/socket\.io/"), route)
    await page.reload()  # connect again, through the route
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    bot = await impostor(make_client, server, "team")

    await page.locator("#text").fill("same words")
    await page.locator("#text").press("Enter")
    await asyncio.wait_for(holding.wait(), 10)
    pending = page.locator("#pending .msg")
    await expect(pending).to_have_attribute("data-state", "sending")
    assert (await bot.send("same words"))["ok"]
    # The impostor's message shows as theirs; hers is still on its way.
    await expect(bubble(page, "same words")).to_have_count(1)
    assert await looks(bubble(page, "same words")) == {
        "right": False,
        "tick": False,
        "grouped": False,
    }
    await expect(pending).to_have_count(1)
    await expect(pending).to_have_attribute("data-state", "sending")

    upstream[-1].send(held.pop())
    await expect(pending).to_have_count(0)
    await expect(bubble(page, "same words")).to_have_count(2)
    assert [(m["text"], m["mine"]) for m in await shown(page)] == [
        ("same words", False),
        ("same words", True),
    ]
    assert (await looks(bubble(page, "same words").nth(1)))["tick"]


async def test_two_people_with_one_name_are_two_online_and_typing(
    start_server: Any, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    # Typing indicators last a few seconds: the pages' clocks stand still, and the server's
    # own expiry is pushed out of the way (as in test_typing_indicator_shows_in_other_pages).
    server = await start_server("--typing-timeout", "60")
    ann = await open_chat(server.url, "/r/team", "Ann", paused_clock=True)
    bo = await open_chat(server.url, "/r/team", "Bo", paused_clock=True)
    bot = await impostor(make_client, server, "team")

    people = ann.page.locator("#people .person")
    await expect(people).to_have_count(3)
    await expect(ann.page.locator("#people .person-name")).to_have_text(["Ann", "Ann", "Bo"])
    await expect(ann.page.locator("#online-count")).to_have_text("3 online")
    # Each its own entry, avatar and short id; "you" is the one with her key, listed first.
    await expect(people.nth(0).locator(".you-tag")).to_have_count(1)
    await expect(ann.page.locator("#people .you-tag")).to_have_count(1)
    await expect(people.locator(".avatar")).to_have_count(3)
    ids = ann.page.locator("#people .person-id")
    await expect(ids).to_have_count(2)  # only the names two people share need one
    first, second = await ids.all_text_contents()
    assert first != second
    await expect(bo.page.locator("#people .person-name")).to_have_text(["Bo", "Ann", "Ann"])
    await expect(bo.page.locator("#people .you-tag")).to_have_count(1)

    # The impostor typing is someone else typing, even in Ann's page.
    await bot.call("typing", {"typing": True})
    await expect(ann.page.locator("#typing")).to_have_text("Ann is typing…")
    await ann.page.locator("#text").type("hi")
    await expect(bo.page.locator("#typing")).to_have_text("Ann and Ann are typing…")
    await expect(ann.page.locator("#typing")).to_have_text("Ann is typing…")  # not herself

    # The impostor leaves: only its indicator ends, and one Ann is left online.
    await bot.close()
    await expect(bo.page.locator("#typing")).to_have_text("Ann is typing…")
    await expect(ann.page.locator("#typing")).to_have_text("")
    await ann.page.clock.resume()  # a departure shows after a 2 s grace
    await expect(people).to_have_count(2)
    await expect(ann.page.locator("#people .person-name")).to_have_text(["Ann", "Bo"])
    await expect(ann.page.locator("#people .person-id")).to_have_count(0)


async def test_a_reload_and_a_second_tab_are_still_me(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    key = await page.evaluate("localStorage.getItem('chatapp.key')")
    await send(page, "before the reload")
    bot = await impostor(make_client, server, "team")
    assert (await bot.send("from the impostor"))["ok"]
    await expect(bubble(page, "from the impostor")).to_have_count(1)

    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#messages .msg")).to_have_count(2)
    assert [m["mine"] for m in await shown(page)] == [True, False]
    # Made once, kept in localStorage: the same key after the reload.
    assert PAGE_KEY.fullmatch(key or ""), key
    assert await page.evaluate("localStorage.getItem('chatapp.key')") == key

    # Another tab of the same browser is the same person: one entry, "you" in both tabs.
    tab = await open_chat(server.url, "/r/team", tab_of=ann)
    await expect(tab.page.locator("#my-name")).to_have_text("Ann")
    for p in (page, tab.page):
        await expect(p.locator("#people .person")).to_have_count(2)
        await expect(p.locator("#people .you-tag")).to_have_count(1)
    await expect(tab.page.locator("#messages .msg")).to_have_count(2)
    assert [m["mine"] for m in await shown(tab.page)] == [True, False]
    await send(tab.page, "from the second tab")
    await expect(bubble(page, "from the second tab")).to_have_count(1)
    assert [m["mine"] for m in await shown(page)] == [True, False, True]


async def test_a_rename_keeps_my_messages_mine_and_my_old_name_is_not_me(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    page = ann.page
    await send(page, "as Ann")
    await page.locator("#change-name").click()
    await page.locator("#name-input").fill("Annie")
    await page.locator("#name-input").press("Enter")
    await expect(page.locator("#my-name")).to_have_text("Annie")
    await send(page, "as Annie")
    # Someone else takes the name she left.
    bot = await impostor(make_client, server, "team")
    assert (await bot.send("the other Ann"))["ok"]
    await expect(bubble(page, "the other Ann")).to_have_count(1)
    await expect(bubble(bo.page, "the other Ann")).to_have_count(1)
    assert [(m["name"], m["mine"]) for m in await shown(page)] == [
        ("Ann", True),
        ("Annie", True),
        ("Ann", False),
    ]
    assert not any(m["mine"] for m in await shown(bo.page))
    # A new name is not a new person: her message under it is not grouped with the one
    # before (its name shows), and the impostor's is not grouped with hers.
    assert [(await looks(bubble(page, t)))["grouped"] for t in ("as Annie", "the other Ann")] == [
        False,
        False,
    ]
    await expect(page.locator("#people .person-name")).to_have_text(["Annie", "Ann", "Bo"])
    await expect(page.locator("#people .person").nth(0).locator(".you-tag")).to_have_count(1)
    # Her color is hers, under either name: the same in Bo's timeline and list.
    hues = [await hue(bubble(bo.page, t)) for t in ("as Ann", "as Annie")]
    hues.append(await hue(bo.page.locator("#people .person", has_text="Annie").locator(".avatar")))
    assert len(set(hues)) == 1, hues

    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#messages .msg")).to_have_count(3)
    assert [m["mine"] for m in await shown(page)] == [True, True, False]


async def test_a_key_the_server_refuses_is_replaced_by_a_new_one(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bad = "not a key!"
    reason = await make_client().connect_refused(server.url, name="probe", key=bad)
    assert reason.startswith("invalid key")
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    # Written by something else than this page (an older version, a hand edit).
    await page.evaluate("(bad) => localStorage.setItem('chatapp.key', bad)", bad)
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    key = await page.evaluate("localStorage.getItem('chatapp.key')")
    assert PAGE_KEY.fullmatch(key or ""), key
    await send(page, "with the new key")
    assert [m["mine"] for m in await shown(page)] == [True]


async def test_without_storage_the_key_lasts_for_the_page(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", name=None)
    page = ann.page
    # A browser that refuses the page any storage (as some privacy settings do).
    await page.add_init_script(
        """Object.defineProperty(window, 'localStorage', {
            get() { throw new DOMException('storage is disabled', 'SecurityError'); },
        });"""
    )
    for visit in (1, 2):
        await page.reload()
        await page.locator("#name-input").fill("Ann")  # not remembered either
        await page.locator("#name-input").press("Enter")
        await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
        await send(page, f"visit {visit}")
        # Hers on this visit; the first visit's was another key's, so another person's.
        assert [m["mine"] for m in await shown(page)] == [False, True][-visit:]
