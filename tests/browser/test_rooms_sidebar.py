"""All my rooms in one tab: the sidebar's rooms with their unread counts, switching rooms
without a page load (each keeping its own messages and scroll position), the browser's
back and forward, and every room catching up after the connection comes back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.conftest import ClientFactory, ServerFactory
from tests.support import Client, Server

from .conftest import ChatPage, OpenChat, expect
from .test_chat_page import send, shown
from .test_deleting import BOT_KEY, TOMBSTONE

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

#: Set before switching rooms: a page load would lose it.
MARK_THIS_PAGE = "window.__samePage = true"
SAME_PAGE = "window.__samePage === true"


def my_room(page: Page, room: str) -> Locator:
    """The sidebar's link to one of my rooms."""
    return page.locator(f'#my-rooms a[data-room="{room}"]')


def unread(page: Page, room: str) -> Locator:
    return my_room(page, room).locator(".unread")


async def add_room(page: Page, room: str) -> None:
    """Add a room with the sidebar's form; it is then the shown room."""
    await page.locator("#room-input").fill(room)
    await page.locator("#room-input").press("Enter")
    await expect(page.locator("h1")).to_have_text(f"#{room}")
    await expect(my_room(page, room)).to_have_attribute("aria-current", "page")


async def switch_to(page: Page, room: str) -> None:
    """Click a room in the sidebar; wait until it is the shown one."""
    await my_room(page, room).click()
    await expect(page.locator("h1")).to_have_text(f"#{room}")
    await expect(my_room(page, room)).to_have_attribute("aria-current", "page")


async def bot_in(make_client: ClientFactory, server: Server, room: str) -> Client:
    bot = make_client()
    await bot.connect(server.url, room=room, name=f"{room}-bot")
    return bot


async def texts(chat: ChatPage) -> list[str]:
    return [m["text"] for m in await shown(chat.page)]


