"""The admins' page: bots and their tokens, bans and the moderation log from the browser's
forms (the services of the API and the command line)."""

from __future__ import annotations

import re

from chatapp.private_rooms import NOT_A_MEMBER

from .support import Server
from .test_bots import webhook
from .test_moderation import admin_and_ann
from .test_sign_in import cookie, get_page, me, post_form, post_sign_in


async def get(server: Server, token: str | None) -> tuple[int, str, str | None]:
    return await get_page(server, "/admin", token)


async def post(server: Server, path: str, token: str, data: dict[str, str]) -> tuple[int, str]:
    """Post an admin form: status and the page that answers."""
    status, _, _, html = await post_form(server, path, token, data)
    return status, html


async def test_only_admins_see_the_admin_page(start_server) -> None:
    server: Server = await start_server()
    boss, ann = await admin_and_ann(server)
    assert (await get(server, None))[::2] == (303, "/signin?next=/admin")
    assert (await get(server, ann))[0] == 403
    assert (await post(server, "/admin/bans", ann, {"target": "boss"}))[0] == 403
    status, html, _ = await get(server, boss)
    assert status == 200 and "<h2>Bots</h2>" in html


async def test_an_admin_makes_and_revokes_a_bot_from_the_page(start_server) -> None:
    server: Server = await start_server()
    boss, _ = await admin_and_ann(server)
    status, html = await post(server, "/admin/bots", boss, {"name": "ci-bot"})
    assert status == 200 and "made the bot @ci-bot" in html
    (token,) = re.findall(r'id="bot-token" type="text" readonly value="([^"]+)"', html)
    assert (await webhook(server, "builds", {"text": "hi"}, token))[0] == 201
    status, html = await post(server, "/admin/bots", boss, {"name": "CI-BOT"})
    assert status == 400 and "is taken" in html
    status, html = await post(server, "/admin/bots/ci-bot/revoke", boss, {})
    assert status == 200 and "revoked 1 token(s) of @ci-bot" in html
    assert (await webhook(server, "builds", {"text": "hi"}, token))[0] == 401
    assert (await post(server, "/admin/bots/ann/revoke", boss, {}))[0] == 400  # not a bot
    _, html, _ = await get(server, boss)
    assert "@boss · revoke bot ci-bot" in html and "@boss · add bot ci-bot" in html


async def test_an_admin_bans_and_lifts_from_the_page(start_server, make_client) -> None:
    server: Server = await start_server("--trust-proxy")
    boss, ann = await admin_and_ann(server)
    client = make_client(headers=cookie(ann))
    await client.connect(server.url, room="team")
    status, html = await post(
        server, "/admin/bans", boss, {"target": "@ann", "minutes": "", "reason": "spam"}
    )
    assert status == 200 and "banned ann" in html and "@ann · until lifted · spam" in html
    await client.wait_for("disconnect")
    assert (await me(server, ann))[0] == 401
    assert (await post_sign_in(server, "ann", "ann's password"))[0] == 403
    status, html = await post(
        server, "/admin/bans", boss, {"target": "203.0.113.5", "minutes": "30", "reason": ""}
    )
    assert status == 200 and "203.0.113.5 · until " in html
    for data, error in [
        ({"target": "nobody"}, "no account with the handle"),
        ({"target": "ann", "minutes": "soon"}, "minutes must be a number"),
    ]:
        status, html = await post(server, "/admin/bans", boss, data)
        assert status == 400 and error in html
    ids = re.findall(r'action="/admin/bans/([0-9a-f]+)/lift"', html)
    assert len(ids) == 2  # ann's and the address's
    for ban_id in ids:
        assert (await post(server, f"/admin/bans/{ban_id}/lift", boss, {}))[0] == 200
    assert (await post_sign_in(server, "ann", "ann's password"))[0] == 303
    assert (await post(server, f"/admin/bans/{ids[0]}/lift", boss, {}))[0] == 404


async def test_an_admin_makes_a_room_private_and_manages_its_members_from_the_page(
    start_server, make_client
) -> None:
    server: Server = await start_server()
    boss, ann = await admin_and_ann(server)
    status, html = await post(server, "/admin/private", boss, {"room": "#Plans", "members": "@ann"})
    assert status == 200 and "#plans is private" in html and "#plans · @ann, @boss" in html
    assert await make_client().connect_refused(server.url, room="plans") == NOT_A_MEMBER
    member = make_client(headers=cookie(ann))
    await member.connect(server.url, room="plans")

    data = {"room": "plans", "handle": "ann", "action": "remove"}
    status, html = await post(server, "/admin/members", boss, data)
    assert status == 200 and "removed @ann from #plans" in html and "#plans · @boss<" in html
    await member.wait_for("disconnect")
    status, html = await post(server, "/admin/members", boss, {**data, "action": "add"})
    assert status == 200 and "#plans · @ann, @boss" in html
    for path, data, error in [
        ("/admin/members", {"room": "plans", "handle": "nobody"}, "no account with the handle"),
        ("/admin/members", {"room": "open", "handle": "ann"}, "#open is not private"),
        ("/admin/private", {"room": "no room!"}, "invalid room name"),
    ]:
        status, html = await post(server, path, boss, data)
        assert status == 400 and error in html, (path, data)

    status, html = await post(server, "/admin/private/plans/public", boss, {})
    assert status == 200 and "#plans is open to everyone" in html
    await make_client().connect(server.url, room="plans")
    assert (await post(server, "/admin/private/plans/public", boss, {}))[0] == 404
    assert (await post(server, "/admin/private", ann, {"room": "mine"}))[0] == 403
    _, html, _ = await get(server, boss)
    assert "@boss · private plans" in html and "@boss · public plans" in html


async def test_an_admin_sets_a_rooms_retention_from_the_page(start_server) -> None:
    server: Server = await start_server("--retention-days", "30")
    boss, ann = await admin_and_ann(server)
    _, html, _ = await get(server, boss)
    assert "The server keeps 30 days" in html
    status, html = await post(server, "/admin/retention", boss, {"room": "logs", "days": "7"})
    assert status == 200 and "#logs keeps 7 days" in html and "#logs · 7 days" in html
    status, html = await post(server, "/admin/retention", boss, {"room": "all", "days": "0"})
    assert status == 200 and "#all · all history" in html
    for days in ("-1", "soon", "40000"):
        status, html = await post(server, "/admin/retention", boss, {"room": "logs", "days": days})
        assert status == 400 and "days must be 0 (keep all)" in html
    status, html = await post(server, "/admin/retention", boss, {"room": "logs", "days": ""})
    assert status == 200 and "#logs keeps the server&#39;s retention" in html
    assert "#logs ·" not in html
    assert (await post(server, "/admin/retention", ann, {"room": "logs", "days": "1"}))[0] == 403
    _, html, _ = await get(server, boss)
    assert "@boss · retention logs (7 days)" in html
