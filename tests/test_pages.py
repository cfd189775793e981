"""The pages over HTTP: rooms by URL, security headers, same-origin assets only."""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ServerFactory
from tests.support import ROOT, Server

STATIC = ROOT / "static"


class PageParser(HTMLParser):
    """Collects what a page loads and anything that would be inline code or style."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.body: dict[str, str | None] = {}
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in a:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        elif tag == "style":
            self.inline.append("<style>")
        elif tag == "link":
            self.links.append(a)
        elif tag == "body":
            self.body = a

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"<script>{data.strip()[:40]}")


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def assert_security_headers(headers: Mapping[str, str]) -> None:
    csp = headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


async def get(url: str, **kw: object) -> tuple[aiohttp.ClientResponse, str]:
    async with aiohttp.ClientSession() as http, http.get(url, **kw) as resp:  # type: ignore[arg-type]
        return resp, await resp.text()


async def test_lobby_and_room_pages_carry_their_room(server: Server) -> None:
    resp, html = await get(server.url + "/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = parse(html)
    assert page.body["data-room"] == "lobby"
    assert "<title>#lobby · chatapp</title>" in html

    resp, html = await get(server.url + "/r/book_club-2")
    assert resp.status == 200
    assert parse(html).body["data-room"] == "book_club-2"
    assert "#book_club-2" in html


async def test_room_urls_are_lowercase(server: Server) -> None:
    resp, _ = await get(server.url + "/r/Team", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/r/team"


@pytest.mark.parametrize("path", ["/r/-bad", "/r/no%20spaces", "/r/" + "x" * 65, "/r/%3Cscript%3E"])
async def test_invalid_room_gets_a_404_page(server: Server, path: str) -> None:
    resp, html = await get(server.url + path)
    assert resp.status == 404
    assert "No such room" in html
    assert "invalid room name" in html
    assert "<script>" not in html  # the room is never echoed unescaped
    assert_security_headers(resp.headers)


async def test_pages_send_security_headers_and_have_no_inline_code(server: Server) -> None:
    for path in ("/", "/r/team"):
        resp, html = await get(server.url + path)
        assert_security_headers(resp.headers)
        page = parse(html)
        assert page.inline == []
        assert page.scripts == [{"type": "module", "src": "/static/chat.js"}]


@pytest.mark.parametrize(
    "path", ["/static/chat.js", "/static/chat.css", "/api/rooms", "/healthz", "/nowhere"]
)
async def test_every_response_has_the_headers(server: Server, path: str) -> None:
    resp, _ = await get(server.url + path)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in resp.headers


async def test_everything_the_page_loads_is_served_from_our_origin(server: Server) -> None:
    _, html = await get(server.url + "/")
    page = parse(html)
    urls = [s["src"] for s in page.scripts] + [link["href"] for link in page.links]
    # ES module imports, followed through every static file.
    seen: set[str] = set()
    queue = [u for u in urls if u]
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        assert url.startswith("/"), f"{url} is not on our origin"
        resp, body = await get(server.url + url)
        assert resp.status == 200, url
        if url.endswith(".js") and "/vendor/" not in url:
            assert resp.content_type in ("application/javascript", "text/javascript")
            for target in re.findall(r'^import .* from "([^"]+)";', body, re.M):
                base = url.rsplit("/", 1)[0]
                queue.append(target if target.startswith("/") else f"{base}/{target[2:]}")
    assert "/static/vendor/socket.io.esm.min.js" in seen
    assert "/static/ui/timeline.js" in seen


def test_front_end_never_uses_innerhtml_or_another_origin() -> None:
    """User text goes through textContent; no code or style comes from elsewhere."""
    files = [*STATIC.rglob("*.js"), *STATIC.rglob("*.css"), *(ROOT / "templates").glob("*.html")]
    assert len(files) > 5
    for path in files:
        if "vendor" in path.parts:
            continue
        text = path.read_text()
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, f"{path.name} uses {banned}"
        assert not re.search(r"(src|href|url\()\s*=?\s*[\"']?(https?:)?//", text), path.name


async def test_socketio_accepts_only_our_origin_by_default(server: Server) -> None:
    url = server.url + "/socket.io/?EIO=4&transport=polling"
    resp, _ = await get(url, headers={"Origin": server.url})
    assert resp.status == 200
    resp, _ = await get(url)  # same-origin GETs carry no Origin header
    assert resp.status == 200
    assert "refused" not in server.log()  # nothing to warn about so far
    resp, _ = await get(url, headers={"Origin": "http://evil.example"})
    assert resp.status == 400
    assert "refused a Socket.IO connection from origin http://evil.example" in server.log()


async def test_allowed_origins_flag_lets_others_connect(start_server: ServerFactory) -> None:
    server = await start_server("--allowed-origins", "http://chat.example:8000")
    url = server.url + "/socket.io/?EIO=4&transport=polling"
    resp, _ = await get(url, headers={"Origin": "http://chat.example:8000"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "http://chat.example:8000"
    resp, _ = await get(url, headers={"Origin": "http://other.example"})
    assert resp.status == 400


def test_static_files_exist_for_every_template_reference() -> None:
    for template in (ROOT / "templates").glob("*.html"):
        for ref in re.findall(r'(?:src|href)="/static/([^"]+)"', template.read_text()):
            assert (STATIC / ref).is_file(), f"{template.name} refers to missing {ref}"


def test_the_client_library_is_not_committed() -> None:
    assert not (STATIC / "vendor").exists() or not any(
        p.suffix == ".js" for p in Path(STATIC / "vendor").iterdir()
    )