async def test_three_rooms_each_with_its_own_messages_unread_count_and_scroll_position(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    bots = {room: await bot_in(make_client, server, room) for room in ("alpha", "beta", "gamma")}
    for i in range(40):
        assert (await bots["beta"].send(f"beta filler {i}"))["ok"]
    ann = await open_chat(server.url, "/r/alpha", "Ann", viewport={"width": 900, "height": 500})
    page = ann.page
    await add_room(page, "beta")
    await expect(page).to_have_url(server.url + "/r/beta")
    await expect(page.locator("#messages .msg")).to_have_count(40)
    await add_room(page, "gamma")
    await expect(page.locator("#my-rooms .room-name")).to_have_text(["alpha", "beta", "gamma"])
    await page.evaluate(MARK_THIS_PAGE)

    # Reading further up in beta, then off to alpha.
    await switch_to(page, "beta")
    scroller = page.locator("#scroller")
    await scroller.evaluate(
        "(s) => { s.scrollTop = s.scrollHeight / 3; s.dispatchEvent(new Event('scroll')); }"
    )
    top = await scroller.evaluate("(s) => s.scrollTop")
    assert top > 0
    await switch_to(page, "alpha")
    await expect(page).to_have_url(server.url + "/r/alpha")

    # Messages come in every room: the shown room's are read as they come, the others count.
    for i in (1, 2):
        assert (await bots["beta"].send(f"beta news {i}"))["ok"]
    for i in (1, 2, 3):
        assert (await bots["gamma"].send(f"gamma news {i}"))["ok"]
    assert (await bots["alpha"].send("alpha news"))["ok"]
    await expect(page.locator("#messages .msg .text")).to_have_text(["alpha news"])
    await expect(unread(page, "beta")).to_have_text("2 unread")
    await expect(unread(page, "gamma")).to_have_text("3 unread")
    await expect(unread(page, "alpha")).to_be_hidden()
    # Mine, sent in the shown room, go to that room only, and count nowhere.
    await send(page, "mine in alpha")
    await bots["alpha"].wait_for("message", lambda m: m["text"] == "mine in alpha")
    assert await texts(ann) == ["alpha news", "mine in alpha"]

    await switch_to(page, "gamma")
    await expect(page).to_have_url(server.url + "/r/gamma")
    assert await texts(ann) == ["gamma news 1", "gamma news 2", "gamma news 3"]
    await expect(unread(page, "gamma")).to_be_hidden()  # shown at its newest: read

    # Beta is where the reader left it; what came meanwhile waits below, still unread.
    await switch_to(page, "beta")
    assert await scroller.evaluate("(s) => s.scrollTop") == top
    await expect(unread(page, "beta")).to_have_text("2 unread")
    await expect(page.locator("#jump")).to_have_text("2 new messages")
    await expect(page.locator("#messages .msg")).to_have_count(42)
    await page.locator("#jump").click()
    await expect(unread(page, "beta")).to_be_hidden()
    expected = [f"beta filler {i}" for i in range(40)] + ["beta news 1", "beta news 2"]
    assert await texts(ann) == expected
    assert await page.evaluate(SAME_PAGE)  # none of it loaded a page


async def test_back_and_forward_switch_rooms_and_an_address_adds_its_room(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    one = await bot_in(make_client, server, "one")
    assert (await one.send("in one"))["ok"]
    two = await bot_in(make_client, server, "two")
    assert (await two.send("in two"))["ok"]
    ann = await open_chat(server.url, "/r/one", "Ann")
    page = ann.page
    await expect(my_room(page, "one")).to_have_attribute("aria-current", "page")
    # Opening a room's address adds it to my rooms, and the page follows both.
    await page.goto(server.url + "/r/two")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#my-rooms .room-name")).to_have_text(["one", "two"])
    await expect(my_room(page, "two")).to_have_attribute("aria-current", "page")
    await expect(page.locator("#messages .msg .text")).to_have_text(["in two"])
    await page.evaluate(MARK_THIS_PAGE)

    await switch_to(page, "one")
    await expect(page).to_have_url(server.url + "/r/one")
    await expect(page.locator("#messages .msg .text")).to_have_text(["in one"])
    await expect(page).to_have_title("#one · chatapp")

    await page.go_back()
    await expect(page).to_have_url(server.url + "/r/two")
    await expect(page.locator("h1")).to_have_text("#two")
    await expect(my_room(page, "two")).to_have_attribute("aria-current", "page")
    await expect(page.locator("#messages .msg .text")).to_have_text(["in two"])
    await expect(page).to_have_title("#two · chatapp")
    # What the message box says, and sends to, follows.
    await expect(page.get_by_role("textbox", name="Message #two")).to_be_visible()
    await send(page, "back in two")
    await two.wait_for("message", lambda m: m["text"] == "back in two")

    await page.go_forward()
    await expect(page).to_have_url(server.url + "/r/one")
    await expect(page.locator("h1")).to_have_text("#one")
    await expect(page.locator("#messages .msg .text")).to_have_text(["in one"])
    assert await page.evaluate(SAME_PAGE)

    # Leaving a room: gone from the list, and from the connection (no count for it).
    await my_room(page, "two").hover()
    await page.get_by_role("button", name="Leave #two").click()
    await expect(page.locator("#my-rooms .room-name")).to_have_text(["one"])
    await two.wait_for("presence", lambda e: e.get("left") == "Ann")
    assert (await two.send("after she left"))["ok"]
    assert (await one.send("still here"))["ok"]
    await expect(page.locator("#messages .msg .text")).to_have_text(["in one", "still here"])
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#my-rooms .room-name")).to_have_text(["one"])


async def test_a_room_that_is_not_shown_catches_up_exactly_once_after_going_offline(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    front = await bot_in(make_client, server, "front")
    back = make_client()
    await back.connect(server.url, room="back", name="back-bot", key=BOT_KEY)
    ann = await open_chat(server.url, "/r/front", "Ann")
    page = ann.page
    await add_room(page, "back")
    await switch_to(page, "front")
    assert (await back.send("soon deleted"))["ok"]
    assert (await back.send("before"))["ok"]
    await expect(unread(page, "back")).to_have_text("2 unread")

    await ann.context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    for i in (1, 2):
        assert (await back.send(f"missed {i}"))["ok"]
    assert (await back.call("delete", {"id": 1}))["ok"]
    assert (await front.send("missed in front"))["ok"]
    await ann.context.set_offline(False)
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(unread(page, "back")).to_have_text("4 unread")
    await expect(page.locator("#messages .msg .text")).to_have_text(["missed in front"])
    # Live again in the room not shown as well.
    assert (await back.send("live"))["ok"]
    await expect(unread(page, "back")).to_have_text("5 unread")

    # What came meanwhile, once each; and what was deleted meanwhile, deleted.
    await switch_to(page, "back")
    caught_up = [TOMBSTONE, "before", "missed 1", "missed 2", "live"]
    await expect(page.locator("#messages .msg .text")).to_have_text(caught_up)
    assert [m["id"] for m in await shown(page)] == [1, 2, 3, 4, 5]
    await expect(unread(page, "back")).to_be_hidden()
    assert (await back.send("and after"))["ok"]
    await expect(page.locator("#messages .msg .text")).to_have_text([*caught_up, "and after"])


async def test_each_room_has_its_own_people_typing_and_draft(
    start_server: ServerFactory, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    # Indicators expire on timers: the page's clock stands still and the server's expiry is
    # out of the way, so only the events below start and end them.
    server = await start_server("--typing-timeout", "60")
    alpha = await bot_in(make_client, server, "alpha")
    beta = await bot_in(make_client, server, "beta")
    ann = await open_chat(server.url, "/r/alpha", "Ann", paused_clock=True)
    page = ann.page
    await add_room(page, "beta")
    await expect(page.locator("#people .person-name")).to_have_text(["Ann", "beta-bot"])
    await page.locator("#text").fill("half a thought for beta")
    await beta.wait_for("typing", lambda e: e["name"] == "Ann" and e["typing"])
    await switch_to(page, "alpha")
    # Typing is for the room it is typed in: leaving it ends it there.
    await beta.wait_for("typing", lambda e: e["name"] == "Ann" and not e["typing"])
    await expect(page.locator("#people .person-name")).to_have_text(["Ann", "alpha-bot"])
    await expect(page.locator("#online-count")).to_have_text("2 online")
    await expect(page.locator("#text")).to_have_value("")

    # Alpha is the room the page connected to: its typing events name no room.
    assert (await alpha.call("typing", {"typing": True}))["ok"]
    await expect(page.locator("#typing")).to_have_text("alpha-bot is typing…")
    assert (await beta.call("typing", {"typing": True}))["ok"]
    await switch_to(page, "beta")
    await expect(page.locator("#typing")).to_have_text("beta-bot is typing…")
    await expect(page.locator("#text")).to_have_value("half a thought for beta")
    assert (await alpha.call("typing", {"typing": False}))["ok"]
    await switch_to(page, "alpha")
    await expect(page.locator("#typing")).to_have_text("")
    # Ann typing in alpha is heard in alpha only.
    heard_in_beta = len(beta.of("typing"))
    await page.locator("#text").type("hi")
    await alpha.wait_for("typing", lambda e: e["name"] == "Ann" and e["typing"])
    assert len(beta.of("typing")) == heard_in_beta


async def test_on_a_phone_my_rooms_are_in_the_side_panel_which_gets_out_of_the_way(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(
        server.url, "/r/here", "Ann", viewport={"width": 390, "height": 780}, is_mobile=True
    )
    page = ann.page
    sidebar, menu = page.locator("#sidebar"), page.locator("#menu-toggle")
    await menu.click()
    await expect(sidebar).to_be_in_viewport()
    await add_room(page, "there")
    # The room picked is what the reader wants to see: the panel closes, the box is ready.
    await expect(sidebar).not_to_be_in_viewport()
    await expect(page.locator("#text")).to_be_focused()
    await menu.click()
    await expect(my_room(page, "here")).to_be_visible()
    await switch_to(page, "here")
    await expect(sidebar).not_to_be_in_viewport()
    await expect(menu).to_have_attribute("aria-expanded", "false")
    await expect(page).to_have_url(server.url + "/r/here")
