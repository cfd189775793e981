"""Single sign-on behind a trusted proxy: the header the operator named signs the person
in (their account made on first sight); without the operator's say-so it means nothing."""

from __future__ import annotations

import aiohttp

from .support import Server
from .test_sign_in import add_account, me

HEADER = "X-Forwarded-User"


async def page(server: Server, headers: dict[str, str]) -> tuple[str, str | None]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/r/team", headers=headers) as resp,
    ):
        morsel = resp.cookies.get("chatapp_session")
        return await resp.text(), morsel.value if morsel else None


async def test_the_proxy_signs_people_in_and_makes_their_accounts(
    start_server, make_client
) -> None:
    server: Server = await start_server("--trust-proxy", "--sso-header", HEADER)
    html, token = await page(server, {HEADER: "zoe", "X-Forwarded-For": "198.51.100.7"})
    assert 'data-handle="zoe"' in html and token is not None
    status, body = await me(server, token)
    assert status == 200 and (body["account"]["handle"], body["account"]["role"]) == (
        "zoe",
        "member",
    )
    assert body["sign_ins"][0]["address"] == "198.51.100.7"
    welcome = await make_client(headers={"Cookie": f"chatapp_session={token}"}).connect(
        server.url, room="team"
    )
    assert welcome["handle"] == "zoe"
    # Again with its cookie: the same sign-in, no new one.
    html, again = await page(server, {HEADER: "zoe", "Cookie": f"chatapp_session={token}"})
    assert again is None and len((await me(server, token))[1]["sign_ins"]) == 1
    # The files a page loads make no sign-ins of their own.
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/static/chat.css", headers={HEADER: "zoe"}) as resp,
    ):
        assert resp.status == 200 and "chatapp_session" not in resp.cookies
    # Another person through the same browser: their own account.
    html, other = await page(server, {HEADER: "yann", "Cookie": f"chatapp_session={token}"})
    assert other is not None and (await me(server, other))[1]["account"]["handle"] == "yann"


async def test_the_proxys_header_cannot_take_an_account_by_a_look_alike(start_server) -> None:
    server: Server = await start_server("--trust-proxy", "--sso-header", HEADER)
    await add_account(server.db, "ann", "ann's password")
    for name in ("\u0430nn", "not a handle", ""):
        html, token = await page(server, {HEADER: name})
        assert token is None and "data-handle" not in html
    # Sent twice (a client's own and the proxy's, by a proxy that appends): ignored.
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/r/team", headers=[(HEADER, "ann"), (HEADER, "zoe")]) as resp,
    ):
        assert "chatapp_session" not in resp.cookies
    html, token = await page(server, {HEADER: "ANN"})
    assert token is not None and 'data-handle="ann"' in html


async def test_the_header_means_nothing_unless_the_operator_named_it(start_server) -> None:
    plain: Server = await start_server()
    html, token = await page(plain, {HEADER: "zoe"})
    assert token is None and "data-handle" not in html
    untrusted: Server = await start_server("--sso-header", HEADER)  # no --trust-proxy
    html, token = await page(untrusted, {HEADER: "zoe"})
    assert token is None and "data-handle" not in html
    assert "--sso-header is ignored without --trust-proxy" in untrusted.log()
