"""Browser notifications: asked for with a button only, shown for live messages in rooms
the reader does not look at (as each room's setting says), coalesced under bursts, never
for what a reconnect catches up on; a click opens the message's room."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tests.conftest import ClientFactory
from tests.support import Server

from .conftest import ChatPage, OpenChat, expect
from .test_my_rooms import account, member, signed_in
from .test_rooms_sidebar import add_room, bot_in, my_room, switch_to

if TYPE_CHECKING:
    from playwright.async_api import Page

#: Every notification the page makes, recorded (title, body, tag and the instance, for its
#: onclick), before the browser's own constructor makes it; and every permission request.
RECORD_NOTIFICATIONS = """
window.__notes = [];
window.__permissionAsks = 0;
(() => {
  const Real = window.Notification;
  if (!Real) return;
  class Recorded extends Real {
    constructor(title, options = {}) {
      super(title, options);
      window.__notes.push({ title, body: options.body ?? "", tag: options.tag ?? "", n: this });
    }
  }
  const ask = Real.requestPermission.bind(Real);
  Recorded.requestPermission = (...args) => {
    window.__permissionAsks += 1;
    return ask(...args);
  };
  window.Notification = Recorded;
})();
"""

MUTED = re.compile(r"\bmuted\b")


async def open_recording(
    open_chat: OpenChat, server: Server, path: str, *, granted: bool = True, **options: Any
) -> ChatPage:
    """Ann's page, notifications recorded (and allowed, unless ``granted`` is false)."""
    chat = await open_chat(server.url, path, name=None, wait_connected=False, **options)
    await chat.context.add_init_script(RECORD_NOTIFICATIONS)
    if granted:
        await chat.context.grant_permissions(["notifications"], origin=server.url)
    await chat.page.reload()
    await chat.page.locator("#name-input").fill("Ann")
    await chat.page.locator("#name-input").press("Enter")
    await expect(chat.page.locator("#status")).to_have_attribute("data-state", "connected")
    return chat


