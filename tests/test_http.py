"""The HTTP side: the pages (rooms by URL, security headers, same-origin assets only),
the JSON API and the health check."""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import aiohttp
import aiohttp_jinja2
import jinja2.meta
import pytest
from markupsafe import escape

from chatapp.app import create_app
from chatapp.settings import load_settings
from chatapp.store.sqlite import SQLiteStore
from tests.conftest import ClientFactory, ServerFactory
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


async def get_json(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


# -- pages ------------------------------------------------------------------------------------


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
    resp, html = await get(server.url + "/r/Team")  # followed
    assert resp.status == 200 and parse(html).body["data-room"] == "team"


@pytest.mark.parametrize("path", ["/r/-bad", "/r/no%20spaces", "/r/" + "x" * 65, "/r/%3Cscript%3E"])
async def test_invalid_room_gets_a_404_page(server: Server, path: str) -> None:
    resp, html = await get(server.url + path)
    assert resp.status == 404
    assert resp.content_type == "text/html"
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


async def test_client_library_is_served_from_our_origin(server: Server) -> None:
    resp, body = await get(server.url + "/static/vendor/socket.io.esm.min.js")
    assert resp.status == 200 and "javascript" in resp.headers["Content-Type"]
    assert "export" in body
    resp, _ = await get(server.url + "/static/vendor/../../pyproject.toml")
    assert resp.status == 404


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


# -- escaping ----------------------------------------------------------------------------------


def hostile(name: str) -> str:
    return f"\"'><script>{name}</script>&"


class Hostile(str):
    """A variable's hostile text, whose attributes (``account.handle``) are hostile too."""

    def __new__(cls, name: str) -> Hostile:
        made = super().__new__(cls, hostile(name))
        made.name = name
        return made

    def __getattr__(self, attr: str) -> Hostile:
        if attr.startswith("__"):  # not a template's: markupsafe asks for __html__
            raise AttributeError(attr)
        return Hostile(f"{self.name}.{attr}")


def test_every_template_variable_is_escaped(tmp_path: Path, packet_json: None) -> None:
    """Each variable of each template, given markup and quotes, renders as text: with the
    application's own template environment, so this fails if autoescaping is off there."""
    app = create_app(load_settings(["--db", str(tmp_path / "chat.db")], environ={}))
    env = aiohttp_jinja2.get_env(app)
    assert env.loader is not None
    templates = env.loader.list_templates()
    assert {"chat.html", "404.html", "login.html", "signin.html"} <= set(templates)
    checked = 0
    for template in templates:
        source, _, _ = env.loader.get_source(env, template)
        names = jinja2.meta.find_undeclared_variables(env.parse(source)) - set(env.globals)
        # Whatever a template prints (a variable, or an attribute of one) is among the
        # variables found.
        printed = set(re.findall(r"{{-?\s*([\w.]+)", source))
        # A loop's variable (``{% for s in sign_ins %}``) is given one hostile item.
        loops = dict(re.findall(r"{%-?\s*for\s+(\w+)\s+in\s+(\w+)", source))
        assert {p.split(".")[0] for p in printed} <= names | set(loops), template
        # Rendered with every variable set, then with each one empty in turn, so that
        # both sides of an ``{% if %}`` show what they print.
        values: dict[str, object] = {name: Hostile(name) for name in names}
        values.update({seq: [Hostile(var)] for var, seq in loops.items()})
        pages = [env.get_template(template).render(values)]
        pages += [env.get_template(template).render({**values, n: ""}) for n in names]
        for name in printed:
            text = hostile(name)
            assert all(text not in html for html in pages), f"{template}: {name} not escaped"
            # HTML-escaped, or URL-encoded (``| urlencode``, in a link's query).
            shown = (str(escape(text)), quote(text, safe="/"))
            assert any(s in html for html in pages for s in shown), f"{template}: {name} not shown"
            checked += 1
    assert checked >= 8  # room, transports, the three limits, reason, next, error


async def test_the_login_page_escapes_where_it_sends_you_back(start_server: ServerFactory) -> None:
    """``next`` is the one page variable taken from the request as it is."""
    server = await start_server("--access-token", "correct-horse-battery-staple-7f3a")
    target = "/r/team?x=\"><script>alert(1)</script>'"
    resp, html = await get(server.url + "/login", params={"next": target})
    assert resp.status == 200
    assert "<script>" not in html
    assert f'name="next" value="{escape(target)}"' in html


# -- the JSON API and the health check ---------------------------------------------------------


async def test_api_rooms_lists_rooms_with_history_or_people(
    server: Server, make_client: ClientFactory
) -> None:
    status, rooms = await get_json(server.url + "/api/rooms")
    assert status == 200 and rooms == []
    talker = make_client()
    await talker.connect(server.url, room="talk", name="ann")
    ack = await talker.send("hi")
    lurker = make_client()
    await lurker.connect(server.url, room="quiet", name="bo", key="bo-browser-key-00001")
    lurker2 = make_client()  # a second tab of the same browser counts once
    await lurker2.connect(server.url, room="quiet", name="bo", key="bo-browser-key-00001")
    status, rooms = await get_json(server.url + "/api/rooms")
    assert status == 200
    assert {r["room"]: r for r in rooms} == {
        "talk": {"room": "talk", "users": 1, "last_message_at": ack["message"]["ts"]},
        "quiet": {"room": "quiet", "users": 1, "last_message_at": None},
    }
    await talker.close()
    status, rooms = await get_json(server.url + "/api/rooms")
    by_room = {r["room"]: r for r in rooms}
    # Nobody is left in "talk" but its history keeps it listed.
    assert by_room["talk"]["users"] == 0


async def test_api_rooms_comes_in_pages_busiest_first(
    start_server: ServerFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    """However many rooms ever existed, a page holds at most ``limit`` (default 50, at most
    100) and links to the next: rooms with people first, then the most recently active."""
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    stamps = {}
    for n in range(130):
        msg, _ = await store.add(f"room-{n:03d}", "filler", "hi")
        stamps[msg.room] = msg.ts
    await store.close()
    server = await start_server()
    crowd = [make_client() for _ in range(3)]
    for client in crowd[:2]:
        await client.connect(server.url, room="busy")  # no history, two people
    await crowd[2].connect(server.url, room="room-005")  # old history, one person
    quiet = sorted((r for r in stamps if r != "room-005"), key=lambda r: (-stamps[r], r))
    expected = ["busy", "room-005", *quiet]

    listed: list[dict] = []
    url: str | None = server.url + "/api/rooms"
    pages = 0
    async with aiohttp.ClientSession() as http:
        while url is not None:
            async with http.get(url) as r:
                assert r.status == 200
                page = await r.json()
                link = r.headers.get("Link")
            assert len(page) <= 50
            listed += page
            pages += 1
            url = None
            if link is not None:
                assert link.endswith('>; rel="next"')
                url = server.url + link[1 : link.index(">")]
        assert pages == 3
        assert [r["room"] for r in listed] == expected
        assert listed[0] == {"room": "busy", "users": 2, "last_message_at": None}
        assert listed[1]["users"] == 1 and listed[2]["users"] == 0
        async with http.get(server.url + "/api/rooms?limit=100") as r:
            assert [room["room"] for room in await r.json()] == expected[:100]
        for bad in ("limit=0", "limit=101", "limit=x", "after=nonsense", "after=1.2.-x"):
            async with http.get(server.url + "/api/rooms?" + bad) as r:
                assert r.status == 400 and (await r.json())["error"].startswith("invalid")


async def test_api_messages_pages_like_history(server: Server, make_client: ClientFactory) -> None:
    client = make_client()
    await client.connect(server.url, room="api")
    sent = [(await client.send(f"n{i}"))["message"] for i in range(7)]
    status, page = await get_json(server.url + "/api/rooms/api/messages?limit=3")
    assert status == 200 and page == {"messages": sent[4:], "has_more": True}
    before = sent[4]["id"]
    status, page = await get_json(server.url + f"/api/rooms/api/messages?before={before}&limit=10")
    assert page == {"messages": sent[:4], "has_more": False}
    status, page = await get_json(server.url + "/api/rooms/api/messages")
    assert page == {"messages": sent, "has_more": False}
    status, page = await get_json(server.url + "/api/rooms/nobody-here/messages")
    assert status == 200 and page == {"messages": [], "has_more": False}


async def test_api_errors_are_json(server: Server) -> None:
    cases = [
        ("/api/rooms/Bad%20Room/messages", 404, "invalid room name"),
        ("/api/rooms/ok/messages?limit=0", 400, "invalid limit"),
        ("/api/rooms/ok/messages?limit=abc", 400, "invalid limit"),
        ("/api/rooms/ok/messages?before=-1", 400, "invalid before"),
        ("/api/rooms/ok/messages?before=1.5", 400, "invalid before"),
        ("/api/nothing-here", 404, "not found"),
    ]
    for path, status, error in cases:
        got_status, body = await get_json(server.url + path)
        assert got_status == status, path
        assert isinstance(body, dict) and body["error"].startswith(error), (path, body)
    async with aiohttp.ClientSession() as session, session.post(server.url + "/api/rooms") as resp:
        assert resp.status == 405 and (await resp.json())["error"]


async def test_healthz(server: Server) -> None:
    assert await get_json(server.url + "/healthz") == (200, {"status": "ok"})
