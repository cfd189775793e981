"""History in one SQLite file (WAL mode), the single-box default."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .base import Message, Page, StoreError, now_ms

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room      TEXT    NOT NULL,
    id        INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    text      TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    client_id TEXT,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id
    ON messages (room, name, client_id) WHERE client_id IS NOT NULL;
"""
_COLUMNS = "id, room, name, text, ts"


def _row(row: tuple[Any, ...]) -> Message:
    return Message(id=row[0], room=row[1], name=row[2], text=row[3], ts=row[4])


class SQLiteStore:
    """A MessageStore on one SQLite connection owned by one worker thread.

    One thread serialises every statement, which gives consecutive per-room ids without
    locking and keeps the event loop free of disk I/O. Closing waits for queued writes.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatapp-sqlite")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError("the SQLite store is not open")
        # shield: a cancelled handler must not leave a half-seen write; the thread finishes it.
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)
        return await asyncio.shield(future)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"could not enable WAL (got {mode})")
                # NORMAL in WAL mode survives a process crash; only an OS crash can lose the
                # last commits, which is the documented trade-off for write speed.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=5000")
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        log.info("history in SQLite file %s", self.path)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def add(
        self, room: str, name: str, text: str, client_id: str | None = None
    ) -> tuple[Message, bool]:
        def add(conn: sqlite3.Connection) -> tuple[Message, bool]:
            # The retry check is inside the write lock: another process on the same file
            # may be committing the same client_id right now.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if client_id is not None:
                    row = conn.execute(
                        f"SELECT {_COLUMNS} FROM messages WHERE room=? AND name=? AND client_id=?",
                        (room, name, client_id),
                    ).fetchone()
                    if row is not None:
                        conn.execute("COMMIT")
                        return _row(row), False
                (last,) = conn.execute(
                    "SELECT COALESCE(MAX(id), 0) FROM messages WHERE room=?", (room,)
                ).fetchone()
                msg = Message(id=last + 1, room=room, name=name, text=text, ts=now_ms())
                conn.execute(
                    "INSERT INTO messages (room, id, name, text, ts, client_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (room, msg.id, name, text, msg.ts, client_id),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return msg, True

        return await self._run(add)

    async def recent(self, room: str, limit: int, after: int | None = None) -> Page:
        def recent(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id>? ORDER BY id DESC LIMIT ?",
                (room, after or 0, limit + 1),
            ).fetchall()
            return Page([_row(r) for r in reversed(rows[:limit])], len(rows) > limit)

        return await self._run(recent)

    async def before(self, room: str, before: int | None, limit: int) -> Page:
        def page(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id<? ORDER BY id DESC LIMIT ?",
                (room, before if before is not None else 2**62, limit + 1),
            ).fetchall()
            return Page([_row(r) for r in reversed(rows[:limit])], len(rows) > limit)

        return await self._run(page)

    async def range(self, room: str, after: int, upto: int) -> list[Message]:
        def between(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id>? AND id<=? ORDER BY id",
                (room, after, upto),
            ).fetchall()
            return [_row(r) for r in rows]

        return await self._run(between)

    async def last_id(self, room: str) -> int:
        def last(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT MAX(id) FROM messages WHERE room=?", (room,)).fetchone()
            return int(row[0] or 0)

        return await self._run(last)

    async def rooms(self) -> dict[str, int]:
        def rooms(conn: sqlite3.Connection) -> dict[str, int]:
            # The newest row per room is found through the (room, id) primary key.
            rows = conn.execute(
                "SELECT m.room, m.ts FROM messages m "
                "JOIN (SELECT room, MAX(id) AS id FROM messages GROUP BY room) last "
                "ON m.room = last.room AND m.id = last.id"
            ).fetchall()
            return {room: ts for room, ts in rows}

        return await self._run(rooms)
