"""``python -m chatapp backup PATH``: a consistent copy of a SQLite database, taken while the
server runs and writes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from chatapp.store.sqlite import SCHEMA_VERSION

from .support import Server


def backup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatapp", "backup", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_backup_taken_while_messages_arrive_is_consistent(
    server: Server, make_client, tmp_path: Path
) -> None:
    writer = make_client()
    await writer.connect(server.url, room="team", name="ann")
    for i in range(20):
        assert (await writer.send(f"before {i}"))["ok"]

    async def keep_writing() -> int:
        sent = 0
        while not done.is_set():
            assert (await writer.send(f"during {sent}"))["ok"]
            sent += 1
        return sent

    done = asyncio.Event()
    writing = asyncio.ensure_future(keep_writing())
    target = tmp_path / "copy.db"
    result = await asyncio.to_thread(backup, "--db", server.db, str(target))
    done.set()
    await writing
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(target) as copy:
        ids = [
            row[0] for row in copy.execute("SELECT id FROM messages WHERE room='team' ORDER BY id")
        ]
        (last,) = copy.execute("SELECT last_id FROM rooms WHERE room='team'").fetchone()
        (version,) = copy.execute("PRAGMA user_version").fetchone()
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # Every message up to one moment, none after: no gap, and the room's counter agrees.
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 20 and last == ids[-1]
    assert version == SCHEMA_VERSION
    assert result.stdout == f"{target}: {len(ids)} messages, schema version {SCHEMA_VERSION}\n"


def test_a_backup_never_overwrites_and_says_why_it_cannot(tmp_path: Path, pg_url: str) -> None:
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    missing = str(tmp_path / "missing.db")
    for args, error in [
        (("--db", missing, str(tmp_path / "x.db")), f"there is no SQLite database at {missing!r}"),
        (("--db", pg_url, str(tmp_path / "x.db")), "for PostgreSQL use pg_dump"),
    ]:
        result = backup(*args)
        assert result.returncode == 2 and error in result.stderr, result.stderr
    db = tmp_path / "chat.db"
    sqlite3.connect(db).close()
    result = backup("--db", str(db), str(taken))
    assert result.returncode == 2 and "exists already" in result.stderr
    assert taken.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.db", "taken.db"]
