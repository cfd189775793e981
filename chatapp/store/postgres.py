"""History in PostgreSQL (asyncpg), shared by several chatapp processes.

Ids must count 1, 2, 3... per room and commit in id order even with writers in several
processes (the room feed relies on it to find gaps). Each room has a counter row in
``rooms``; one statement increments it and inserts the message, so the counter's row lock
serialises a room's writers until commit, and a failed insert also rolls the counter back.

The schema lives in the first schema of the connection's ``search_path`` (pick one with
``?options=-csearch_path%3Dname`` in the URL; it is created if missing) and is created or
migrated at start under an advisory lock, so processes starting together do not race.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from ..search import RANKED, Query
from ..settings import redacted
from . import reactions
from .base import (
    Account,
    Attachment,
    Ban,
    Edit,
    HandleTaken,
    Invite,
    InviteInvalid,
    LogEntry,
    Message,
    Page,
    Room,
    RoomState,
    RoomView,
    SignIn,
    StoreError,
    now_ms,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
#: Connections per process: handlers await one query at a time, so a few suffice.
POOL_MAX = 10
#: Seconds a query or a wait for a pooled connection may take before it fails.
QUERY_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE rooms (
    room    TEXT   PRIMARY KEY,
    last_id BIGINT NOT NULL
);
CREATE TABLE messages (
    room      TEXT   NOT NULL,
    id        BIGINT NOT NULL,
    name      TEXT   NOT NULL,
    text      TEXT   NOT NULL,
    ts        BIGINT NOT NULL,
    client_id TEXT,
    PRIMARY KEY (room, id)
);
CREATE UNIQUE INDEX messages_client_id
    ON messages (room, name, client_id) WHERE client_id IS NOT NULL;
""",
    # Who sent each message, and retries recognised by sender id (a retry after a rename is
    # still the same message); when each room's newest message was stored, indexed, so that
    # the room list costs an index walk instead of a scan of history. (A process of the
    # previous release still inserts: its rooms get last_ts 0 until their next message.)
    2: """
ALTER TABLE messages ADD COLUMN user_id TEXT;
DROP INDEX messages_client_id;
CREATE UNIQUE INDEX messages_client_id
    ON messages (room, name, client_id) WHERE client_id IS NOT NULL AND user_id IS NULL;
CREATE UNIQUE INDEX messages_retry
    ON messages (room, user_id, client_id) WHERE client_id IS NOT NULL AND user_id IS NOT NULL;
ALTER TABLE rooms ADD COLUMN last_ts BIGINT NOT NULL DEFAULT 0;
UPDATE rooms r SET last_ts = m.ts FROM messages m WHERE m.room = r.room AND m.id = r.last_id;
CREATE INDEX rooms_recent ON rooms (last_ts DESC, room);
""",
    # Accounts, and the keys their handles are known by: a key (a handle case-folded, or
    # its confusable skeleton) belongs to one account, so nobody registers a look-alike.
    3: """
CREATE TABLE accounts (
    id           TEXT   PRIMARY KEY,
    handle       TEXT   NOT NULL,
    display_name TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    password     TEXT,
    created      BIGINT NOT NULL
);
CREATE TABLE handle_keys (
    key        TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE
);
CREATE INDEX handle_keys_account ON handle_keys (account_id);
CREATE TABLE sessions (
    token_hash TEXT   PRIMARY KEY,
    id         TEXT   NOT NULL UNIQUE,
    account_id TEXT   NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created    BIGINT NOT NULL,
    expires    BIGINT NOT NULL,
    address    TEXT   NOT NULL,
    agent      TEXT   NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);
ALTER TABLE messages ADD COLUMN handle TEXT, ADD COLUMN bot BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE invites (
    token_hash TEXT    PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL,
    claim      BOOLEAN NOT NULL,
    created    BIGINT  NOT NULL,
    expires    BIGINT  NOT NULL,
    created_by TEXT,
    used_by    TEXT
);
CREATE TABLE bans (
    id         TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    until      BIGINT NOT NULL,
    reason     TEXT   NOT NULL,
    created    BIGINT NOT NULL,
    created_by TEXT   NOT NULL
);
CREATE TABLE private_rooms (
    room TEXT PRIMARY KEY
);
CREATE TABLE room_members (
    room       TEXT NOT NULL,
    account_id TEXT NOT NULL,
    PRIMARY KEY (room, account_id)
);
CREATE TABLE room_retention (
    room TEXT             PRIMARY KEY,
    days DOUBLE PRECISION NOT NULL
);
CREATE TABLE mod_log (
    seq    BIGSERIAL PRIMARY KEY,
    ts     BIGINT NOT NULL,
    actor  TEXT   NOT NULL,
    action TEXT   NOT NULL,
    target TEXT   NOT NULL,
    detail TEXT   NOT NULL
);
""",
    # Changes to sent messages: each takes the room's next change number (rev), which the
    # message keeps, so a client catches up on changes by number, as on messages by id.
    4: """
ALTER TABLE messages ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX messages_changes ON messages (room, rev) WHERE rev > 0;
ALTER TABLE rooms ADD COLUMN last_rev BIGINT NOT NULL DEFAULT 0;
-- Mentions as resolved when a message was stored: on the message (its account ids,
-- space-separated; "room" or "here"), and a row per mentioned account, for counts.
ALTER TABLE messages ADD COLUMN mentions TEXT;
ALTER TABLE messages ADD COLUMN mention_all TEXT;
CREATE INDEX messages_mention_all ON messages (room, id) WHERE mention_all IS NOT NULL;
CREATE TABLE mentions (
    account_id TEXT   NOT NULL,
    room       TEXT   NOT NULL,
    id         BIGINT NOT NULL,
    PRIMARY KEY (account_id, room, id)
);
-- An account's rooms, and the newest message it read in each.
CREATE TABLE room_state (
    account_id TEXT   NOT NULL,
    room       TEXT   NOT NULL,
    last_read  BIGINT NOT NULL,
    PRIMARY KEY (account_id, room)
);
""",
    # Edits, reactions and replies. An edit keeps the text it replaced (for admins) until
    # the message is deleted; reactions live on the message, as JSON (store.reactions).
    5: """
ALTER TABLE messages ADD COLUMN edited BIGINT;
ALTER TABLE messages ADD COLUMN reactions TEXT;
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
-- Files: a message's attachment (as clients see it, and where its bytes are), and a row
-- per attached file, for its URL, its readers, upload quotas and the files directory's
-- clean-up. A deletion or expiry of the message removes the row.
ALTER TABLE messages ADD COLUMN attachment TEXT;
CREATE TABLE files (
    id       TEXT   PRIMARY KEY,
    room     TEXT   NOT NULL,
    msg_id   BIGINT NOT NULL,
    sha256   TEXT   NOT NULL,
    thumb    TEXT,
    size     BIGINT NOT NULL,
    uploader TEXT   NOT NULL,
    ts       BIGINT NOT NULL
);
CREATE INDEX files_message ON files (room, msg_id);
CREATE INDEX files_uploader ON files (uploader, ts);
CREATE INDEX files_sha256 ON files (sha256);
CREATE INDEX files_thumb ON files (thumb) WHERE thumb IS NOT NULL;
CREATE TABLE message_edits (
    room TEXT   NOT NULL,
    id   BIGINT NOT NULL,
    rev  BIGINT NOT NULL,
    ts   BIGINT NOT NULL,
    text TEXT   NOT NULL,
    PRIMARY KEY (room, id, rev)
);
-- Search: the words of each text and their places (to_tsvector with the simple
-- configuration: no stemming, no stop words, any language), kept with the row so that
-- ranking and phrases need not read them out of the text again, in a GIN index.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);
""",
}

