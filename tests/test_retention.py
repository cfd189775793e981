"""Retention: history older than the server's (or a room's own) retention is deleted from
the database, and so from every API and catch-up; ids are never reused."""

from __future__ import annotations

import pytest

from chatapp.store import Message, open_store
from chatapp.store.base import now_ms

from .support import Server
from .test_cli import run_cli
from .test_moderation import admin_and_ann, api
from .test_sign_in import sign_in

DAY = 86_400_000


async def seed(db: str, room: str, ages_in_days: list[float]) -> None:
    """Put back a room's history with messages of these ages (oldest first)."""
    now = now_ms()
    store = open_store(db)
    await store.open()
    try:
        messages = [
            Message(i, room, "Ann", f"{age} days old", now - int(age * DAY), "g:ann")
            for i, age in enumerate(ages_in_days, 1)
        ]
        await store.restore(room, messages)
    finally:
        await store.close()


async def test_expire_deletes_a_rooms_old_messages_and_keeps_its_ids(db: str) -> None:
    await seed(db, "team", [90, 40, 10, 1])
    store = open_store(db)
    await store.open()
    try:
        assert await store.expire("team", now_ms() - 30 * DAY) == 2
        page = await store.recent("team", 10)
        assert [m.id for m in page.messages] == [3, 4] and not page.has_more
        assert await store.last_id("team") == 4
        assert (await store.add("team", "Bo", "new"))[0].id == 5  # never id 1 again
        assert [m.id for m in (await store.recent("team", 10, after=1)).messages] == [3, 4, 5]
    finally:
        await store.close()


async def test_the_server_deletes_expired_history_at_start(
    start_server, tmp_path, make_client
) -> None:
    db = str(tmp_path / "chat.db")
    await seed(db, "team", [400, 200, 20, 2])
    await seed(db, "archive", [400, 1])
    server: Server = await start_server("--db", db, "--retention-days", "30")
    client = make_client()
    welcome = await client.connect(server.url, room="team", name="Bo", since=0)
    assert [m["text"] for m in welcome["history"]] == ["20 days old", "2 days old"]
    _, body = await api(server, "GET", "/api/rooms/archive/messages", None)
    assert [m["text"] for m in body["messages"]] == ["1 days old"]
    assert "retention: deleted 3 expired messages" in server.log()


async def test_an_admin_gives_a_room_its_own_retention(start_server, tmp_path) -> None:
    db = str(tmp_path / "chat.db")
    await seed(db, "keep", [200, 1])
    await seed(db, "other", [200, 1])
    await seed(db, "short", [5, 0.5])
    server: Server = await start_server("--db", db, "--retention-days", "365")
    boss, ann = await admin_and_ann(server)
    assert (await api(server, "PUT", "/api/rooms/keep/retention", ann, {"days": 0}))[0] == 403
    assert await api(server, "PUT", "/api/rooms/keep/retention", boss, {"days": -1}) == (
        400,
        {"error": "send {days}: 0 (keep all) to 36500, or null (the server's)"},
    )
    assert (await api(server, "PUT", "/api/rooms/keep/retention", boss, {"days": 0}))[0] == 200
    assert (await api(server, "PUT", "/api/rooms/short/retention", boss, {"days": 1}))[0] == 200

    async def texts(room: str) -> list[str]:
        body = (await api(server, "GET", f"/api/rooms/{room}/messages", None))[1]
        return [m["text"] for m in body["messages"]]

    assert await texts("short") == ["0.5 days old"]  # applied at once
    # A shorter retention for the server: the room that keeps all keeps all.
    await server.stop()
    server.args = ["--db", db, "--retention-days", "100"]
    await server.start()
    assert await texts("other") == ["1 days old"]
    assert await texts("keep") == ["200 days old", "1 days old"]
    # Back to the server's: applied at once.
    boss = await admin_sign_in(server)
    assert (await api(server, "PUT", "/api/rooms/keep/retention", boss, {"days": None}))[0] == 200
    assert await texts("keep") == ["1 days old"]
    log = (await api(server, "GET", "/api/modlog", boss))[1]
    assert [(e["action"], e["target"], e["detail"]) for e in reversed(log)] == [
        ("retention", "keep", "0 days"),
        ("retention", "short", "1 days"),
        ("retention", "keep", "the server's"),
    ]


async def admin_sign_in(server: Server) -> str:
    return await sign_in(server, "boss", "boss's password")


@pytest.mark.parametrize("value", ["-1", "36501", "forever"])
def test_a_bad_retention_is_a_usage_error(value: str) -> None:
    result = run_cli("--retention-days", value)
    assert result.returncode == 2 and "--retention-days" in result.stderr
