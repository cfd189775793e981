"""Regenerate the screenshots in docs/screenshots/ (not a test).

    .venv/bin/python -m tests.browser.screenshots

Starts a real server on a throwaway database, fills a busy room through the protocol,
and photographs the lobby and the room at desktop and phone width, light and dark.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support import ROOT, Client, Server

from .conftest import CHROMIUM, CHROMIUM_ARGS

OUT = ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: Ann's browser key: her earlier messages are posted with it, so the page shows them as hers.
ANN_KEY = "screenshot-ann-0123456789"

CONVERSATION = [
    ("Maya", "Morning all! Release checklist is in the usual place 👉 https://example.com/release"),
    ("Jonas", "Thanks! I'll take the database migration."),
    ("Jonas", "Should be quick, it's only the new index."),
    ("Priya", "I can do the changelog ✍️"),
    ("Ann", "Great, I'll run the browser tests on the staging box."),
    ("Maya", "Reminder: code freeze at 15:00 🧊"),
    ("Priya", "Changelog draft:\n  • faster history paging\n  • dark mode\n  • reconnect fixes"),
    ("Ann", "Looks good to me 👍"),
    ("Jonas", "Migration done, no downtime 🎉"),
]


async def seed(url: str) -> list[Client]:
    """People in the busy room, a conversation, and someone typing."""
    clients: dict[str, Client] = {}
    for name in ("Maya", "Jonas", "Priya", "Ann-phone"):
        client = Client()
        await client.connect(url, room="release", name=name)
        clients[name] = client
    poster = Client()
    await poster.connect(url, room="release", name="Ann", key=ANN_KEY)
    for name, text in CONVERSATION:
        sender = poster if name == "Ann" else clients[name]
        assert (await sender.send(text))["ok"]
    await poster.close()
    for room, name, text in (
        ("lobby", "Sam", "Hi everyone! Where do the frontend people hang out?"),
        ("lobby", "Lee", "Mostly in #design, come over 🙂"),
        ("lobby", "Sam", "Thanks, on my way."),
        ("design", "Lee", "New icons are up for review"),
        ("design", "Kim", "Looking now"),
    ):
        client = clients.get(f"{room}-{name}")
        if client is None:
            client = clients[f"{room}-{name}"] = Client()
            await client.connect(url, room=room, name=name)
        assert (await client.send(text))["ok"]
    return list(clients.values())


async def open_page(
    browser: Browser, url: str, name: str, viewport: dict[str, int], scheme: str
) -> Page:
    context = await browser.new_context(
        viewport=viewport,
        color_scheme=scheme,
        device_scale_factor=1,
        # Still pictures: no transition caught half-way.
        reduced_motion="reduce",
    )
    await context.add_init_script(f"localStorage.setItem('chatapp.key', '{ANN_KEY}')")
    page = await context.new_page()
    await page.goto(url)
    await page.locator("#name-input").fill(name)
    await page.locator("#name-input").press("Enter")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#rooms .room-link")).not_to_have_count(0)
    return page


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = await Server(Path(tmp)).start()
        try:
            clients = await seed(server.url)
            typist = clients[1]
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for scheme in ("light", "dark"):
                    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                        page = await open_page(
                            browser, server.url + "/r/release", "Ann", viewport, scheme
                        )
                        await expect(page.locator("#messages .msg")).to_have_count(
                            len(CONVERSATION)
                        )
                        # (Re)start typing so that this fresh page hears about it.
                        await typist.call("typing", {"typing": False})
                        await typist.call("typing", {"typing": True})
                        await expect(page.locator("#typing")).to_have_text("Jonas is typing…")
                        await page.locator("#text").fill("On my way to the standup")
                        await page.screenshot(path=OUT / f"room-{label}-{scheme}.png")
                        await page.context.close()

                        page = await open_page(browser, server.url + "/", "Ann", viewport, scheme)
                        await expect(page.locator("#messages .msg")).to_have_count(3)
                        if label == "phone":
                            await page.locator("#menu-toggle").click()
                            sidebar = page.locator("#sidebar")
                            await expect(sidebar).to_have_css("transform", "none")
                        await page.screenshot(path=OUT / f"lobby-{label}-{scheme}.png")
                        await page.context.close()
                await browser.close()
            for client in clients:
                await client.close()
        finally:
            await server.stop()
    for path in sorted(OUT.glob("*.png")):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    asyncio.run(main())
