"""Message text as a safe Markdown subset on the page: code blocks, inline formatting,
quotes, lists, links, emoji shortcodes; built from DOM nodes, never from HTML, in linear
time on hostile input; the stored text is what was typed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp

from tests.conftest import ClientFactory
from tests.support import Server

from .conftest import ChatPage, OpenChat, expect
from .test_chat_page import send

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page


async def stored_texts(server: Server, room: str) -> list[str]:
    """The room's messages as the server stores and serves them (the HTTP API)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/rooms/{room}/messages") as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
    return [m["text"] for m in body["messages"]]


def texts(page: Page) -> Locator:
    """The text of each confirmed message, top to bottom."""
    return page.locator("#messages .msg .text")


async def text_content(locator: Locator) -> str:
    """The exact textContent (Playwright's text assertions normalise whitespace)."""
    result: str = await locator.evaluate("(node) => node.textContent")
    return result


async def test_code_block_keeps_whitespace_shows_its_language_and_scrolls(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/code", "Ann")
    bo = await open_chat(server.url, "/r/code", "Bo")
    code = "def f(x):\n\tif  x:   \n        return '<b>*not bold*</b>'\n\n  # **end**"
    typed = f"look:\n```python\n{code}\n```\nafter **that**"
    await send(ann.page, typed)
    for chat in (ann, bo):
        text = texts(chat.page).last
        block = text.locator(".md-codeblock")
        await expect(block).to_have_count(1)
        await expect(block.locator(".md-lang")).to_have_text("python")
        assert await text_content(block.locator("pre > code")) == code
        # Nothing inside the code is formatting; after it, formatting works again.
        await expect(block.locator("strong, em, b")).to_have_count(0)
        await expect(text.locator("strong")).to_have_text(["that"])
    assert (await stored_texts(server, "code"))[-1] == typed

    # An unclosed fence runs to the end; the label is sanitised, shown as text only.
    long_line = "x = " + "1 + " * 200 + "1"
    rows = "\n".join(f"row {i}" for i in range(80))
    typed = f'```py<img src=x onerror="alert(1)"> more words\n{long_line}\n{rows}'
    await send(ann.page, typed)
    block = texts(bo.page).last.locator(".md-codeblock")
    await expect(block.locator(".md-lang")).to_have_text("pyimg")
    await expect(bo.page.locator("#messages img")).to_have_count(0)
    pre = block.locator("pre")
    assert await text_content(pre) == f"{long_line}\n{rows}"
    await expect(pre).to_have_css("white-space", "pre")
    await expect(pre).to_have_css("overflow-x", "auto")
    await expect(pre).not_to_have_css("max-height", "none")
    # Both ways: it scrolls inside the bubble instead of stretching the page.
    sizes = await pre.evaluate(
        """(pre) => ({
            tall: pre.scrollHeight > pre.clientHeight + 10,
            wide: pre.scrollWidth > pre.clientWidth + 10,
            inside: pre.closest('.bubble').getBoundingClientRect().right
                <= document.querySelector('#messages').getBoundingClientRect().right,
        })"""
    )
    assert sizes == {"tall": True, "wide": True, "inside": True}
    assert (await stored_texts(server, "code"))[-1] == typed


async def test_inline_formatting_quotes_and_lists_render_as_their_elements(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/fmt", "Ann")
    typed = (
        "**bold** *italic* _also italic_ ~~gone~~ `a *b* c` snake_case_name 2 * 3 * 4\n"
        "> quoted **loud**\n"
        "> still quoted\n"
        "- one\n"
        "- two\n"
        "  - nested\n"
        "1. first\n"
        "2. second\n"
        "last line"
    )
    await send(ann.page, typed)
    text = texts(ann.page).last
    await expect(text.locator("strong")).to_have_text(["bold", "loud"])
    await expect(text.locator("em")).to_have_text(["italic", "also italic"])
    await expect(text.locator("del")).to_have_text(["gone"])
    await expect(text.locator("code")).to_have_text(["a *b* c"])
    await expect(text).to_contain_text("snake_case_name 2 * 3 * 4")
    quote = text.locator("blockquote")
    await expect(quote).to_have_count(1)
    assert await text_content(quote) == "quoted loud\nstill quoted"
    await expect(quote.locator("strong")).to_have_text("loud")
    await expect(text.locator("ul")).to_have_count(2)
    await expect(text.locator(":scope > ul > li")).to_have_count(2)
    await expect(text.locator("ul ul > li")).to_have_text(["nested"])
    await expect(text.locator("ol > li")).to_have_text(["first", "second"])
    await expect(text).to_contain_text("last line")
    # Markers, not formatting, where they belong to words or code.
    await expect(text.locator("em", has_text="case")).to_have_count(0)
    assert (await stored_texts(server, "fmt")) == [typed]

    # A pasted log without Markdown looks exactly as typed.
    log = "  INFO  12:30:45 worker_1 started\n\tat a.b(C.java:12)\n\n    done, 3 * 4 items"
    await send(ann.page, log)
    await expect(texts(ann.page)).to_have_count(2)
    assert await text_content(texts(ann.page).last) == log
    await expect(texts(ann.page).last.locator("*")).to_have_count(0)


async def test_html_and_scripts_in_markdown_do_nothing(server: Server, open_chat: OpenChat) -> None:
    ann = await open_chat(server.url, "/r/safe", "Ann")
    bo = await open_chat(server.url, "/r/safe", "Bo")
    literal = [
        "[x](javascript:alert(1))",
        "[y](JaVaScRiPt:alert(2)) [z](vbscript:msgbox(3))",
        "[a](data:text/html;base64,PHNjcmlwdD5hbGVydCg0KTwvc2NyaXB0Pg==)",
        "<b>raw</b> <img src=x onerror=alert(5)>",
    ]
    payloads = [
        *literal,
        "`<img src=x onerror=alert(6)>`",
        "**<script>alert(7)</script>**",
        "[<img src=x onerror=alert(8)>](https://example.com/ok)",
        "[docs](https://example.com/docs_(v2)) [mail me](mailto:ann@example.com)",
    ]
    for text in payloads:
        await send(ann.page, text)
    await expect(texts(bo.page)).to_have_count(len(payloads))
    for chat in (ann, bo):
        page = chat.page
        log = page.locator("#messages")
        for tag in ("img", "script", "b", "iframe", "object"):
            await expect(log.locator(tag)).to_have_count(0)
        # The unsafe links stay literal text, exactly as typed.
        for i, text in enumerate(literal):
            assert await text_content(texts(page).nth(i)) == text
        await expect(texts(page).nth(4).locator("code")).to_have_text(
            "<img src=x onerror=alert(6)>"
        )
        await expect(texts(page).nth(5).locator("strong")).to_have_text("<script>alert(7)</script>")
        links = log.locator("a")
        await expect(links).to_have_text(["<img src=x onerror=alert(8)>", "docs", "mail me"])
        hrefs = [await link.get_attribute("href") for link in await links.all()]
        assert hrefs == [
            "https://example.com/ok",
            "https://example.com/docs_(v2)",
            "mailto:ann@example.com",
        ]
        for link in await links.all():
            await expect(link).to_have_attribute("target", "_blank")
            await expect(link).to_have_attribute("rel", "noopener noreferrer")
    await assert_quiet(ann, bo)


async def assert_quiet(*chats: ChatPage) -> None:
    """No alert() and no script error so far (the fixture checks again at the end)."""
    for chat in chats:
        await expect(chat.page.locator("#status")).to_have_attribute("data-state", "connected")
        assert chat.dialogs == [] and chat.errors == []


BOMBS = [
    ">" * 1999,
    "> " * 1000,
    "*" * 2000,
    "*a " * 666,
    "**a " * 500,
    "_" * 1000 + "a" + "_" * 999,
    "~~" * 1000,
    "[" * 1000 + "](" * 500,
    "[a](" * 500,
    "`" * 2000,
    "` " * 1000,
    "- " * 1000,
    "\n".join("  " * i + "- x" for i in range(40)),
    "```\n" * 500,
    "(http://x" * 222,
]


async def test_nesting_bombs_render_at_once_and_the_page_keeps_working(
    server: Server, open_chat: OpenChat, make_client: ClientFactory
) -> None:
    ann = await open_chat(server.url, "/r/bombs", "Ann")
    bot = make_client()
    await bot.connect(server.url, room="bombs", name="bot")
    for i, bomb in enumerate(BOMBS):
        assert len(bomb) <= 2000
        assert (await bot.send(bomb))["ok"]
        # Each renders within the normal expect timeout, before the next is sent.
        await expect(texts(ann.page)).to_have_count(i + 1)
    page = ann.page
    # Nesting stops at 8 levels; deeper markers are text.
    deepest = texts(page).nth(0).locator("blockquote " * 8)
    await expect(deepest).to_have_count(1)
    await expect(deepest.locator("blockquote")).to_have_count(0)
    assert await text_content(deepest) == ">" * (1999 - 8)
    await expect(texts(page).nth(11).locator("li " * 8)).to_have_count(1)
    await expect(texts(page).nth(11).locator("li " * 9)).to_have_count(0)
    # Unmatched markers are text, exactly as sent.
    for i in (2, 6, 7, 9):
        assert await text_content(texts(page).nth(i)) == BOMBS[i]
    await expect(texts(page).nth(7).locator("a")).to_have_count(0)
    # The page still works: a message sent after them renders as usual.
    await send(page, "still **here**")
    await expect(texts(page).last.locator("strong")).to_have_text("here")
    await expect(texts(page)).to_have_count(len(BOMBS) + 1)
    assert (await stored_texts(server, "bombs"))[: len(BOMBS)] == BOMBS
    await assert_quiet(ann)


async def test_emoji_mentions_and_links_outside_code_only(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/emoji", "Ann")
    bo = await open_chat(server.url, "/r/emoji", "Bo")
    typed = (
        "@room :+1: **:tada:** at https://example.com/x :no_such_emoji: 12:30:45\n"
        "not here: `@room :+1: https://example.com/y`\n"
        "```\n@room :rocket: https://example.com/z\n```"
    )
    await send(ann.page, typed)
    text = texts(bo.page).last
    emoji = text.locator(".md-emoji")
    await expect(emoji).to_have_text(["👍", "🎉"])
    await expect(emoji.first).to_have_attribute("title", ":+1:")
    await expect(text.locator("strong .md-emoji")).to_have_attribute("title", ":tada:")
    await expect(text).to_contain_text(":no_such_emoji: 12:30:45")
    await expect(text.locator(".mention")).to_have_text(["@room"])
    links = text.locator("a")
    await expect(links).to_have_text(["https://example.com/x"])
    await expect(links).to_have_attribute("href", "https://example.com/x")
    await expect(text.locator("code").first).to_have_text("@room :+1: https://example.com/y")
    await expect(text.locator("pre code")).to_have_text("@room :rocket: https://example.com/z")
    await expect(text.locator("code .mention, code a, code .md-emoji")).to_have_count(0)
    # Mentioned: the message stands out on Bo's page as before.
    await expect(bo.page.locator("#messages .msg.mentions-me")).to_have_count(1)
    assert (await stored_texts(server, "emoji")) == [typed]
