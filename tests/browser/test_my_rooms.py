"""An account's rooms on the page: the sidebar comes from the server (another device shows
the same rooms, with what is unread there), read marks travel between the account's pages,
mentions of me are counted and shown, @ completion in the message box, and direct
messages between accounts (docs/protocol.md: `read`, `dm`, `GET /api/me/rooms`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tests.conftest import ClientFactory
from tests.support import Client, Server
from tests.test_sign_in import add_account, cookie, sign_in

from .conftest import ChatPage, OpenChat, expect
from .test_rooms_sidebar import add_room, bot_in, my_room, switch_to, unread

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

PASSWORD = "a long enough password"


async def account(server: Server, handle: str, display_name: str) -> str:
    """Make an account; its sign-in (the cookie's value)."""
    await add_account(server.db, handle, PASSWORD, display_name)
    return await sign_in(server, handle, PASSWORD)


async def signed_in(open_chat: OpenChat, server: Server, token: str, path: str) -> ChatPage:
    """The page at ``path`` in a new browser (another device) signed in with ``token``."""
    session = {
        "name": "chatapp_session",
        "value": token,
        "domain": urlsplit(server.url).hostname,
        "path": "/",
        "expires": -1,
        "httpOnly": True,
        "secure": False,
        "sameSite": "Lax",
    }
    chat = await open_chat(
        server.url,
        path,
        name=None,
        wait_connected=False,
        storage_state={"cookies": [session], "origins": []},
    )
    await expect(chat.page.locator("#status")).to_have_attribute("data-state", "connected")
    return chat


async def member(make_client: ClientFactory, server: Server, token: str, room: str) -> Client:
    """An account's connection (a script, not a page) in ``room``."""
    client = make_client(headers=cookie(token))
    await client.connect(server.url, room=room)
    return client


def mentions(page: Page, room: str) -> Locator:
    return my_room(page, room).locator(".mention-count")


async def test_my_rooms_come_back_on_another_device_with_what_is_unread_there(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    token = await account(server, "ann", "Ann A")
    bots = {room: await bot_in(make_client, server, room) for room in ("alpha", "beta", "gamma")}
    assert (await bots["beta"].send("before Ann came"))["ok"]
    laptop = await signed_in(open_chat, server, token, "/r/alpha")
    await add_room(laptop.page, "beta")
    await add_room(laptop.page, "gamma")
    await switch_to(laptop.page, "alpha")
    for i in (1, 2):
        assert (await bots["beta"].send(f"beta news {i}"))["ok"]
    for i in (1, 2, 3):
        assert (await bots["gamma"].send(f"gamma news {i}"))["ok"]
    await expect(unread(laptop.page, "beta")).to_have_text("2 unread")
    await expect(unread(laptop.page, "gamma")).to_have_text("3 unread")

    # Another browser, nothing stored in it: the server says which rooms, and what is unread.
    phone = await signed_in(open_chat, server, token, "/r/alpha")
    page = phone.page
    await expect(page.locator("#my-rooms .room-name")).to_have_text(["alpha", "beta", "gamma"])
    await expect(unread(page, "beta")).to_have_text("2 unread")
    await expect(unread(page, "gamma")).to_have_text("3 unread")
    await expect(unread(page, "alpha")).to_be_hidden()
    # Followed there too: what comes next counts on.
    assert (await bots["beta"].send("beta news 3"))["ok"]
    await expect(unread(page, "beta")).to_have_text("3 unread")
    await switch_to(page, "beta")
    await expect(unread(page, "beta")).to_be_hidden()
    await expect(unread(laptop.page, "beta")).to_be_hidden()

    # Leaving a room on one device: the server forgets it, the next load has it no more.
    await my_room(page, "gamma").hover()
    async with page.expect_response(
        lambda r: r.request.method == "DELETE" and r.url.endswith("/api/me/rooms/gamma")
    ) as answer:
        await page.get_by_role("button", name="Leave #gamma").click()
    assert (await answer.value).status == 200
    await expect(page.locator("#my-rooms .room-name")).to_have_text(["alpha", "beta"])
    await laptop.page.reload()
    await expect(laptop.page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(laptop.page.locator("#my-rooms .room-name")).to_have_text(["alpha", "beta"])


async def test_reading_a_room_on_one_page_clears_its_badge_on_the_others(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    token = await account(server, "ann", "Ann A")
    beta = await bot_in(make_client, server, "beta")
    one = await signed_in(open_chat, server, token, "/r/alpha")
    await add_room(one.page, "beta")
    await switch_to(one.page, "alpha")
    two = await signed_in(open_chat, server, token, "/r/alpha")
    await expect(two.page.locator("#my-rooms .room-name")).to_have_text(["alpha", "beta"])
    for i in range(3):
        assert (await beta.send(f"news {i}"))["ok"]
    for chat in (one, two):
        await expect(unread(chat.page, "beta")).to_have_text("3 unread")

    await switch_to(one.page, "beta")
    await expect(unread(one.page, "beta")).to_be_hidden()
    await expect(unread(two.page, "beta")).to_be_hidden()
    # Read up to there, not further: the next one is unread on both.
    assert (await beta.send("one more"))["ok"]
    await expect(unread(two.page, "beta")).to_have_text("1 unread")
    await expect(one.page.locator("#messages .msg .text").last).to_have_text("one more")
    await expect(unread(two.page, "beta")).to_be_hidden()


async def test_a_mention_of_me_in_another_room_is_counted_and_highlighted(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann_token = await account(server, "ann", "Ann A")
    bo_token = await account(server, "bo", "Bo B")
    bo = await member(make_client, server, bo_token, "beta")
    ann = await signed_in(open_chat, server, ann_token, "/r/alpha")
    page = ann.page
    await add_room(page, "beta")
    await switch_to(page, "alpha")

    assert (await bo.send("nothing for Ann"))["ok"]
    assert (await bo.send("hey @ann, look at this"))["ok"]
    assert (await bo.send("and @room too"))["ok"]
    await expect(unread(page, "beta")).to_have_text("3 unread")
    await expect(mentions(page, "beta")).to_have_text("@2 mentioning you")
    await expect(mentions(page, "alpha")).to_be_hidden()

    await switch_to(page, "beta")
    await expect(mentions(page, "beta")).to_be_hidden()
    await expect(unread(page, "beta")).to_be_hidden()
    highlighted = page.locator("#messages .msg.mentions-me .text")
    await expect(highlighted).to_have_text(["hey @ann, look at this", "and @room too"])
    await expect(page.locator("#messages .msg .mention")).to_have_text(["@ann", "@room"])
    # Whoever mentions me does not see their own message highlighted; I see mine plain too.
    await ann.page.locator("#text").fill("@bo, thanks")
    await ann.page.locator("#text").press("Enter")
    await expect(page.locator("#messages .msg.mine .mention")).to_have_text(["@bo"])
    await expect(page.locator("#messages .msg.mine.mentions-me")).to_have_count(0)


async def test_a_direct_conversation_from_the_online_list_to_the_other_persons_sidebar(
    server: Server, open_chat: OpenChat
) -> None:
    ann_token = await account(server, "ann", "Ann A")
    bo_token = await account(server, "bo", "Bo B")
    cy_token = await account(server, "cy", "Cy C")
    bo = await signed_in(open_chat, server, bo_token, "/r/team")
    cy = await signed_in(open_chat, server, cy_token, "/r/team")
    guest = await open_chat(server.url, "/r/team", "Guest G")
    ann = await signed_in(open_chat, server, ann_token, "/r/team")
    page = ann.page
    people = page.locator("#people .person")
    await expect(people.locator(".person-name")).to_have_text(["Ann A", "Bo B", "Cy C", "Guest G"])
    # Accounts other than me, only: not me, not a guest.
    await expect(people.get_by_role("button", name="Message")).to_have_count(2)
    # A guest cannot send direct messages: no button at all.
    await expect(guest.page.locator("#people .person-name")).to_have_count(4)
    await expect(guest.page.locator("#people button")).to_have_count(0)

    await people.filter(has_text="Bo B").get_by_role("button", name="Message").click()
    await expect(page.locator("#room-name")).to_have_text("Bo B")
    await expect(page).to_have_url(re.compile(r"/r/dm-[0-9a-f]{24}$"))
    dm_room = urlsplit(page.url).path.removeprefix("/r/")
    await expect(my_room(page, dm_room)).to_have_attribute("aria-current", "page")
    await expect(my_room(page, dm_room).locator(".room-name")).to_have_text("Bo B")
    await expect(page.get_by_role("textbox", name="Message Bo B")).to_be_visible()
    await page.locator("#text").fill("just between us")
    await page.locator("#text").press("Enter")
    await expect(page.locator("#messages .msg.mine .text")).to_have_text(["just between us"])

    # Bo was elsewhere: it is in his sidebar, by my name, unread.
    entry = my_room(bo.page, dm_room)
    await expect(entry.locator(".room-name")).to_have_text("Ann A")
    await expect(unread(bo.page, dm_room)).to_have_text("1 unread")
    await entry.click()
    await expect(bo.page.locator("#room-name")).to_have_text("Ann A")
    await expect(bo.page.locator("#messages .msg .text")).to_have_text(["just between us"])
    await expect(unread(bo.page, dm_room)).to_be_hidden()
    # And it stays his: listed by the server on his next load, read.
    await bo.page.reload()
    await expect(bo.page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(bo.page.locator("#room-name")).to_have_text("Ann A")
    await expect(unread(bo.page, dm_room)).to_be_hidden()

    # Cy was in the room too, and hears nothing of it, now or on a load; nor may he open it.
    await expect(cy.page.locator("#my-rooms .my-room")).to_have_count(1)
    await cy.page.reload()
    await expect(cy.page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(cy.page.locator("#my-rooms .room-name")).to_have_text(["team"])
    await cy.page.goto(server.url + f"/r/{dm_room}")
    await expect(cy.page.locator("#status")).to_have_attribute("data-state", "refused")
    await expect(cy.page.locator("#status-text")).to_have_text(
        "Not connected: no such room, or you are not one of its members"
    )
    await expect(cy.page.locator("#messages .msg")).to_have_count(0)


async def test_typing_at_offers_the_rooms_people_and_the_keyboard_inserts_a_handle(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann_token = await account(server, "ann", "Ann A")
    for handle, name in (("bo", "Bo B"), ("bea", "Bea Z")):
        await member(make_client, server, await account(server, handle, name), "team")
    guest = make_client()
    await guest.connect(server.url, room="team", name="Gus")
    ann = await signed_in(open_chat, server, ann_token, "/r/team")
    page = ann.page
    box, listbox = page.locator("#text"), page.get_by_role("listbox", name="Mention someone")
    await expect(page.locator("#people .person")).to_have_count(4)

    await box.press_sequentially("hi @b")
    # Accounts of the room whose handle or name starts so; not me, not the guest.
    options = listbox.get_by_role("option")
    await expect(options.locator(".mention-handle")).to_have_text(["@bea", "@bo"])
    await expect(options.first).to_have_attribute("aria-selected", "true")
    await expect(box).to_have_attribute("aria-activedescendant", "mention-option-0")
    await box.press("ArrowDown")
    await expect(box).to_have_attribute("aria-activedescendant", "mention-option-1")
    await expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    await box.press("ArrowDown")  # round to the first
    await box.press("ArrowUp")
    await box.press("Enter")  # inserts, does not send
    await expect(listbox).to_be_hidden()
    await expect(box).to_have_value("hi @bo ")
    assert await box.get_attribute("aria-activedescendant") is None

    # By name too ("Z" is Bea's), with Tab; Escape closes and keeps what was typed.
    await box.press_sequentially("and @z")
    await expect(options.locator(".mention-handle")).to_have_text(["@bea"])
    await box.press("Tab")
    await expect(box).to_have_value("hi @bo and @bea ")
    await box.press_sequentially("@he")
    await expect(options.locator(".mention-handle")).to_have_text(["@here"])
    await box.press("Escape")
    await expect(listbox).to_be_hidden()
    await expect(box).to_have_value("hi @bo and @bea @he")
    await expect(page.locator("#app")).not_to_have_class(re.compile("sidebar-open"))
    # And with the pointer.
    await box.press("Backspace")
    await box.press("Backspace")
    await box.press_sequentially("ro")
    await options.filter(has_text="@room").click()
    await expect(box).to_have_value("hi @bo and @bea @room ")
    await expect(box).to_be_focused()

    await box.press("Enter")  # now it sends
    sent = page.locator("#messages .msg.mine")
    await expect(sent.locator(".text")).to_have_text(["hi @bo and @bea @room"])
    await expect(sent.locator(".mention")).to_have_text(["@bo", "@bea", "@room"])


async def test_a_guests_read_marks_stay_in_the_browser_across_a_reload(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    beta = await bot_in(make_client, server, "beta")
    assert (await beta.send("seen before"))["ok"]
    guest = await open_chat(server.url, "/r/alpha", "Gus")
    page = guest.page
    await add_room(page, "beta")
    await switch_to(page, "alpha")
    for i in (1, 2):
        assert (await beta.send(f"unseen {i}"))["ok"]
    await expect(unread(page, "beta")).to_have_text("2 unread")
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#my-rooms .room-name")).to_have_text(["alpha", "beta"])
    await expect(unread(page, "beta")).to_have_text("2 unread")
    await switch_to(page, "beta")
    await expect(unread(page, "beta")).to_be_hidden()
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#messages .msg .text")).to_have_text(
        ["seen before", "unseen 1", "unseen 2"]
    )
    await switch_to(page, "alpha")
    await expect(unread(page, "beta")).to_be_hidden()


async def test_a_burst_read_as_it_comes_is_told_to_the_server_in_a_few_reads(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    token = await account(server, "ann", "Ann A")
    bot = await bot_in(make_client, server, "busy")
    ann = await signed_in(open_chat, server, token, "/r/busy")
    # Another connection of the account hears every `read` the page sends.
    other = await member(make_client, server, token, "elsewhere")
    for i in range(1, 21):
        assert (await bot.send(f"burst {i}"))["ok"]
    await expect(ann.page.locator("#messages .msg")).to_have_count(20)
    await other.wait_for("read", lambda e: e["room"] == "busy" and e["last_read"] == 20)
    reads = [e["last_read"] for e in other.of("read") if e["room"] == "busy"]
    assert len(reads) <= 3 and reads == sorted(reads), reads