_COLUMNS = (
    "id, room, name, text, ts, user_id, handle, bot, rev, deleted, mentions, mention_all, "
    "edited, reactions, reply_to, attachment"
)
_NEXT_ID = """
    INSERT INTO rooms (room, last_id, last_ts) VALUES ($1, 1, $4)
    ON CONFLICT (room) DO UPDATE SET last_id = rooms.last_id + 1, last_ts = EXCLUDED.last_ts
    RETURNING last_id
"""
_INSERT_MESSAGE = f"""
INSERT INTO messages
    (room, id, name, text, ts, client_id, user_id, handle, bot, reply_to, attachment, mentions,
    mention_all)
SELECT $1, last_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM counter
RETURNING {_COLUMNS}
"""
_ADD = f"WITH counter AS ({_NEXT_ID}) {_INSERT_MESSAGE}"
#: _ADD, and account $13 has read the room up to the new message (never back), in the same
#: statement: one round trip.
_ADD_AND_READ = f"""
WITH counter AS ({_NEXT_ID}), added AS ({_INSERT_MESSAGE}), marked AS (
    INSERT INTO room_state (account_id, room, last_read) SELECT $13, room, id FROM added
    ON CONFLICT (account_id, room) DO UPDATE
    SET last_read = GREATEST(room_state.last_read, EXCLUDED.last_read)
)
SELECT * FROM added
"""
_BY_CLIENT_ID = (
    f"SELECT {_COLUMNS} FROM messages "
    "WHERE room=$1 AND name=$2 AND client_id=$3 AND user_id IS NULL"
)
_BY_SENDER_CLIENT_ID = (
    f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND user_id=$2 AND client_id=$3"
)


_ACCOUNT_COLUMNS = "id, handle, display_name, role, created"
#: An account's rooms with their read state: the mentions of it after the read message,
#: and the messages to everyone (@room, @here) by others after it.
_ROOM_STATES = """
SELECT s.room, s.last_read, COALESCE(r.last_id, 0),
    (SELECT COUNT(*) FROM mentions m
        WHERE m.account_id = s.account_id AND m.room = s.room AND m.id > s.last_read)
    + (SELECT COUNT(*) FROM messages g
        WHERE g.room = s.room AND g.mention_all IS NOT NULL AND g.id > s.last_read
        AND g.user_id IS DISTINCT FROM s.account_id)
FROM room_state s LEFT JOIN rooms r ON r.room = s.room
WHERE s.account_id = $1 ORDER BY s.room
"""
_SIGN_IN_COLUMNS = "id, account_id, created, expires, address, agent"
_INVITE_COLUMNS = "id, role, claim, created, expires, created_by"
_USABLE_INVITE = f"""
SELECT {_INVITE_COLUMNS} FROM invites
WHERE token_hash=$1 AND used_by IS NULL AND expires>$2
  AND NOT (claim AND EXISTS (SELECT 1 FROM accounts WHERE role='admin'))
"""


def _account(row: asyncpg.Record) -> Account:
    return Account(id=row[0], handle=row[1], display_name=row[2], role=row[3], created=row[4])


def _sign_in(row: asyncpg.Record) -> SignIn:
    return SignIn(*tuple(row)[:6])


