"""``python -m chatapp export`` and ``import``: a server's history out as JSON Lines and
back into another database, every message with its id and time; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatapp.store import open_store


def chatapp(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "chatapp", *args],
        input=stdin,
        capture_output=True,
        env=dict(os.environ),
        timeout=60,
    )


async def fill(db: str) -> None:
    store = open_store(db)
    await store.open()
    try:
        await store.add("lobby", "Ann", "hello 👋", "c-1", "g:ann")
        await store.add("lobby", "Ann A", "  indented\n  code", None, "u:ann", "ann", False)
        await store.add("builds", "CI", "<b>passed</b>", None, "u:ci", "ci", True)
    finally:
        await store.close()


async def history(db: str) -> dict[str, list[dict]]:
    store = open_store(db)
    await store.open()
    try:
        return {
            room: [m.to_dict() for m in (await store.recent(room, 100)).messages]
            for room in ("lobby", "builds")
        }
    finally:
        await store.close()


async def test_export_then_import_gives_the_same_history(db: str, tmp_path: Path) -> None:
    await fill(db)
    out = tmp_path / "history.jsonl"
    exported = chatapp("export", "--db", db, str(out))
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == b"exported 3 messages of 2 rooms\n"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(m["room"], m["id"], m["handle"], m["bot"]) for m in lines] == [
        ("builds", 1, "ci", True),
        ("lobby", 1, None, False),
        ("lobby", 2, "ann", False),
    ]
    target = str(tmp_path / "other.db")
    imported = chatapp("import", "--db", target, str(out))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == b"#builds: 1 messages\n#lobby: 2 messages\n"
    assert await history(target) == await history(db)
    # A room's new messages carry on after the imported ids.
    store = open_store(target)
    await store.open()
    try:
        assert (await store.add("lobby", "Bo", "after the move"))[0].id == 3
    finally:
        await store.close()
    # One room only, to standard output.
    only = chatapp("export", "--db", db, "--room", "builds")
    assert [json.loads(line)["room"] for line in only.stdout.splitlines()] == ["builds"]


async def test_import_refuses_rooms_with_history_and_bad_lines_and_changes_nothing(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "chat.db")
    await fill(db)
    before = await history(db)
    good = {"room": "new", "id": 1, "name": "Bo", "text": "hi", "ts": 1, "user_id": None}
    cases = [
        ([{**good, "room": "lobby"}], "rooms with history already: lobby"),
        ([good, {**good, "id": 3}], "#new: ids must count 1, 2, 3"),
        ([{**good, "text": ""}], "line 1: text must be 1-2000 characters"),
        ([{**good, "name": "\u202eevil"}], "line 1: invalid name"),
        ([{**good, "room": "No Such"}], "line 1: invalid room name"),
        ([["not", "an", "object"]], "line 1: not a JSON object"),
    ]
    for rows, error in cases:
        data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
        result = chatapp("import", "--db", db, "-", stdin=data)
        assert result.returncode == 1 and error in result.stderr.decode(), result.stderr
    result = chatapp("import", "--db", db, "-", stdin=b"{not json\n")
    assert result.returncode == 1 and b"line 1:" in result.stderr
    assert await history(db) == before


def test_export_never_overwrites(tmp_path: Path) -> None:
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me")
    result = chatapp("export", "--db", str(tmp_path / "chat.db"), str(taken))
    assert result.returncode == 1 and b"exists already" in result.stderr
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize("room", ["Bad Room", "x" * 65])
def test_export_of_an_invalid_room_says_why(tmp_path: Path, room: str) -> None:
    out = tmp_path / "out.jsonl"
    result = chatapp("export", "--db", str(tmp_path / "chat.db"), "--room", room, str(out))
    assert result.returncode == 1 and b"invalid room name" in result.stderr
    assert not out.exists()
