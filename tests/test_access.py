"""Access control (--access-token) and the origin policy of the JSON API and Socket.IO."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
import socketio
from yarl import URL

from .conftest import ServerFactory
from .support import Server

TOKEN = "correct-horse-battery-staple-7f3a"


async def private_server(start_server: ServerFactory, *args: str) -> Server:
    # Through the environment, as the docs recommend (flags show in ps).
    return await start_server(*args, env={"CHATAPP_ACCESS_TOKEN": TOKEN})


def session(url: str | None = None, **kw: Any) -> aiohttp.ClientSession:
    # unsafe: keep cookies for an IP address host (127.0.0.1).
    return aiohttp.ClientSession(url, cookie_jar=aiohttp.CookieJar(unsafe=True), **kw)


def login(http: aiohttp.ClientSession, token: str, next_path: str = "/") -> Any:
    return http.post("/login", data={"token": token, "next": next_path}, allow_redirects=False)


async def test_open_server_needs_no_token(server: Server) -> None:
    async with session(server.url) as http:
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 200
        async with http.get("/login", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/"


async def test_pages_ask_for_the_token_once(start_server: ServerFactory) -> None:
    server = await private_server(start_server)
    async with session(server.url) as http:
        async with http.get("/r/team?x=1", allow_redirects=False) as r:
            assert r.status == 303
            target = URL(r.headers["Location"])
            assert target.path == "/login" and target.query["next"] == "/r/team?x=1"
        async with http.get("/login?next=/r/team") as r:
            page = await r.text()
            assert r.status == 200
            assert '<form method="post" action="/login">' in page
            assert 'type="password"' in page
            # A strict CSP is coming: no inline script or style on this page.
            assert "<script" not in page and "style=" not in page and "<style" not in page
        async with http.get("/static/login.css") as r:
            assert r.status == 200
        async with login(http, "wrong", "/r/team") as r:
            assert r.status == 401
            assert "not the access token" in await r.text()
        async with login(http, TOKEN, "/r/team") as r:
            assert r.status == 303 and r.headers["Location"] == "/r/team"
            cookie = r.headers["Set-Cookie"]
            assert TOKEN not in cookie
            assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
            assert "Max-Age=" in cookie
        # The session now carries the cookie: pages and the API open.
        async with http.get("/r/team", allow_redirects=False) as r:
            assert r.status == 200
        async with http.get("/api/rooms") as r:
            assert r.status == 200 and await r.json() == []
        async with http.get("/login?next=/r/x", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/r/x"
    assert TOKEN not in server.log()


async def test_api_answers_401_without_access(start_server: ServerFactory) -> None:
    server = await private_server(start_server)
    async with session(server.url) as http:
        for path in ("/api/rooms", "/api/rooms/lobby/messages"):
            async with http.get(path) as r:
                assert r.status == 401
                assert await r.json() == {"error": "access token required"}
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get("/api/rooms", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200
        async with http.get("/api/rooms", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
        async with http.get("/healthz") as r:  # for load balancers
            assert r.status == 200
    assert TOKEN not in server.log()


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        "garbage",
        "99999999999.AAAA",
        "1.{sig}",  # a real signature for an expiry in the past
        "{exp}.{sig}x",
        "{exp}0.{sig}",
        "²²²²²²²²²².{sig}",  # digits to str.isdigit(), not to int()
        "١٢٣٤٥٦٧٨٩٠.{sig}",  # digits to int() too, but not the signed text
        "9" * 150 + ".{sig}",
    ],
)
async def test_forged_or_expired_cookies_are_refused(
    start_server: ServerFactory, cookie: str
) -> None:
    import hashlib
    import hmac
    from base64 import urlsafe_b64encode

    server = await private_server(start_server)
    key = hmac.new(b"chatapp access cookie v1", TOKEN.encode(), hashlib.sha256).digest()

    def sig(exp: int) -> str:
        mac = hmac.new(key, str(exp).encode(), hashlib.sha256).digest()
        return urlsafe_b64encode(mac).decode().rstrip("=")

    exp = 4102444800  # 2100
    value = cookie.format(exp=exp, sig=sig(1) if cookie.startswith("1.") else sig(exp))
    async with session(server.url, cookies={"chatapp_access": value}) as http:
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 303
        async with http.get("/api/rooms") as r:
            assert r.status == 401
    # The same construction with a valid expiry is accepted: the test forges correctly.
    good = f"{exp}.{sig(exp)}"
    jar = {"chatapp_access": good}
    async with session(server.url, cookies=jar) as http, http.get("/api/rooms") as r:
        assert r.status == 200


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x", ""]
)
async def test_login_never_redirects_off_site(start_server: ServerFactory, target: str) -> None:
    server = await private_server(start_server)
    async with session(server.url) as http, login(http, TOKEN, target) as r:
        assert r.status == 303 and r.headers["Location"] == "/"


async def test_socketio_needs_the_cookie_or_auth_token(
    start_server: ServerFactory, make_client
) -> None:
    server = await private_server(start_server)
    assert await make_client().connect_refused(server.url) == "access token required"
    assert await make_client().connect_refused(server.url, token="nope") == "invalid access token"
    assert await make_client().connect_refused(server.url, token=5) == "invalid access token"
    welcome = await make_client().connect(server.url, token=TOKEN, name="bot")
    assert welcome["name"] == "bot"
    # A browser: the cookie from the login form rides on the handshake.
    async with session(server.url) as http, login(http, TOKEN) as r:
        cookie = r.cookies["chatapp_access"].value
    browser = make_client(headers={"Cookie": f"chatapp_access={cookie}"})
    assert (await browser.connect(server.url, name="web"))["users"] == ["bot", "web"]
    polling = make_client(transports=["polling"], headers={"Cookie": f"chatapp_access={cookie}"})
    await polling.connect(server.url, name="poll")
    assert TOKEN not in server.log()


async def test_cookie_survives_a_restart_with_the_same_token(
    start_server: ServerFactory, tmp_path
) -> None:
    first = await private_server(start_server)
    async with session(first.url) as http, login(http, TOKEN) as r:
        cookie = r.cookies["chatapp_access"].value
    await first.stop()
    second = await start_server(env={"CHATAPP_ACCESS_TOKEN": TOKEN}, workdir=tmp_path)
    cookies = {"chatapp_access": cookie}
    async with session(second.url, cookies=cookies) as http, http.get("/api/rooms") as r:
        assert r.status == 200
    # A new token logs everyone out.
    third = await start_server(env={"CHATAPP_ACCESS_TOKEN": "another"}, workdir=tmp_path)
    async with session(third.url, cookies=cookies) as http, http.get("/api/rooms") as r:
        assert r.status == 401


async def test_guessing_is_throttled_per_address(start_server: ServerFactory, make_client) -> None:
    server = await private_server(start_server)
    async with session(server.url) as http:
        for _ in range(10):
            async with login(http, "guess") as r:
                assert r.status == 401
        async with login(http, TOKEN) as r:  # even the right token, for a while
            assert r.status == 429
            assert re.search(r"too many failed attempts, retry in \d+ s", await r.text())
    reason = await make_client().connect_refused(server.url, token=TOKEN)
    assert reason.startswith("too many failed attempts")
    assert "failed the access token 10 times" in server.log()


# -- origins --------------------------------------------------------------------------------


async def test_api_refuses_foreign_origins(start_server: ServerFactory) -> None:
    server = await start_server("--allowed-origins", "http://friend.example")
    async with session(server.url) as http:
        async with http.get("/api/rooms", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403
            assert await r.json() == {"error": "origin not allowed"}
        async with http.get("/api/rooms", headers={"Origin": server.url}) as r:
            assert r.status == 200
        async with http.get("/api/rooms", headers={"Origin": "http://friend.example"}) as r:
            assert r.status == 200
        async with http.get("/api/rooms") as r:  # not a browser: no Origin
            assert r.status == 200
        async with http.post(
            "/login", data={"token": "x"}, headers={"Origin": "null"}, allow_redirects=False
        ) as r:
            assert r.status == 403
        async with http.get("/", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 200  # pages are not an API: a link from anywhere opens them
    assert "refused GET /api/rooms from origin http://evil.example" in server.log()


async def test_socketio_refuses_foreign_origins(server: Server, make_client) -> None:
    evil = make_client(headers={"Origin": "http://evil.example"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        await evil.connect(server.url)
    async with session(server.url) as http:
        handshake = "/socket.io/?EIO=4&transport=polling"
        async with http.get(handshake, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 400
            assert "not an accepted origin" in await r.text()
    own = make_client(headers={"Origin": server.url})
    await own.connect(server.url)
    log = server.log()
    assert "refused a Socket.IO connection from origin http://evil.example" in log
    assert log.count("refused a Socket.IO connection from origin") == 2  # one per attempt


async def test_forwarded_host_counts_only_behind_a_trusted_proxy(
    start_server: ServerFactory,
) -> None:
    plain = await start_server()
    behind = await start_server("--trust-proxy", "--allowed-hosts", "chat.example")
    headers = {"Origin": "https://chat.example", "X-Forwarded-Host": "chat.example"}
    async with session() as http:
        async with http.get(plain.url + "/api/rooms", headers=headers) as r:
            assert r.status == 403
        async with http.get(behind.url + "/api/rooms", headers=headers) as r:
            assert r.status == 200


async def test_cookie_is_secure_behind_a_trusted_tls_proxy(start_server: ServerFactory) -> None:
    headers = {"X-Forwarded-Proto": "https"}
    plain = await private_server(start_server)
    behind = await private_server(start_server, "--trust-proxy")
    for server, secure in ((plain, False), (behind, True)):
        async with session(server.url) as http:
            data = {"token": TOKEN, "next": "/"}
            async with http.post("/login", data=data, headers=headers, allow_redirects=False) as r:
                assert r.status == 303
                assert ("Secure" in r.headers["Set-Cookie"]) is secure
