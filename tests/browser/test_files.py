"""Files on the page: sent from the "Attach a file" button, pasted into the message box or
dropped on the room (with the box's text as a caption), with their progress shown as they
go; an image shows its thumbnail on every page and opens in an overlay, any other file is
a download link that is never rendered; the server's refusal is shown with Retry and
Dismiss; a deletion takes the file off every page."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from typing import TYPE_CHECKING, Any

from PIL import Image

from tests.conftest import NO_RATE_LIMITS, ServerFactory
from tests.support import Server
from tests.test_sign_in import add_account

from .conftest import OpenChat, expect
from .test_deleting import delete
from .test_sign_in import sign_in_on_page

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Route

#: The accessible name of the button that picks files.
ATTACH = "Attach a file"
#: A page that would run script if it were ever rendered.
HTML = b"<html><body><script>window.__pwned = 1</script><b id='bold'>hi</b></body></html>"

#: Put `files` ([{name, type, b64}]) in a DataTransfer, made in the page.
DATA_TRANSFER_JS = """(files) => {
    const dt = new DataTransfer();
    for (const f of files) {
        const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
        dt.items.add(new File([bytes], f.name, {type: f.type}));
    }
    return dt;
}"""

#: Records the shown room's upload progress bar each time it moves, in ``window.__progress``:
#: [value, max, the percentage shown beside it].
RECORD_PROGRESS = """() => {
    window.__progress = [];
    new MutationObserver(() => {
        const bar = document.querySelector('#pending progress');
        if (!bar) return;
        const shown = bar.parentElement.querySelector('.upload-percent')?.textContent;
        window.__progress.push([bar.value, bar.max, shown]);
    }).observe(document.getElementById('pending'),
        {subtree: true, attributes: true, attributeFilter: ['value', 'max']});
}"""


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def in_page(name: str, data: bytes, mime: str) -> dict[str, str]:
    """A file as page.evaluate takes it (see DATA_TRANSFER_JS)."""
    return {"name": name, "type": mime, "b64": base64.b64encode(data).decode()}


async def paste(page: Page, *files: dict[str, str]) -> None:
    """Paste ``files`` into the message box, as the clipboard would."""
    await page.evaluate(
        f"""(files) => {{
            const dt = ({DATA_TRANSFER_JS})(files);
            const box = document.getElementById('text');
            box.focus();
            box.dispatchEvent(new ClipboardEvent('paste',
                {{clipboardData: dt, bubbles: true, cancelable: true}}));
        }}""",
        list(files),
    )


async def drag(page: Page, types: list[str], *files: dict[str, str]) -> None:
    """Drag ``files`` over the shown room's messages: the events ``types``, in order."""
    await page.evaluate(
        f"""([types, files]) => {{
            const dt = ({DATA_TRANSFER_JS})(files);
            const target = document.getElementById('messages');
            for (const type of types) {{
                target.dispatchEvent(new DragEvent(type,
                    {{dataTransfer: dt, bubbles: true, cancelable: true}}));
            }}
        }}""",
        [types, list(files)],
    )


async def choose(page: Page, *files: tuple[str, bytes, str]) -> None:
    """Pick ``files`` ((name, bytes, type)) with the "Attach a file" button."""
    async with page.expect_file_chooser() as chooser_info:
        await page.get_by_role("button", name=ATTACH).click()
    chooser = await chooser_info.value
    await chooser.set_files(
        [{"name": name, "mimeType": mime, "buffer": data} for name, data, mime in files]
    )


def thumbnails(page: Page) -> Locator:
    return page.locator("#messages .msg .attachment-image img")


async def loaded(page: Page, img: Locator) -> dict[str, Any]:
    """Wait until ``img`` has loaded; its natural and shown sizes."""
    handle = await img.element_handle()
    await page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=handle)
    result: dict[str, Any] = await img.evaluate(
        """(img) => ({natural: [img.naturalWidth, img.naturalHeight],
                      shown: [img.clientWidth, img.clientHeight]})"""
    )
    return result