async def notes(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(
        "() => window.__notes.map(({ title, body, tag }) => ({ title, body, tag }))"
    )
    return result


async def wait_notes(page: Page, count: int) -> list[dict[str, Any]]:
    """Wait until the page made ``count`` notifications (or more); return them all."""
    await page.wait_for_function(f"() => window.__notes.length >= {count}")
    return await notes(page)


def held(page: Page, text: str) -> Any:
    """A message in any of the page's rooms, shown or not."""
    return page.locator(".messages .msg .text", has_text=text)


async def set_level(page: Page, room: str, label: str) -> None:
    """Choose ``label`` in ``room``'s notification menu (the room is shown for it)."""
    await switch_to(page, room)
    await page.locator("#room-notify").click()
    await page.get_by_label(label).check()
    await page.keyboard.press("Escape")
    await expect(page.locator("#notify-menu")).to_be_hidden()


async def test_the_button_asks_for_permission_only_when_clicked_then_hides(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_recording(open_chat, server, "/r/front", granted=False)
    page = ann.page
    enable = page.get_by_role("button", name="Enable notifications")
    await expect(enable).to_be_visible()
    await expect(page.locator("#notify-sound")).to_be_hidden()
    assert await page.evaluate("window.__permissionAsks") == 0  # never by itself
    # The reader says yes to the browser's question.
    await ann.context.grant_permissions(["notifications"], origin=server.url)
    await enable.click()
    await expect(enable).to_be_hidden()
    assert await page.evaluate("window.__permissionAsks") == 1
    # The sound is offered now, off until the reader turns it on, and kept.
    sound = page.locator("#notify-sound")
    await expect(sound).to_have_attribute("aria-pressed", "false")
    await sound.click()
    await expect(sound).to_have_attribute("aria-pressed", "true")
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(enable).to_be_hidden()
    await expect(sound).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("window.__permissionAsks") == 0


async def test_a_mention_in_another_room_notifies_once_and_other_messages_do_not(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    front = await bot_in(make_client, server, "front")
    back = await bot_in(make_client, server, "back")
    ann = await open_recording(open_chat, server, "/r/front")
    page = ann.page
    await add_room(page, "back")
    await switch_to(page, "front")
    # In the room she looks at, even a mention needs no notification.
    assert (await front.send("@here in front"))["ok"]
    await expect(held(page, "@here in front")).to_have_count(1)
    assert (await back.send("nothing for Ann"))["ok"]
    assert (await back.send("@here look at this"))["ok"]
    found = await wait_notes(page, 1)
    assert found == [
        {
            "title": "back-bot mentioned you in #back",
            "body": "@here look at this",
            "tag": "chatapp:back",
        }
    ]
    await expect(held(page, "nothing for Ann")).to_have_count(1)
    # Her own never, even where every message notifies: here, sent from her other tab.
    await set_level(page, "back", "All messages")
    await switch_to(page, "front")
    other_tab = await open_chat(server.url, "/r/back", tab_of=ann)
    await other_tab.page.locator("#text").fill("mine from the other tab")
    await other_tab.page.locator("#text").press("Enter")
    await expect(held(page, "mine from the other tab")).to_have_count(1)
    assert (await back.send("@here again"))["ok"]
    await page.wait_for_function(
        "() => window.__notes.some((n) => n.body === '@here again')", timeout=15_000
    )
    assert [n["body"] for n in await notes(page)] == ["@here look at this", "@here again"]


async def test_every_direct_message_notifies_by_default(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann_token = await account(server, "ann", "Ann A")
    bo_token = await account(server, "bo", "Bo B")
    ann = await signed_in(open_chat, server, ann_token, "/r/front")
    await ann.context.add_init_script(RECORD_NOTIFICATIONS)
    await ann.context.grant_permissions(["notifications"], origin=server.url)
    await ann.page.reload()
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "connected")
    bo = await member(make_client, server, bo_token, "front")
    dm_room = (await bo.call("dm", {"with": ["ann"]}))["room"]
    subscribed = await bo.call("subscribe", {"room": dm_room})
    assert subscribed["ok"]
    # Ann's page follows the conversation it was told of: then what Bo writes is live.
    # It may get there before Bo (Ann is among the people Bo's subscribe answers with) or
    # after (a presence event names Ann).
    if "Ann A" not in [p["name"] for p in subscribed["people"]]:
        await bo.wait_for("presence", lambda p: p["room"] == dm_room and p.get("joined") == "Ann A")
    assert (await bo.send("no mention, and still for you", room=dm_room))["ok"]
    found = await wait_notes(ann.page, 1)
    assert [(n["body"], n["tag"]) for n in found] == [
        ("no mention, and still for you", f"chatapp:{dm_room}")
    ]


async def test_no_notification_for_what_a_reconnect_catches_up_on(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    front = await bot_in(make_client, server, "front")
    back = await bot_in(make_client, server, "back")
    ann = await open_recording(open_chat, server, "/r/front")
    page = ann.page
    await add_room(page, "back")
    await switch_to(page, "front")
    await ann.context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    for i in (1, 2):
        assert (await back.send(f"@here missed {i}"))["ok"]
    assert (await front.send("@here missed in front"))["ok"]
    await ann.context.set_offline(False)
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(held(page, "@here missed 2")).to_have_count(1)
    await expect(held(page, "@here missed in front")).to_have_count(1)
    # Live again: the next mention notifies, and it is the only one.
    assert (await back.send("@here live"))["ok"]
    found = await wait_notes(page, 1)
    assert [n["body"] for n in found] == ["@here live"]


async def test_a_burst_in_an_all_messages_room_is_coalesced(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    back = await bot_in(make_client, server, "back")
    ann = await open_recording(open_chat, server, "/r/front")
    page = ann.page
    await add_room(page, "back")
    await set_level(page, "back", "All messages")
    await switch_to(page, "front")
    for i in range(1, 7):
        assert (await back.send(f"burst {i}"))["ok"]
    await page.wait_for_function(
        "() => window.__notes.some((n) => n.title === '6 new messages in #back')"
    )
    found = await notes(page)
    assert len(found) < 6, found
    assert found[-1] == {
        "title": "6 new messages in #back",
        "body": "back-bot: burst 6",
        "tag": "chatapp:back",
    }
    # One tag for the room: each replaces the last rather than stacking up.
    assert {n["tag"] for n in found} == {"chatapp:back"}


async def test_nothing_and_mute_give_no_notification(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    quiet = await bot_in(make_client, server, "quiet")
    hushed = await bot_in(make_client, server, "hushed")
    ann = await open_recording(open_chat, server, "/r/front")
    page = ann.page
    await add_room(page, "quiet")
    await add_room(page, "hushed")
    await set_level(page, "quiet", "Nothing")
    # Muted: not even for "all messages" or a mention.
    await set_level(page, "hushed", "All messages")
    await page.locator("#room-notify").click()
    await page.get_by_label("Mute this room").check()
    await page.keyboard.press("Escape")
    await expect(my_room(page, "hushed").locator("..")).to_have_class(MUTED)
    await switch_to(page, "front")
    assert (await quiet.send("@here in quiet"))["ok"]
    assert (await hushed.send("@here in hushed"))["ok"]
    assert (await hushed.send("more in hushed"))["ok"]
    await expect(held(page, "@here in quiet")).to_have_count(1)
    await expect(held(page, "more in hushed")).to_have_count(1)
    # A muted room counts nothing in the sidebar.
    await expect(my_room(page, "hushed").locator(".unread")).to_be_hidden()
    # Both rooms live and heard: back to mentions only, quiet notifies again; hushed not.
    await set_level(page, "quiet", "Mentions only")
    await switch_to(page, "front")
    assert (await hushed.send("@here still hushed"))["ok"]
    assert (await quiet.send("@here quiet no more"))["ok"]
    found = await wait_notes(page, 1)
    assert [n["body"] for n in found] == ["@here quiet no more"]
    # The choices are kept in this browser.
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(my_room(page, "hushed").locator("..")).to_have_class(MUTED)


async def test_clicking_a_notification_opens_its_room_at_the_message(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    back = await bot_in(make_client, server, "back")
    for i in range(40):
        assert (await back.send(f"back filler {i}"))["ok"]
    ann = await open_recording(
        open_chat, server, "/r/front", viewport={"width": 900, "height": 500}
    )
    page = ann.page
    await add_room(page, "back")
    # Read from the top: the newest message is out of view.
    await page.locator("#scroller").evaluate(
        "(s) => { s.scrollTop = 0; s.dispatchEvent(new Event('scroll')); }"
    )
    await switch_to(page, "front")
    assert (await back.send("@here over here"))["ok"]
    await wait_notes(page, 1)
    await page.evaluate("window.__notes[0].n.onclick()")
    await expect(page.locator("h1")).to_have_text("#back")
    await expect(my_room(page, "back")).to_have_attribute("aria-current", "page")
    await expect(page).to_have_url(server.url + "/r/back")
    await expect(page.locator("#messages .msg", has_text="@here over here")).to_be_in_viewport()


async def test_a_refusal_is_said_and_not_asked_again(server: Server, open_chat: OpenChat) -> None:
    ann = await open_recording(open_chat, server, "/r/front", granted=False)
    page = ann.page
    # The browser's question, answered "block" (headless Chromium answers it so by itself).
    await page.get_by_role("button", name="Enable notifications").click()
    note = page.locator("#notify-note")
    await expect(note).to_be_visible()
    await expect(note).to_have_text(re.compile("Notifications are blocked"))
    await expect(page.get_by_role("button", name="Enable notifications")).to_be_hidden()
    await expect(page.locator("#notify-sound")).to_be_hidden()


#: Counts the tones the page makes (each is one oscillator).
COUNT_TONES = """
window.__tones = 0;
if (window.AudioContext) {
  const make = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    window.__tones += 1;
    return make.call(this);
  };
}
"""


async def test_the_sound_is_off_until_turned_on_then_plays_with_a_notification(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    one = await bot_in(make_client, server, "one")
    two = await bot_in(make_client, server, "two")
    ann = await open_recording(open_chat, server, "/r/front")
    page = ann.page
    await ann.context.add_init_script(COUNT_TONES)
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await add_room(page, "one")
    await add_room(page, "two")
    await switch_to(page, "front")
    assert (await one.send("@here silent"))["ok"]
    await wait_notes(page, 1)
    assert await page.evaluate("window.__tones") == 0
    sound = page.locator("#notify-sound")
    await sound.click()
    await expect(sound).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("window.__tones") == 1  # what it sounds like
    assert (await two.send("@here with a sound"))["ok"]
    await wait_notes(page, 2)
    assert await page.evaluate("window.__tones") == 2
    # Still on after a reload, without turning it on again.
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(sound).to_have_attribute("aria-pressed", "true")
    await expect(my_room(page, "two")).to_be_visible()
    assert (await two.send("@here after the reload"))["ok"]
    await wait_notes(page, 1)
    assert await page.evaluate("window.__tones") == 1
