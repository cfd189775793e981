"""The HTTP side: pages, the JSON API and the health check."""

from __future__ import annotations

import aiohttp

from chatapp.store.sqlite import SQLiteStore

from .support import Server


async def get(url: str, **kw) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session, session.get(url, **kw) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def get_json(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def test_lobby_and_room_pages_render(server: Server) -> None:
    status, body, headers = await get(server.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'data-room="lobby"' in body
    status, body, _ = await get(server.url + "/r/team-7")
    assert status == 200 and 'data-room="team-7"' in body


async def test_uppercase_room_redirects_to_its_lowercase_url(server: Server) -> None:
    status, body, _ = await get(server.url + "/r/Team")
    assert status == 200 and 'data-room="team"' in body
    status, _, headers = await get(server.url + "/r/Team", allow_redirects=False)
    assert status == 302 and headers["Location"] == "/r/team"


async def test_invalid_room_is_a_404_page(server: Server) -> None:
    for path in ("/r/-x", "/r/" + "a" * 65, "/r/a%20b", "/r/%3Cscript%3E"):
        status, body, headers = await get(server.url + path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("text/html")
        assert "invalid room name" in body
        assert "<script>" not in body


async def test_api_rooms_lists_rooms_with_history_or_people(server: Server, make_client) -> None:
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


async def test_api_rooms_comes_in_pages_busiest_first(start_server, make_client, tmp_path) -> None:
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


async def test_api_messages_pages_like_history(server: Server, make_client) -> None:
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


async def test_client_library_is_served_from_our_origin(server: Server) -> None:
    status, body, headers = await get(server.url + "/static/vendor/socket.io.esm.min.js")
    assert status == 200 and "javascript" in headers["Content-Type"]
    assert "export" in body
    status, _, _ = await get(server.url + "/static/vendor/../../pyproject.toml")
    assert status == 404