async def _insert_file(
    conn: asyncpg.Connection, room: str, msg_id: int, ts: int, file: Attachment
) -> None:
    await conn.execute(
        "INSERT INTO files (id, room, msg_id, sha256, thumb, size, uploader, ts) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        file.id,
        room,
        msg_id,
        file.sha256,
        file.thumb,
        file.size,
        file.uploader,
        ts,
    )


async def _locked(conn: asyncpg.Connection, room: str, msg_id: int) -> Message | None:
    """A message, its row locked until the transaction ends: the message's row first, then
    the room's counter (:func:`_next_rev`), as every change takes them."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND id=$2 FOR UPDATE", room, msg_id
    )
    return None if row is None else _message(row)


async def _next_rev(conn: asyncpg.Connection, room: str) -> int:
    """Take the room's next change number (in the caller's transaction)."""
    return int(
        await conn.fetchval(
            "UPDATE rooms SET last_rev = last_rev + 1 WHERE room=$1 RETURNING last_rev", room
        )
    )


def _message(row: asyncpg.Record) -> Message:
    return Message(
        id=row[0],
        room=row[1],
        name=row[2],
        text=row[3],
        ts=row[4],
        user_id=row[5],
        handle=row[6],
        bot=row[7],
        rev=row[8],
        deleted=row[9],
        mentions=tuple(row[10].split()) if row[10] else (),
        mention_all=row[11],
        edited=row[12],
        reactions=reactions.decode(row[13]),
        reply_to=row[14],
        attachment=Attachment.decode(row[15]),
    )


class PostgresStore:
    """A MessageStore on an asyncpg connection pool."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    async def open(self) -> None:
        where = redacted(self.dsn)
        try:
            pool = asyncpg.create_pool(
                self.dsn,
                # No floor to maintain: asyncpg would log a traceback each time it fails to
                # restore one while the database is unreachable.
                min_size=0,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT,
                command_timeout=QUERY_TIMEOUT,
            )
            self._pool = await pool
            conn = await self._pool.acquire()
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            await self.close()
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {exc}") from exc
        except (asyncpg.InterfaceError, ValueError) as exc:
            await self.close()
            raise StoreError(f"invalid PostgreSQL URL {where}: {exc}") from exc
        try:
            schema, _ = await _migrate(conn)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            await self.close()
            raise StoreError(f"cannot set up the schema in PostgreSQL at {where}: {exc}") from exc
        except StoreError:
            await self.close()
            raise
        finally:
            if self._pool is not None:
                await self._pool.release(conn)
        log.info("history in PostgreSQL %s, schema %s (version %d)", where, schema, SCHEMA_VERSION)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # Lets in-flight queries finish; a stuck one is cut off after the timeout.
            await asyncio.wait_for(pool.close(), QUERY_TIMEOUT)
        except TimeoutError:
            pool.terminate()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1", timeout=5)

    async def add(
        self,
        room: str,
        name: str,
        text: str,
        client_id: str | None = None,
        user_id: str | None = None,
        handle: str | None = None,
        bot: bool = False,
        mentions: tuple[str, ...] = (),
        mention_all: str | None = None,
        reply_to: int | None = None,
        attachment: Attachment | None = None,
        read_by: str | None = None,
    ) -> tuple[Message, bool]:
        # shield: once sent, a write is seen through even if the handler is cancelled, so a
        # client retry with the same client_id finds it instead of a half-known state.
        sender = (user_id, handle, bot)
        return await asyncio.shield(
            self._add(
                room,
                name,
                text,
                client_id,
                sender,
                mentions,
                mention_all,
                reply_to,
                attachment,
                read_by,
            )
        )

    async def _add(
        self,
        room: str,
        name: str,
        text: str,
        client_id: str | None,
        sender: tuple[str | None, str | None, bool],
        mentions: tuple[str, ...],
        mention_all: str | None,
        reply_to: int | None,
        attachment: Attachment | None,
        read_by: str | None,
    ) -> tuple[Message, bool]:
        user_id, handle, bot = sender
        pool = self.pool
        retry = (
            (_BY_SENDER_CLIENT_ID, room, user_id, client_id)
            if user_id is not None
            else (_BY_CLIENT_ID, room, name, client_id)
        )
        if client_id is not None:
            row = await pool.fetchrow(*retry)
            if row is not None:
                return _message(row), False
        encoded = attachment.encode() if attachment is not None else None
        args = (room, name, text, now_ms(), client_id, user_id, handle, bot, reply_to, encoded)
        others = [a for a in mentions if a != user_id]
        try:
            add, more = (_ADD, ()) if read_by is None else (_ADD_AND_READ, (read_by,))
            if not others and attachment is None:
                row = await pool.fetchrow(
                    add, *args, " ".join(mentions) or None, mention_all, *more
                )
            else:
                async with pool.acquire() as conn, conn.transaction():
                    row = await conn.fetchrow(
                        add, *args, " ".join(mentions) or None, mention_all, *more
                    )
                    await conn.executemany(
                        "INSERT INTO mentions (account_id, room, id) VALUES ($1, $2, $3)",
                        [(a, room, row["id"]) for a in others],
                    )
                    if attachment is not None:
                        await _insert_file(conn, room, row["id"], row["ts"], attachment)
        except asyncpg.UniqueViolationError:
            # The same client_id committed meanwhile (a retry raced the original, maybe
            # through another process); the failed statement rolled the counter back.
            row = await pool.fetchrow(*retry)
            if row is None:
                raise
            return _message(row), False
        return _message(row), True

    async def recent(self, room: str, limit: int, after: int | None = None) -> Page:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND id>$2 ORDER BY id DESC LIMIT $3",
            room,
            after or 0,
            limit + 1,
        )
        return Page([_message(r) for r in reversed(rows[:limit])], len(rows) > limit)

    async def before(self, room: str, before: int | None, limit: int) -> Page:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND id<$2 ORDER BY id DESC LIMIT $3",
            room,
            before if before is not None else 2**62,
            limit + 1,
        )
        return Page([_message(r) for r in reversed(rows[:limit])], len(rows) > limit)

    async def range(self, room: str, after: int, upto: int) -> list[Message]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND id>$2 AND id<=$3 ORDER BY id",
            room,
            after,
            upto,
        )
        return [_message(r) for r in rows]

    async def last_id(self, room: str) -> int:
        last: Any = await self.pool.fetchval("SELECT last_id FROM rooms WHERE room=$1", room)
        return int(last or 0)

    async def view(self, room: str, limit: int, after: int | None = None) -> RoomView:
        async with self.pool.acquire() as conn:
            # The room's row first: a message stored after it is read shows in the page.
            row = await conn.fetchrow("SELECT last_rev, last_id FROM rooms WHERE room=$1", room)
            rev, last = (int(row[0]), int(row[1])) if row is not None else (0, 0)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND id>$2 "
                "ORDER BY id DESC LIMIT $3",
                room,
                after or 0,
                limit + 1,
            )
        page = Page([_message(r) for r in reversed(rows[:limit])], len(rows) > limit)
        return RoomView(rev, page, page.messages[-1].id if page.messages else last)

    async def active_rooms(self, limit: int, after: tuple[int, str] | None = None) -> list[Room]:
        if after is None:
            rows = await self.pool.fetch(
                "SELECT room, last_ts FROM rooms ORDER BY last_ts DESC, room LIMIT $1",
                limit,
            )
        else:
            rows = await self.pool.fetch(
                "SELECT room, last_ts FROM rooms WHERE last_ts <= $1 "
                "AND NOT (last_ts = $1 AND room <= $2) ORDER BY last_ts DESC, room LIMIT $3",
                after[0],
                after[1],
                limit,
            )
        return [Room(row[0], row[1]) for row in rows]

    async def last_message_times(self, rooms: Iterable[str]) -> dict[str, int]:
        wanted = list(rooms)
        if not wanted:
            return {}
        rows = await self.pool.fetch(
            "SELECT room, last_ts FROM rooms WHERE room = ANY($1::text[])",
            wanted,
        )
        return {row[0]: row[1] for row in rows}

    async def get(self, room: str, msg_id: int) -> Message | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND id=$2", room, msg_id
        )
        return _message(row) if row is not None else None

    async def delete(self, room: str, msg_id: int) -> tuple[Message, bool] | None:
        # shield: a deletion once sent is seen through, like an add.
        return await asyncio.shield(self._delete(room, msg_id))

    async def _delete(self, room: str, msg_id: int) -> tuple[Message, bool] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The message's row first, then the room's counter (as every change takes
            # them): a deletion racing another change of the message waits for it.
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND id=$2 FOR UPDATE",
                room,
                msg_id,
            )
            if row is None:
                return None
            if row["deleted"]:
                return _message(row), False
            await conn.execute("DELETE FROM mentions WHERE room=$1 AND id=$2", room, msg_id)
            await conn.execute("DELETE FROM message_edits WHERE room=$1 AND id=$2", room, msg_id)
            await conn.execute("DELETE FROM files WHERE room=$1 AND msg_id=$2", room, msg_id)
            row = await conn.fetchrow(
                f"""
                WITH counter AS (
                    UPDATE rooms SET last_rev = last_rev + 1 WHERE room=$1 RETURNING last_rev
                )
                UPDATE messages
                SET text='', deleted=TRUE, rev=counter.last_rev, mentions=NULL, mention_all=NULL,
                    reactions=NULL, attachment=NULL
                FROM counter WHERE room=$1 AND id=$2
                RETURNING {", ".join("messages." + c.strip() for c in _COLUMNS.split(","))}
                """,
                room,
                msg_id,
            )
            return _message(row), True

    async def edit(
        self,
        room: str,
        msg_id: int,
        text: str,
        mentions: tuple[str, ...] = (),
        mention_all: str | None = None,
    ) -> tuple[Message, bool] | None:
        return await asyncio.shield(self._edit(room, msg_id, text, mentions, mention_all))

    async def _edit(
        self, room: str, msg_id: int, text: str, mentions: tuple[str, ...], mention_all: str | None
    ) -> tuple[Message, bool] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            msg = await _locked(conn, room, msg_id)
            if msg is None or msg.deleted or msg.text == text:
                return None if msg is None else (msg, False)
            rev, ts = await _next_rev(conn, room), now_ms()
            await conn.execute(
                "INSERT INTO message_edits (room, id, rev, ts, text) VALUES ($1, $2, $3, $4, $5)",
                room,
                msg_id,
                rev,
                ts,
                msg.text,
            )
            await conn.execute(
                "UPDATE messages SET text=$3, rev=$4, edited=$5, mentions=$6, mention_all=$7 "
                "WHERE room=$1 AND id=$2",
                room,
                msg_id,
                text,
                rev,
                ts,
                " ".join(mentions) or None,
                mention_all,
            )
            await conn.execute("DELETE FROM mentions WHERE room=$1 AND id=$2", room, msg_id)
            await conn.executemany(
                "INSERT INTO mentions (account_id, room, id) VALUES ($1, $2, $3)",
                [(a, room, msg_id) for a in mentions if a != msg.user_id],
            )
        edited = replace(msg, text=text, rev=rev, edited=ts, mentions=mentions)
        return replace(edited, mention_all=mention_all), True

    async def edits(self, room: str, msg_id: int) -> list[Edit]:
        rows = await self.pool.fetch(
            "SELECT ts, text FROM message_edits WHERE room=$1 AND id=$2 ORDER BY rev",
            room,
            msg_id,
        )
        return [Edit(row[0], row[1]) for row in rows]

    async def react(
        self, room: str, msg_id: int, emoji: str, user_id: str, add: bool | None
    ) -> tuple[Message, bool] | None:
        return await asyncio.shield(self._react(room, msg_id, emoji, user_id, add))

    async def _react(
        self, room: str, msg_id: int, emoji: str, user_id: str, add: bool | None
    ) -> tuple[Message, bool] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            msg = await _locked(conn, room, msg_id)
            if msg is None or msg.deleted:
                return None if msg is None else (msg, False)
            now = reactions.toggle(msg.reactions, emoji, user_id, add)
            if now is None:
                return msg, False
            rev = await _next_rev(conn, room)
            await conn.execute(
                "UPDATE messages SET reactions=$3, rev=$4 WHERE room=$1 AND id=$2",
                room,
                msg_id,
                reactions.encode(now),
                rev,
            )
        return replace(msg, reactions=now, rev=rev), True

    async def file(self, file_id: str) -> tuple[str, Attachment] | None:
        row = await self.pool.fetchrow(
            "SELECT m.room, m.attachment, f.uploader FROM files f "
            "JOIN messages m ON m.room = f.room AND m.id = f.msg_id WHERE f.id = $1",
            file_id,
        )
        found = Attachment.decode(row[1]) if row is not None else None
        return None if found is None else (row[0], replace(found, uploader=row[2]))

    async def uploaded(self, uploader: str, since: int) -> int:
        total: Any = await self.pool.fetchval(
            "SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader = $1 AND ts >= $2",
            uploader,
            since,
        )
        return int(total)

    async def referenced(self, digests: Sequence[str]) -> set[str]:
        rows = await self.pool.fetch(
            "SELECT sha256 FROM files WHERE sha256 = ANY($1::text[]) "
            "UNION SELECT thumb FROM files WHERE thumb = ANY($1::text[])",
            list(digests),
        )
        return {row[0] for row in rows}

    async def index(self) -> int:
        return 0  # PostgreSQL indexes each row as it is committed

    async def search(
        self, query: Query, account_id: str | None, limit: int, offset: int
    ) -> list[Message]:
        args: list[Any] = [account_id]
        matches = []
        if query.words:
            args.append(" ".join(query.words))
            matches.append(f"plainto_tsquery('simple', ${len(args)})")
        for phrase in query.phrases:
            args.append(" ".join(phrase))
            matches.append(f"phraseto_tsquery('simple', ${len(args)})")
        tsquery = " && ".join(matches)
        where = [
            f"search @@ ({tsquery})",
            "NOT deleted",
            "(room NOT IN (SELECT room FROM private_rooms) "
            "OR room IN (SELECT room FROM room_members WHERE account_id = $1))",
        ]
        if query.sender is not None:
            args.append(query.sender)
            where.append(
                f"(lower(handle) = lower(${len(args)}) OR lower(name) = lower(${len(args)}))"
            )
        for column, op, value in (
            ("room", "=", query.room),
            ("ts", ">=", query.after),
            ("ts", "<", query.before),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} {op} ${len(args)}")
        args += [limit, offset]
        # Unfiltered, only the newest matches are ranked (search.RANKED).
        newest = "" if query.filtered() else f"ORDER BY ts DESC LIMIT {RANKED}"
        rows = await self.pool.fetch(
            f"WITH hits AS (SELECT {_COLUMNS}, search FROM messages "
            f"WHERE {' AND '.join(where)} {newest}) SELECT {_COLUMNS} FROM hits "
            f"ORDER BY ts_rank(search, {tsquery}) DESC, ts DESC "
            f"LIMIT ${len(args) - 1} OFFSET ${len(args)}",
            *args,
        )
        return [_message(r) for r in rows]

    async def last_rev(self, room: str) -> int:
        last: Any = await self.pool.fetchval("SELECT last_rev FROM rooms WHERE room=$1", room)
        return int(last or 0)

    async def changes(self, room: str, after: int, upto: int, limit: int) -> list[Message]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM messages WHERE room=$1 AND rev>$2 AND rev<=$3 "
            "ORDER BY rev LIMIT $4",
            room,
            after,
            upto,
            limit,
        )
        return [_message(r) for r in rows]

    async def expire(self, room: str, before_ts: int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "DELETE FROM messages WHERE room=$1 AND ts<$2", room, before_ts
            )
            gone = int(status.rsplit(" ", 1)[1])
            if gone:
                # Ids grow with time: what is left starts after the last one gone.
                for table, column in (
                    ("mentions", "id"),
                    ("message_edits", "id"),
                    ("files", "msg_id"),
                ):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE room=$1 AND {column} < "
                        "(SELECT COALESCE(MIN(id), 1::bigint << 62) FROM messages WHERE room=$1)",
                        room,
                    )
        return gone

    async def retention(self) -> dict[str, float]:
        rows = await self.pool.fetch("SELECT room, days FROM room_retention")
        return {row[0]: float(row[1]) for row in rows}

    async def set_retention(self, room: str, days: float | None, entry: LogEntry) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if days is None:
                await conn.execute("DELETE FROM room_retention WHERE room=$1", room)
            else:
                await conn.execute(
                    "INSERT INTO room_retention (room, days) VALUES ($1, $2) "
                    "ON CONFLICT (room) DO UPDATE SET days=EXCLUDED.days",
                    room,
                    days,
                )
            await _log(conn, entry)

    async def restore(self, room: str, messages: Sequence[Message]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if messages:
                try:
                    await conn.execute(
                        "INSERT INTO rooms (room, last_id, last_ts, last_rev) "
                        "VALUES ($1, $2, $3, $4)",
                        room,
                        messages[-1].id,
                        messages[-1].ts,
                        max(m.rev for m in messages),
                    )
                except asyncpg.UniqueViolationError:
                    raise StoreError(f"#{room} has history already") from None
            elif await conn.fetchval("SELECT 1 FROM rooms WHERE room=$1", room):
                raise StoreError(f"#{room} has history already")
            await conn.executemany(
                "INSERT INTO messages (room, id, name, text, ts, user_id, handle, bot, "
                "rev, deleted, mentions, mention_all, edited, reactions, reply_to, attachment) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                [
                    (
                        room,
                        m.id,
                        m.name,
                        m.text,
                        m.ts,
                        m.user_id,
                        m.handle,
                        m.bot,
                        m.rev,
                        m.deleted,
                        " ".join(m.mentions) or None,
                        m.mention_all,
                        m.edited,
                        reactions.encode(m.reactions),
                        m.reply_to,
                        m.attachment.encode() if m.attachment is not None else None,
                    )
                    for m in messages
                ],
            )
            for m in messages:
                if m.attachment is not None:
                    await _insert_file(conn, room, m.id, m.ts, m.attachment)
            await conn.executemany(
                "INSERT INTO mentions (account_id, room, id) VALUES ($1, $2, $3)",
                [(a, room, m.id) for m in messages for a in m.mentions if a != m.user_id],
            )

    # -- an account's rooms -------------------------------------------------------------------

    async def set_read(self, account_id: str, room: str, msg_id: int) -> int:
        read: Any = await self.pool.fetchval(
            """
            INSERT INTO room_state (account_id, room, last_read)
            VALUES ($1, $2, LEAST($3, COALESCE((SELECT last_id FROM rooms WHERE room=$2), 0)))
            ON CONFLICT (account_id, room) DO UPDATE
            SET last_read = GREATEST(room_state.last_read, EXCLUDED.last_read)
            RETURNING last_read
            """,
            account_id,
            room,
            msg_id,
        )
        return int(read)

    async def room_states(self, account_id: str) -> list[RoomState]:
        rows = await self.pool.fetch(_ROOM_STATES, account_id)
        return [RoomState(*tuple(row)) for row in rows]

    async def remove_room_state(self, account_id: str, room: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM room_state WHERE account_id=$1 AND room=$2", account_id, room
        )
        return bool(status != "DELETE 0")

    # -- accounts --------------------------------------------------------------------------------

    async def add_account(
        self, account: Account, keys: Sequence[str], password_hash: str | None
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await _insert_account(conn, account, keys, password_hash)

    async def find_account(self, key: str) -> tuple[Account, str | None] | None:
        row = await self.pool.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS}, password FROM accounts "
            "WHERE id = (SELECT account_id FROM handle_keys WHERE key=$1)",
            key,
        )
        return None if row is None else (_account(row), row[5])

    async def find_accounts(self, keys: Sequence[str]) -> list[Account]:
        if not keys:
            return []
        rows = await self.pool.fetch(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id IN "
            "(SELECT account_id FROM handle_keys WHERE key = ANY($1::text[]))",
            list(keys),
        )
        return list(map(_account, rows))

    async def list_accounts(self) -> list[Account]:
        rows = await self.pool.fetch(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts")
        return sorted(map(_account, rows), key=lambda a: (a.handle.casefold(), a.handle))

    async def set_password(self, account_id: str, password_hash: str | None) -> bool:
        status = await self.pool.execute(
            "UPDATE accounts SET password=$1 WHERE id=$2", password_hash, account_id
        )
        return bool(status != "UPDATE 0")

    async def set_role(self, account_id: str, role: str) -> bool:
        status = await self.pool.execute(
            "UPDATE accounts SET role=$1 WHERE id=$2", role, account_id
        )
        return bool(status != "UPDATE 0")

    async def remove_account(self, account_id: str) -> bool:
        # handle_keys rows go with it (ON DELETE CASCADE).
        status = await self.pool.execute("DELETE FROM accounts WHERE id=$1", account_id)
        return bool(status != "DELETE 0")

    # -- sign-ins --------------------------------------------------------------------------------

    async def add_sign_in(self, sign_in: SignIn, token_hash: str) -> None:
        try:
            await self.pool.execute(
                f"INSERT INTO sessions (token_hash, {_SIGN_IN_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                token_hash,
                sign_in.id,
                sign_in.account_id,
                sign_in.created,
                sign_in.expires,
                sign_in.address,
                sign_in.agent,
            )
        except asyncpg.ForeignKeyViolationError:
            raise StoreError("the account is gone") from None

    async def find_sign_in(self, token_hash: str, now: int) -> tuple[SignIn, Account] | None:
        columns = ", ".join(f"s.{c.strip()}" for c in _SIGN_IN_COLUMNS.split(","))
        account_columns = ", ".join(f"a.{c.strip()}" for c in _ACCOUNT_COLUMNS.split(","))
        row = await self.pool.fetchrow(
            f"SELECT {columns}, {account_columns} FROM sessions s "
            "JOIN accounts a ON a.id = s.account_id WHERE s.token_hash=$1 AND s.expires>$2",
            token_hash,
            now,
        )
        if row is None:
            return None
        values = tuple(row)
        return SignIn(*values[:6]), Account(*values[6:])

    async def list_sign_ins(self, account_id: str, now: int) -> list[SignIn]:
        rows = await self.pool.fetch(
            f"SELECT {_SIGN_IN_COLUMNS} FROM sessions WHERE account_id=$1 AND expires>$2 "
            "ORDER BY created DESC, id",
            account_id,
            now,
        )
        return [_sign_in(r) for r in rows]

    async def live_sign_ins(self, ids: Sequence[str], now: int) -> set[str]:
        if not ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT id FROM sessions WHERE id = ANY($1::text[]) AND expires>$2", list(ids), now
        )
        return {row[0] for row in rows}

    async def remove_sign_ins(
        self, account_id: str, ids: Sequence[str] | None = None, now: int = 0
    ) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM sessions WHERE expires<=$1", now)
            if ids is None:
                status = await conn.execute("DELETE FROM sessions WHERE account_id=$1", account_id)
            else:
                status = await conn.execute(
                    "DELETE FROM sessions WHERE account_id=$1 AND id = ANY($2::text[])",
                    account_id,
                    list(ids),
                )
        return int(status.rsplit(" ", 1)[1])

    # -- invites ---------------------------------------------------------------------------------

    async def has_admin(self) -> bool:
        found = await self.pool.fetchval("SELECT 1 FROM accounts WHERE role='admin' LIMIT 1")
        return found is not None

    async def add_invite(self, invite: Invite, token_hash: str) -> None:
        await self.pool.execute("DELETE FROM invites WHERE expires<=$1", invite.created)
        await self.pool.execute(
            f"INSERT INTO invites (token_hash, {_INVITE_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token_hash,
            invite.id,
            invite.role,
            invite.claim,
            invite.created,
            invite.expires,
            invite.created_by,
        )

    async def find_invite(self, token_hash: str, now: int) -> Invite | None:
        row = await self.pool.fetchrow(_USABLE_INVITE, token_hash, now)
        return None if row is None else Invite(*tuple(row))

    async def redeem_invite(
        self,
        token_hash: str,
        now: int,
        account: Account,
        keys: Sequence[str],
        password_hash: str | None,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # FOR UPDATE: two people redeeming one invite at once queue here; the second
            # finds it used.
            row = await conn.fetchrow(_USABLE_INVITE + " FOR UPDATE", token_hash, now)
            if row is None:
                raise InviteInvalid()
            await _insert_account(conn, account, keys, password_hash)
            await conn.execute(
                "UPDATE invites SET used_by=$1 WHERE token_hash=$2", account.id, token_hash
            )

    # -- moderation ------------------------------------------------------------------------------

    async def add_ban(self, ban: Ban, entry: LogEntry) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO bans (id, kind, target, until, reason, created, created_by) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                ban.id,
                ban.kind,
                ban.target,
                ban.until,
                ban.reason,
                ban.created,
                ban.created_by,
            )
            await _log(conn, entry)

    async def remove_ban(self, ban_id: str, entry: LogEntry) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute("DELETE FROM bans WHERE id=$1", ban_id)
            removed = bool(status != "DELETE 0")
            if removed:
                await _log(conn, entry)
        return removed

    async def log_action(self, entry: LogEntry) -> None:
        async with self.pool.acquire() as conn:
            await _log(conn, entry)

    async def bans(self, now: int) -> list[Ban]:
        rows = await self.pool.fetch(
            "SELECT id, kind, target, until, reason, created, created_by FROM bans "
            "WHERE until=0 OR until>$1 ORDER BY created DESC, id",
            now,
        )
        return [Ban(*tuple(row)) for row in rows]

    async def mod_log(self, limit: int, before: int | None = None) -> list[LogEntry]:
        rows = await self.pool.fetch(
            "SELECT ts, actor, action, target, detail FROM mod_log WHERE ts<$1 "
            "ORDER BY seq DESC LIMIT $2",
            before if before is not None else 2**62,
            limit,
        )
        return [LogEntry(*tuple(row)) for row in rows]

    async def set_private(
        self,
        room: str,
        private: bool,
        entry: LogEntry,
        members: Sequence[tuple[str, LogEntry]] = (),
    ) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if private:
                status = await conn.execute(
                    "INSERT INTO private_rooms (room) VALUES ($1) ON CONFLICT DO NOTHING", room
                )
                changed = status != "INSERT 0 0"
            else:
                status = await conn.execute("DELETE FROM private_rooms WHERE room=$1", room)
                changed = status != "DELETE 0"
                await conn.execute("DELETE FROM room_members WHERE room=$1", room)
            if changed:
                await _log(conn, entry)
            for account_id, added in members if private else ():
                await _set_member(conn, room, account_id, True, added)
        return bool(changed)

    async def add_dm(self, room: str, account_ids: Sequence[str]) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO private_rooms (room) VALUES ($1) ON CONFLICT DO NOTHING", room
            )
            if status == "INSERT 0 0":
                return False
            await conn.executemany(
                "INSERT INTO room_members (room, account_id) VALUES ($1, $2)",
                [(room, a) for a in account_ids],
            )
            await conn.executemany(
                "INSERT INTO room_state (account_id, room, last_read) VALUES ($1, $2, 0) "
                "ON CONFLICT DO NOTHING",
                [(a, room) for a in account_ids],
            )
        return True

    async def set_member(self, room: str, account_id: str, member: bool, entry: LogEntry) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await _set_member(conn, room, account_id, member, entry)

    async def private_rooms(self) -> dict[str, set[str]]:
        async with self.pool.acquire() as conn:
            found: dict[str, set[str]] = {
                row[0]: set() for row in await conn.fetch("SELECT room FROM private_rooms")
            }
            for row in await conn.fetch("SELECT room, account_id FROM room_members"):
                if row[0] in found:
                    found[row[0]].add(row[1])
        return found


