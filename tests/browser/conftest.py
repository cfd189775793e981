"""Browser tests: the real page in Debian's Chromium, driven by Playwright for Python.

They skip on a machine without /usr/bin/chromium or Playwright, and fail under CI=true.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import require_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
#: How long a DOM condition may take to hold (Playwright's expect timeout, in ms).
EXPECT_TIMEOUT_MS = 15_000

try:
    from playwright.async_api import Browser, BrowserContext, Page, expect
except ImportError:  # pragma: no cover - the browser fixture skips, or fails under CI
    HAVE_PLAYWRIGHT = False

    def expect(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        raise RuntimeError("Playwright for Python is missing")
else:
    HAVE_PLAYWRIGHT = True
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)

NETWORK_NOISE = (
    "net::ERR_CONNECTION_REFUSED",
    "net::ERR_CONNECTION_RESET",
    "net::ERR_INTERNET_DISCONNECTED",
    "WebSocket connection to",
)
#: Records what the page does that a test must never see: script errors, alert() dialogs,
#: requests to another origin and Content-Security-Policy violations.
RECORD_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""

#: For page.evaluate: records each message that flashes (is highlighted, as a jump to it
#: does) from now on, by id, in any room, in ``window.__flashed``.
RECORD_FLASHES = """() => {
    window.__flashed = [];
    new MutationObserver((records) => {
        for (const r of records) {
            if (r.target.classList?.contains('flash')) {
                window.__flashed.push(Number(r.target.dataset.id));
            }
        }
    }).observe(document.getElementById('timelines'),
        {subtree: true, attributes: true, attributeFilter: ['class']});
}"""


@dataclass
class ChatPage:
    page: Page
    context: BrowserContext
    origin: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def foreign_urls(self) -> list[str]:
        own = urlsplit(self.origin).netloc
        return [
            u
            for u in self.urls
            if not u.startswith(("data:", "blob:", "about:")) and urlsplit(u).netloc != own
        ]

    async def csp_violations(self) -> list[str]:
        if self.page.is_closed():
            return []
        result: list[str] = await self.page.evaluate("window.__cspViolations || []")
        return result


OpenChat = Callable[..., Awaitable[ChatPage]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_service(HAVE_CHROMIUM, f"{CHROMIUM} is missing (apt-get install chromium)")
    require_service(HAVE_PLAYWRIGHT, "Playwright for Python is missing (pip install -e '.[test]')")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def open_chat(browser: Browser) -> AsyncIterator[OpenChat]:
    """Open the chat page as a new person (own browser context, so own localStorage).

    ``name`` is typed into the name dialog; pass ``name=None`` to leave the dialog open.
    ``tab_of=chat`` opens another tab of ``chat``'s browser instead (its context: the same
    localStorage, so the remembered name and key; ``name`` is not asked) and waits for it
    to connect.
    With ``paused_clock=True`` the page's clock stands still from its first script on: its
    timers (the reconnect delay, countdowns, polling) fire only when the test moves time
    (``page.clock.run_for``, ``.resume()``), so a test can look at a state that would
    otherwise last only until the next timer. Network events still arrive as they happen.
    At the end, every page must have had no script error, no alert, no request to another
    origin and no CSP violation.
    """
    pages: list[ChatPage] = []

    async def open_(
        base_url: str,
        path: str = "/",
        name: str | None = "Ann",
        *,
        wait_connected: bool = True,
        paused_clock: bool = False,
        tab_of: ChatPage | None = None,
        **context_options: Any,
    ) -> ChatPage:
        if tab_of is not None:
            context = tab_of.context
        else:
            context_options.setdefault("viewport", {"width": 1200, "height": 800})
            context = await browser.new_context(**context_options)
        if paused_clock and tab_of is None:
            # Before any page exists, so nothing can be scheduled on the real clock.
            now = time.time()
            await context.clock.install(time=now)
            await context.clock.pause_at(now)
        page = await context.new_page()
        chat = ChatPage(page=page, context=context, origin=base_url)
        pages.append(chat)
        await page.add_init_script(RECORD_CSP)
        page.on("pageerror", lambda exc: chat.errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: chat.errors.append(msg.text) if msg.type == "error" else None,
        )

        async def on_dialog(dialog: Any) -> None:
            chat.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("request", lambda request: chat.urls.append(request.url))
        page.on("websocket", lambda ws: chat.urls.append(ws.url))
        await page.goto(base_url + path)
        if name is not None and tab_of is None:
            await page.locator("#name-input").fill(name)
            await page.locator("#name-input").press("Enter")
        if wait_connected and (name is not None or tab_of is not None):
            await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
        return chat

    yield open_
    # Every page is asked before any context closes (tabs share their context).
    violations = [await chat.csp_violations() for chat in pages]
    for context in {id(chat.context): chat.context for chat in pages}.values():
        await context.close()
    for chat, csp in zip(pages, violations, strict=True):
        assert not chat.dialogs, f"a page opened a dialog: {chat.dialogs}"
        assert not csp, f"CSP violations: {csp}"
        assert not chat.foreign_urls(), f"requests to another origin: {chat.foreign_urls()}"
        # While a server is away or the context offline (reconnect tests) the browser logs
        # its own network errors; anything else is a bug in the page.
        errors = [e for e in chat.errors if not any(n in e for n in NETWORK_NOISE)]
        assert not errors, f"errors in the page: {errors}"
