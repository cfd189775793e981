"""History: the welcome, paging with `history`, catch-up with `since`, surviving restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp

from chatapp.store.sqlite import SQLiteStore

from .support import Client, Server


async def fill(db: str, room: str, count: int) -> None:
    """Write ``count`` messages m1..mN into a SQLite history file before the server starts."""
    store = SQLiteStore(db)
    await store.open()
    try:
        for n in range(1, count + 1):
            await store.add(room, "filler", f"m{n}")
    finally:
        await store.close()


def texts(messages: list[dict]) -> list[str]:
    return [m["text"] for m in messages]


async def test_welcome_carries_the_last_50(start_server, make_client, tmp_path) -> None:
    await fill(str(tmp_path / "chat.db"), "big", 60)
    server = await start_server()
    welcome = await make_client().connect(server.url, room="big")
    assert texts(welcome["history"]) == [f"m{n}" for n in range(11, 61)]
    assert welcome["has_more"] is True
    small = await make_client().connect(server.url, room="empty")
    assert small["history"] == [] and small["has_more"] is False


async def test_history_pages_backwards(start_server, make_client, tmp_path) -> None:
    await fill(str(tmp_path / "chat.db"), "pages", 120)
    server = await start_server()
    client = make_client()
    welcome = await client.connect(server.url, room="pages")
    first = welcome["history"][0]["id"]
    page = await client.call("history", {"before": first})
    assert page["ok"] is True
    assert texts(page["messages"]) == [f"m{n}" for n in range(21, 71)]
    assert page["has_more"] is True
    page = await client.call("history", {"before": page["messages"][0]["id"], "limit": 100})
    assert texts(page["messages"]) == [f"m{n}" for n in range(1, 21)]
    assert page["has_more"] is False
    newest = await client.call("history", {"limit": 3})
    assert texts(newest["messages"]) == ["m118", "m119", "m120"]
    assert newest["has_more"] is True


async def test_since_returns_exactly_the_missed_messages(start_server, make_client, tmp_path):
    await fill(str(tmp_path / "chat.db"), "since", 30)
    server = await start_server()
    welcome = await make_client().connect(server.url, room="since", since=25)
    assert texts(welcome["history"]) == ["m26", "m27", "m28", "m29", "m30"]
    assert welcome["has_more"] is False
    up_to_date = await make_client().connect(server.url, room="since", since=30)
    assert up_to_date["history"] == [] and up_to_date["has_more"] is False
    from_start = await make_client().connect(server.url, room="since", since=0)
    assert len(from_start["history"]) == 30 and from_start["has_more"] is False


async def test_since_is_capped_at_500(start_server, make_client, tmp_path) -> None:
    await fill(str(tmp_path / "chat.db"), "cap", 520)
    server = await start_server()
    client = make_client()
    welcome = await client.connect(server.url, room="cap", since=5)
    # The newest 500 of the 515 missed; has_more says older missed ones can be paged in.
    assert len(welcome["history"]) == 500
    assert welcome["history"][0]["text"] == "m21" and welcome["history"][-1]["text"] == "m520"
    assert welcome["has_more"] is True
    rest = await client.call("history", {"before": welcome["history"][0]["id"], "limit": 15})
    assert texts(rest["messages"]) == [f"m{n}" for n in range(6, 21)]


async def test_reconnect_with_since_while_others_keep_sending(server: Server, make_client) -> None:
    """No gap and no duplicate across reconnects, even with messages in flight."""
    sender = make_client()
    await sender.connect(server.url, room="live", name="sender")
    stop = asyncio.Event()
    sent: list[int] = []

    async def keep_sending() -> None:
        n = 0
        while not stop.is_set():
            ack = await sender.send(f"live {n}")
            sent.append(ack["message"]["id"])
            n += 1

    task = asyncio.create_task(keep_sending())
    seen: list[int] = []
    try:
        for _ in range(8):
            reader: Client = make_client()
            since = seen[-1] if seen else None
            welcome = await reader.connect(server.url, room="live", name="reader", since=since)
            seen.extend(m["id"] for m in welcome["history"] if since is not None)
            if since is None:
                seen.extend(m["id"] for m in welcome["history"])
            # Read some live messages, then drop the connection mid-stream.
            target = (sent[-1] if sent else 0) + 5
            await reader.wait_for("message", lambda m, t=target: m["id"] >= t)
            seen.extend(reader.message_ids())
            await reader.close()
    finally:
        stop.set()
        await task
    final = make_client()
    welcome = await final.connect(server.url, room="live", since=seen[-1])
    seen.extend(m["id"] for m in welcome["history"])
    assert seen == list(range(seen[0], sent[-1] + 1)), "every id once, in order"
    assert seen[0] == 1


async def test_history_survives_a_restart(start_server, make_client, tmp_path) -> None:
    server = await start_server()
    client = make_client()
    await client.connect(server.url, room="keep")
    acked = [(await client.send(f"kept {n}"))["message"] for n in range(5)]
    await client.close()
    assert await server.stop() == 0
    again = await start_server()
    welcome = await make_client().connect(again.url, room="keep")
    assert welcome["history"] == acked
    # New messages continue the ids.
    later = make_client()
    await later.connect(again.url, room="keep")
    assert (await later.send("after restart"))["message"]["id"] == acked[-1]["id"] + 1


async def test_catch_up_across_a_server_restart(start_server, make_client, tmp_path) -> None:
    server = await start_server()
    watcher = make_client()
    await watcher.connect(server.url, room="r", name="watcher")
    writer = make_client()
    await writer.connect(server.url, room="r", name="writer")
    await writer.send("before")
    await watcher.wait_for("message")
    last_seen = watcher.message_ids()[-1]
    for client in (watcher, writer):
        await client.close()
    await server.stop()
    again = await start_server()
    writer2 = make_client()
    await writer2.connect(again.url, room="r", name="writer")
    for n in range(3):
        await writer2.send(f"while away {n}")
    back = await make_client().connect(again.url, room="r", name="watcher", since=last_seen)
    assert texts(back["history"]) == ["while away 0", "while away 1", "while away 2"]
    with contextlib.suppress(Exception):
        await writer2.close()


# -- pages are bounded in bytes as well as in messages ---------------------------------------

#: The documented bound of a welcome's history, a history page and an API page.
MAX_PAGE_BYTES = 256 * 1024
BIG = "🐱" * 2000  # 2000 characters, 8000 bytes of UTF-8


def json_bytes(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


async def fill_big(db: str, room: str, count: int) -> None:
    store = SQLiteStore(db)
    await store.open()
    try:
        for n in range(1, count + 1):
            await store.add(room, "filler", f"{n} {BIG}"[:2000])
    finally:
        await store.close()


async def test_every_page_of_big_messages_stays_within_its_byte_bound(
    start_server, make_client, tmp_path
) -> None:
    await fill_big(str(tmp_path / "chat.db"), "big", 120)
    server = await start_server()
    client = make_client()
    welcome = await client.connect(server.url, room="big")
    history = welcome["history"]
    # 50 such messages would be ~400 KB: the welcome carries the newest that fit.
    assert 10 < len(history) < 50 and json_bytes(history) <= MAX_PAGE_BYTES
    assert [m["id"] for m in history] == list(range(121 - len(history), 121))
    assert welcome["has_more"] is True
    seen = [m["id"] for m in history]
    before = history[0]["id"]
    while True:
        page = await client.call("history", {"before": before, "limit": 100})
        assert page["ok"] is True and json_bytes(page["messages"]) <= MAX_PAGE_BYTES
        assert len(page["messages"]) < 100
        seen = [m["id"] for m in page["messages"]] + seen
        if not page["has_more"]:
            break
        before = page["messages"][0]["id"]
    assert seen == list(range(1, 121))
    # A catch-up after missing everything is bounded too, and says there is more.
    catch_up = await make_client().connect(server.url, room="big", since=0)
    assert json_bytes(catch_up["history"]) <= MAX_PAGE_BYTES and catch_up["has_more"] is True
    assert catch_up["history"][-1]["id"] == 120


async def test_the_api_pages_big_messages_within_the_byte_bound(start_server, tmp_path) -> None:
    await fill_big(str(tmp_path / "chat.db"), "big", 120)
    server = await start_server()
    seen: list[int] = []
    query = "limit=100"
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{server.url}/api/rooms/big/messages?{query}") as r:
                assert r.status == 200
                body = await r.read()
            # Characters travel as UTF-8, not as \\ud83d\\udc31 escapes (12 bytes per cat).
            assert len(body) <= MAX_PAGE_BYTES + 100 and "🐱".encode() in body
            page = json.loads(body)
            assert 0 < len(page["messages"]) < 100
            seen = [m["id"] for m in page["messages"]] + seen
            if not page["has_more"]:
                break
            query = f"limit=100&before={page['messages'][0]['id']}"
    assert seen == list(range(1, 121))