async def _set_member(
    conn: asyncpg.Connection, room: str, account_id: str, member: bool, entry: LogEntry
) -> bool:
    """Inside the caller's transaction: add or remove a member, logged if it changed."""
    if member:
        status = await conn.execute(
            "INSERT INTO room_members (room, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            room,
            account_id,
        )
    else:
        status = await conn.execute(
            "DELETE FROM room_members WHERE room=$1 AND account_id=$2", room, account_id
        )
    changed = status not in ("INSERT 0 0", "DELETE 0")
    if changed:
        await _log(conn, entry)
    return changed


async def _log(conn: asyncpg.Connection, entry: LogEntry) -> None:
    await conn.execute(
        "INSERT INTO mod_log (ts, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        entry.ts,
        entry.actor,
        entry.action,
        entry.target,
        entry.detail,
    )


async def _insert_account(
    conn: asyncpg.Connection, account: Account, keys: Sequence[str], password_hash: str | None
) -> None:
    """Inside the caller's transaction; HandleTaken if a key is another account's."""
    try:
        async with conn.transaction():  # a savepoint: the caller's transaction goes on
            await conn.execute(
                f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}, password) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                account.id,
                account.handle,
                account.display_name,
                account.role,
                account.created,
                password_hash,
            )
            await conn.executemany(
                "INSERT INTO handle_keys (key, account_id) VALUES ($1, $2)",
                [(key, account.id) for key in keys],
            )
    except asyncpg.UniqueViolationError:
        raise HandleTaken(account.handle) from None


