"""Quiet notices in the timeline when people join, leave or rename: live presence only,
never for catching up or for the reader, a reload not seen as leaving, consecutive ones
on one line that expands, and the messages' order and ids untouched."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.conftest import NO_RATE_LIMITS, ClientFactory, ServerFactory
from tests.support import Client, Server

from .conftest import OpenChat, expect
from .test_chat_page import shown

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

#: Twice the page's grace for departures (LEAVE_GRACE in static/ui/presence.js).
PAST_THE_GRACE_MS = 4000


def notices(page: Page) -> Locator:
    return page.locator("#messages .notice .notice-text")


async def person(
    make_client: ClientFactory, server: Server, name: str, room: str = "hall"
) -> Client:
    """Someone with a key of their own (a browser would have one), in ``room``."""
    client = make_client()
    await client.connect(server.url, room=room, name=name, key=f"{name.lower()}-key-0123456789")
    return client


async def test_joining_renaming_and_leaving_show_quiet_lines_between_the_messages(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/hall", "Ann")
    page = ann.page
    bob = await person(make_client, server, "Bob")
    await expect(notices(page)).to_have_text(["Bob joined"])
    assert (await bob.send("hello"))["ok"]
    await expect(page.locator("#messages .msg .text")).to_have_text(["hello"])
    assert (await bob.call("rename", {"name": "Bobby"}))["ok"]
    await expect(notices(page)).to_have_text(["Bob joined", "Bob is now Bobby"])
    await bob.close()
    # Consecutive: the same line.
    await expect(notices(page)).to_have_text(["Bob joined", "Bob is now Bobby; Bobby left"])
    assert (await (await person(make_client, server, "Cy")).send("after"))["ok"]
    await expect(page.locator("#messages .msg .text")).to_have_text(["hello", "after"])
    await expect(notices(page)).to_have_text(
        ["Bob joined", "Bob is now Bobby; Bobby left; Cy joined"]
    )
    # In time order between the messages, which keep their ids and order.
    order = await page.evaluate(
        "() => [...document.querySelectorAll('#messages > li:not(.day-sep)')].map("
        "(li) => li.classList.contains('notice') ? 'notice' : li.dataset.id)"
    )
    assert order == ["notice", "1", "notice", "2"]
    assert [m["id"] for m in await shown(page)] == [1, 2]


async def test_many_joins_collapse_into_one_line_that_expands(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/hall", "Ann")
    page = ann.page
    names = ["Cy", "Dee", "Eve", "Fay", "Gus"]
    people = [await person(make_client, server, name) for name in names]
    await people[2].close()
    await expect(notices(page)).to_have_text(["Cy, Dee and 3 others joined; Eve left"])
    toggle = page.locator("#messages .notice .notice-toggle")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    details = page.locator("#messages .notice .notice-details li")
    await expect(details.first).to_be_hidden()
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(details).to_have_count(6)
    await expect(details.first).to_be_visible()
    assert [t.split(" ")[:2] for t in await details.all_inner_texts()] == [
        *([n, "joined"] for n in names),
        ["Eve", "left"],
    ]


async def test_a_reload_is_neither_leaving_nor_joining(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    # Someone already there hears what the server says.
    observer = await person(make_client, server, "Obs")
    # Departures wait out their grace on timers: Bob's clock moves only when told to.
    bob = await open_chat(server.url, "/r/hall", "Bob", paused_clock=True)
    ann = await open_chat(server.url, "/r/hall", "Ann")
    await expect(notices(bob.page)).to_have_text(["Ann joined"])
    dan = await person(make_client, server, "Dan")
    await expect(notices(bob.page)).to_have_text(["Ann and Dan joined"])
    assert (await dan.send("a message between"))["ok"]
    await expect(bob.page.locator("#messages .msg .text")).to_have_text(["a message between"])

    # Ann reloads her page; Dan's connection drops and comes back (the server says he
    # left, then that he joined).
    await ann.page.reload()
    await expect(ann.page.locator("#status")).to_have_attribute("data-state", "connected")
    await dan.close()
    await observer.wait_for("presence", lambda e: e.get("left") == "Dan")
    await person(make_client, server, "Dan")
    await observer.wait_for("presence", lambda e: e.get("joined") == "Dan", count=2)
    # Ann again, under another name, from another device (her key): someone else to Bob.
    phone = make_client()
    key = await ann.page.evaluate("localStorage.getItem('chatapp.key')")
    await phone.connect(server.url, room="hall", name="Ann's phone", key=key)
    # Carl's arrival comes after all of that, on every page.
    await person(make_client, server, "Carl")
    await expect(notices(bob.page).last).to_have_text("Ann's phone and Carl joined")
    await bob.page.clock.run_for(PAST_THE_GRACE_MS)
    await expect(notices(bob.page)).to_have_text(
        ["Ann and Dan joined", "Ann's phone and Carl joined"]
    )
    # Ann's own page says nothing of her: not her reload, not her joining, by any name.
    await expect(notices(ann.page)).to_have_text(["Carl joined"])


async def test_no_notices_for_who_came_and_went_while_offline(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    eve = await person(make_client, server, "Eve")
    ann = await open_chat(server.url, "/r/hall", "Ann")
    page = ann.page
    await expect(page.locator("#people .person-name")).to_have_text(["Ann", "Eve"])
    await ann.context.set_offline(True)
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    await eve.close()
    await person(make_client, server, "Fay")
    await ann.context.set_offline(False)
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#people .person-name")).to_have_text(["Ann", "Fay"])
    # Live again: the next arrival is told, and it is the only notice.
    await person(make_client, server, "Gus")
    await expect(notices(page)).to_have_text(["Gus joined"])


async def test_a_crowd_arriving_at_once_is_one_line_naming_everyone(
    start_server: ServerFactory, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    """Past a few arrivals a second in a big room the server sends them together
    (``joins``): the page still names each person once."""
    import asyncio

    server = await start_server(*NO_RATE_LIMITS, "--max-connections-per-ip", "0")
    ann = await open_chat(server.url, "/r/hall", "Ann")
    page = ann.page
    names = [f"P{n:02}" for n in range(45)]
    crowd = [make_client() for _ in names]
    await asyncio.gather(
        *(
            client.connect(server.url, room="hall", name=name, key=f"{name}-key-0123456789")
            for client, name in zip(crowd, names, strict=True)
        )
    )
    await expect(notices(page)).to_have_count(1)
    await expect(notices(page)).to_have_text([re.compile(r"^P\d\d, P\d\d and 43 others joined$")])
    await page.locator("#messages .notice .notice-toggle").click()
    details = page.locator("#messages .notice .notice-details li")
    await expect(details).to_have_count(45)
    shown_names = sorted(t.split(" ")[0] for t in await details.all_inner_texts())
    assert shown_names == names