def forget_refusals(errors: list[str], status: int) -> None:
    """The browser logs a refused request (Chromium: "status of 413"); nothing else may be."""
    errors[:] = [e for e in errors if f"status of {status}" not in e]


async def test_an_image_from_the_button_shows_its_thumbnail_everywhere_and_opens_large(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    await choose(ann.page, ("holiday.png", png(1200, 900), "image/png"))

    for chat in (ann, bo):
        page = chat.page
        img = thumbnails(page)
        await expect(img).to_have_count(1)
        await expect(img).to_have_attribute("src", re.compile(r"^/files/[\w-]+/thumb$"))
        await expect(img).to_have_attribute("alt", "holiday.png")
        sizes = await loaded(page, img)
        # A WebP at most 480 wide, shown 360 wide in its place reserved before it loaded.
        assert 0 < sizes["natural"][0] <= 480
        assert sizes["shown"] == [360, 270]
        # Sent without a caption: the name is not said twice, and the message is there once.
        item = page.locator("#messages .msg")
        await expect(item).to_have_count(1)
        await expect(item.locator(".text")).to_have_count(0)
        await expect(page.locator("#pending .msg")).to_have_count(0)
    await expect(ann.page.locator("#messages .msg.mine.sent")).to_have_count(1)

    # A click opens the full image over the page; Escape closes it, back on the thumbnail.
    page = bo.page
    link = page.locator("#messages .attachment-image")
    src = await thumbnails(page).get_attribute("src")
    assert src is not None
    file_id = src.split("/")[2]
    await link.click()
    overlay = page.locator("dialog.lightbox")
    await expect(overlay).to_be_visible()
    full = overlay.locator("img")
    await expect(full).to_have_attribute("src", f"/files/{file_id}/holiday.png")
    await expect(full).to_have_attribute("alt", "holiday.png")
    assert (await loaded(page, full))["natural"] == [1200, 900]
    await expect(overlay.get_by_role("button", name="Close image")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(overlay).to_be_hidden()
    await expect(link).to_be_focused()
    # From the keyboard too; and a click on the image closes it.
    await page.keyboard.press("Enter")
    await expect(overlay).to_be_visible()
    await full.click()
    await expect(overlay).to_be_hidden()
    await expect(page.locator("#messages .msg")).to_have_count(1)


async def test_a_pasted_image_goes_with_the_caption_typed_in_the_box(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    page = ann.page
    # The upload is held on its way, to see it under way.
    release = asyncio.Event()
    posted: list[str] = []

    async def hold(route: Route) -> None:
        posted.append(route.request.post_data_buffer.decode("latin-1") or "")
        await release.wait()
        await route.continue_()

    await page.route("**/api/rooms/team/files", hold)
    box = page.locator("#text")
    await box.fill("the view from the top")
    await paste(page, in_page("view.png", png(80, 200, "blue"), "image/png"))
    # The caption left the box with the file; the upload shows where the message will be.
    await expect(box).to_have_value("")
    row = page.locator("#pending .msg.upload")
    await expect(row).to_contain_text("Uploading view.png…")
    await expect(row.locator("progress")).to_be_visible()
    release.set()
    await expect(row).to_have_count(0)

    for chat in (ann, bo):
        item = chat.page.locator("#messages .msg")
        await expect(item).to_have_count(1)
        await expect(item.locator(".text")).to_have_text("the view from the top")
        img = item.locator(".attachment-image img")
        await expect(img).to_have_attribute("alt", "view.png")
        # 80 by 200, under 360 by 360: shown as it is.
        assert (await loaded(chat.page, img))["shown"] == [80, 200]

    # The form: the caption, a client_id, who the guest is (as the socket's auth), the file last.
    (body,) = posted
    fields = re.findall(r'name="(\w+)"', body)
    assert fields == ["text", "client_id", "name", "key", "file"]
    key = await page.evaluate("localStorage.getItem('chatapp.key')")
    assert f'name="key"\r\n\r\n{key}\r\n' in body
    assert 'name="name"\r\n\r\nAnn\r\n' in body
    assert 'filename="view.png"' in body

    # Pasted text is the box's, as always.
    await page.evaluate(
        """() => {
            const dt = new DataTransfer();
            dt.setData('text/plain', 'just words');
            const box = document.getElementById('text');
            const ev = new ClipboardEvent('paste',
                {clipboardData: dt, bubbles: true, cancelable: true});
            box.dispatchEvent(ev);
            window.__pasteTaken = ev.defaultPrevented;
        }"""
    )
    assert await page.evaluate("window.__pasteTaken") is False
    await expect(page.locator("#pending .msg")).to_have_count(0)


async def test_a_large_upload_shows_how_much_went_up_to_all_of_it(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    page = ann.page
    # Sent at 2 MiB/s (Chromium's network emulation), so that it is seen on its way.
    cdp = await ann.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 2 << 20},
    )
    await page.evaluate(RECORD_PROGRESS)
    size = 4 << 20
    await choose(page, ("big.bin", bytes(size), "application/octet-stream"))
    bar = page.locator("#pending .msg.upload").get_by_role("progressbar", name="Uploading big.bin")
    await expect(bar).to_be_visible()
    item = page.locator("#messages .msg")
    await expect(item.locator(".attachment-name")).to_have_text("big.bin")
    await expect(page.locator("#pending .msg")).to_have_count(0)

    progress: list[list[Any]] = await page.evaluate("window.__progress")
    assert progress, "the bar never moved"
    # Of the whole form (the file and its fields), only ever forward, and all of it at last.
    assert all(total > size for _, total, _ in progress)
    sent = [value for value, _, _ in progress]
    assert sent == sorted(sent)
    assert any(0 < value < total for value, total, _ in progress), progress
    value, total, shown = progress[-1]
    assert (value, shown) == (total, "100%")
    assert all(shown == f"{int(value * 100 / total)}%" for value, total, shown in progress)


async def test_a_dropped_html_file_is_a_download_link_never_rendered(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    page = ann.page
    html = in_page("page.html", HTML, "text/html")
    # While files are dragged over the room it says it takes them.
    await drag(page, ["dragenter", "dragover"], html)
    await expect(page.locator("#main")).to_have_class(re.compile(r"\bdropping\b"))
    await drag(page, ["drop"], html)
    await expect(page.locator("#main")).not_to_have_class(re.compile(r"\bdropping\b"))

    for chat in (ann, bo):
        card = chat.page.locator("#messages .msg .attachment-file")
        await expect(card).to_have_count(1)
        await expect(card.locator(".attachment-name")).to_have_text("page.html")
        await expect(card.locator(".attachment-size")).to_have_text(f"{len(HTML)} bytes")
        await expect(card).to_have_attribute("href", re.compile(r"^/files/[\w-]+/page\.html$"))
        await expect(card).to_have_attribute("download", "page.html")
        # Never shown as a page: no frame, no script, nothing of its markup.
        await expect(chat.page.locator("#messages .msg .text")).to_have_count(0)
        messages = chat.page.locator("#messages")
        await expect(messages.locator("iframe, object, embed, script, img, #bold")).to_have_count(0)
        assert await chat.page.evaluate("window.__pwned") is None

    # A drag that leaves without dropping leaves nothing highlighted, and nothing sent.
    await drag(page, ["dragenter", "dragover", "dragleave"], html)
    await expect(page.locator("#main")).not_to_have_class(re.compile(r"\bdropping\b"))
    await expect(page.locator("#pending .msg")).to_have_count(0)
    await expect(page.locator("#messages .msg")).to_have_count(1)


async def test_a_file_too_large_shows_the_servers_error_and_the_next_file_still_goes(
    start_server: ServerFactory, open_chat: OpenChat
) -> None:
    server = await start_server("--upload-max-bytes", "1000", *NO_RATE_LIMITS)
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    page = ann.page
    client_ids: list[str] = []

    async def note_client_id(route: Route) -> None:
        body = route.request.post_data_buffer or b""
        if b'filename="big.bin"' in body:
            found = re.search(rb'name="client_id"\r\n\r\n(\w+)\r\n', body)
            client_ids.append(found[1].decode() if found else "")
        await route.continue_()

    await page.route("**/api/rooms/team/files", note_client_id)
    # Two at once (set on the file input): one upload each, in order.
    await page.locator("#attach-input").set_input_files(
        [
            {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"x" * 5000},
            {"name": "small.txt", "mimeType": "text/plain", "buffer": b"small enough"},
        ]
    )
    row = page.locator("#pending .msg.upload")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("big.bin was not sent")
    await expect(row.get_by_role("alert")).to_have_text(
        "Not sent: file too large: at most 1000 bytes"
    )
    for chat in (ann, bo):
        card = chat.page.locator("#messages .msg .attachment-file")
        await expect(card.locator(".attachment-name")).to_have_text(["small.txt"])

    # Retry asks again (and is refused again); Dismiss forgets it.
    async with page.expect_response("**/api/rooms/team/files") as answer:
        await row.get_by_role("button", name="Retry").click()
    assert (await answer.value).status == 413
    # The same upload again: the same client_id (the server would store it once).
    assert len(client_ids) == 2 and client_ids[0] == client_ids[1] != ""
    await expect(row).to_contain_text("big.bin was not sent")
    await expect(row.get_by_role("button", name="Dismiss")).to_be_visible()
    await row.get_by_role("button", name="Dismiss").click()
    await expect(row).to_have_count(0)
    await expect(page.locator("#text")).to_be_focused()
    await expect(bo.page.locator("#messages .msg")).to_have_count(1)
    forget_refusals(ann.errors, 413)


async def test_deleting_a_message_with_an_image_takes_the_image_off_every_page(
    server: Server, open_chat: OpenChat
) -> None:
    ann = await open_chat(server.url, "/r/team", "Ann")
    bo = await open_chat(server.url, "/r/team", "Bo")
    await ann.page.locator("#text").fill("wrong photo")
    await ann.page.locator("#attach-input").set_input_files(
        {"name": "oops.png", "mimeType": "image/png", "buffer": png()}
    )
    for chat in (ann, bo):
        await expect(thumbnails(chat.page)).to_have_count(1)
        await loaded(chat.page, thumbnails(chat.page))
    await delete(ann.page, "wrong photo")
    for chat in (ann, bo):
        item = chat.page.locator("#messages .msg")
        await expect(item.locator(".text")).to_have_text("message deleted")
        await expect(item.locator(".attachment, img")).to_have_count(0)
        await expect(chat.page.locator("#messages")).not_to_contain_text("oops.png")


async def test_a_signed_in_account_sends_a_file_as_itself(
    server: Server, open_chat: OpenChat
) -> None:
    await add_account(server.db, "ann", "ann's password", "Ann A")
    ann = await open_chat(server.url, "/r/team", name=None, wait_connected=False)
    page = ann.page
    await sign_in_on_page(page, "ann", "ann's password")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    bo = await open_chat(server.url, "/r/team", "Bo")
    await choose(page, ("notes.txt", b"remember the milk", "text/plain"))
    for chat in (ann, bo):
        item = chat.page.locator("#messages .msg")
        await expect(item.locator(".attachment-name")).to_have_text("notes.txt")
        await expect(item.locator(".author")).to_have_text("Ann A")
        await expect(item.locator(".id-handle")).to_have_text("@ann")
    await expect(page.locator("#messages .msg.mine")).to_have_count(1)