async def _migrate(conn: asyncpg.Connection) -> tuple[str, int]:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction: (its name, the
    version it had). A schema of a newer version is refused, and nothing is written."""
    async with conn.transaction():
        schema = await _history_schema(conn)
        # One lock per schema: processes starting together migrate one after another.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))
        if not await _schema_exists(conn, schema):
            await conn.execute(f"CREATE SCHEMA {_quote(schema)}")
        await conn.execute("CREATE TABLE IF NOT EXISTS chatapp_schema (version INTEGER NOT NULL)")
        version: int = await conn.fetchval("SELECT max(version) FROM chatapp_schema") or 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database schema {schema} is at version {version}, newer than this "
                f"chatapp understands ({SCHEMA_VERSION}); upgrade chatapp"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            await conn.execute(_MIGRATIONS[target])
            log.info("PostgreSQL schema %s migrated to version %d", schema, target)
        if version < SCHEMA_VERSION:
            await conn.execute("DELETE FROM chatapp_schema")
            await conn.execute("INSERT INTO chatapp_schema VALUES ($1)", SCHEMA_VERSION)
    return schema, version


async def migrate(dsn: str) -> tuple[int, int]:
    """Bring the schema of ``dsn`` to :data:`SCHEMA_VERSION` and disconnect: (the version
    it had, the version it has). StoreError if it cannot."""
    where = redacted(dsn)
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, command_timeout=QUERY_TIMEOUT)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {where}: {exc}") from exc
    except (asyncpg.InterfaceError, ValueError) as exc:
        raise StoreError(f"invalid PostgreSQL URL {where}: {exc}") from exc
    try:
        _, version = await _migrate(conn)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot set up the schema in PostgreSQL at {where}: {exc}") from exc
    finally:
        await conn.close()
    return version, SCHEMA_VERSION


async def _history_schema(conn: asyncpg.Connection) -> str:
    """The first schema of ``search_path``, as PostgreSQL resolves it, existing or not."""
    search_path: str = await conn.fetchval("SHOW search_path")
    for part in search_path.split(","):
        name = part.strip()
        if name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('""', '"')
        if name == "$user":
            user: str = await conn.fetchval("SELECT current_user")
            if await _schema_exists(conn, user):
                return user
            continue
        if name:
            return name
    raise StoreError("the PostgreSQL search_path names no schema to keep history in")


async def _schema_exists(conn: asyncpg.Connection, schema: str) -> bool:
    found = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname=$1", schema)
    return found is not None


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _lock_key(schema: str) -> int:
    # A stable 63-bit key per schema, from a fixed tag so other applications' locks differ.
    return zlib.crc32(b"chatapp-schema:" + schema.encode()) | (0x6368_6174 << 32)
