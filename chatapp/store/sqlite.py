"""History in one SQLite file (WAL mode), the single-box default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

from ..search import INDEX_BATCH_HINT, RANKED, Query
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
T = TypeVar("T")

#: The schema this code writes; each version's migration takes the file from the one
#: before. A file at a later version (a newer chatapp) is refused, never written to.
SCHEMA_VERSION = 5
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE messages (
            room      TEXT    NOT NULL,
            id        INTEGER NOT NULL,
            name      TEXT    NOT NULL,
            text      TEXT    NOT NULL,
            ts        INTEGER NOT NULL,
            client_id TEXT,
            PRIMARY KEY (room, id)
        ) WITHOUT ROWID""",
        """CREATE UNIQUE INDEX messages_client_id
            ON messages (room, name, client_id) WHERE client_id IS NOT NULL""",
    ),
    # Who sent each message, and retries recognised by sender id (a retry after a rename
    # is still the same message); one row per room with its newest message, so that the
    # room list and a room's newest id cost an index lookup instead of a scan of history.
    2: (
        "ALTER TABLE messages ADD COLUMN user_id TEXT",
        "DROP INDEX messages_client_id",
        """CREATE UNIQUE INDEX messages_client_id
            ON messages (room, name, client_id) WHERE client_id IS NOT NULL AND user_id IS NULL""",
        """CREATE UNIQUE INDEX messages_retry
            ON messages (room, user_id, client_id)
            WHERE client_id IS NOT NULL AND user_id IS NOT NULL""",
        """CREATE TABLE rooms (
            room    TEXT    PRIMARY KEY,
            last_id INTEGER NOT NULL,
            last_ts INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """INSERT INTO rooms (room, last_id, last_ts)
            SELECT m.room, m.id, m.ts FROM messages m
            JOIN (SELECT room, MAX(id) AS id FROM messages GROUP BY room) last
            ON m.room = last.room AND m.id = last.id""",
        "CREATE INDEX rooms_recent ON rooms (last_ts DESC, room)",
    ),
    # Accounts, and the keys their handles are known by: a key (a handle case-folded, or
    # its confusable skeleton) belongs to one account, so nobody registers a look-alike.
    3: (
        """CREATE TABLE accounts (
            id           TEXT    PRIMARY KEY,
            handle       TEXT    NOT NULL,
            display_name TEXT    NOT NULL,
            role         TEXT    NOT NULL,
            password     TEXT,
            created      INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE handle_keys (
            key        TEXT PRIMARY KEY,
            account_id TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX handle_keys_account ON handle_keys (account_id)",
        # Signed-in browsers: the cookie holds a secret token, this table only its digest.
        """CREATE TABLE sessions (
            token_hash TEXT    PRIMARY KEY,
            id         TEXT    NOT NULL UNIQUE,
            account_id TEXT    NOT NULL,
            created    INTEGER NOT NULL,
            expires    INTEGER NOT NULL,
            address    TEXT    NOT NULL,
            agent      TEXT    NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX sessions_account ON sessions (account_id)",
        # Who sent a message, as everyone is shown it: the account's handle, a bot or not.
        "ALTER TABLE messages ADD COLUMN handle TEXT",
        "ALTER TABLE messages ADD COLUMN bot INTEGER NOT NULL DEFAULT 0",
        # Single-use links to create an account; only the token's digest is kept.
        """CREATE TABLE invites (
            token_hash TEXT    PRIMARY KEY,
            id         TEXT    NOT NULL UNIQUE,
            role       TEXT    NOT NULL,
            claim      INTEGER NOT NULL,
            created    INTEGER NOT NULL,
            expires    INTEGER NOT NULL,
            created_by TEXT,
            used_by    TEXT
        ) WITHOUT ROWID""",
        # Who is kept out, and the moderation log (who did what to whom, when).
        """CREATE TABLE bans (
            id         TEXT    PRIMARY KEY,
            kind       TEXT    NOT NULL,
            target     TEXT    NOT NULL,
            until      INTEGER NOT NULL,
            reason     TEXT    NOT NULL,
            created    INTEGER NOT NULL,
            created_by TEXT    NOT NULL
        ) WITHOUT ROWID""",
        # Private rooms and their members (accounts): nobody else sees or joins them.
        """CREATE TABLE private_rooms (
            room TEXT PRIMARY KEY
        ) WITHOUT ROWID""",
        """CREATE TABLE room_members (
            room       TEXT NOT NULL,
            account_id TEXT NOT NULL,
            PRIMARY KEY (room, account_id)
        ) WITHOUT ROWID""",
        # Rooms whose history is kept longer or shorter than the server's --retention-days.
        """CREATE TABLE room_retention (
            room TEXT PRIMARY KEY,
            days REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE mod_log (
            seq    INTEGER PRIMARY KEY AUTOINCREMENT,
            ts     INTEGER NOT NULL,
            actor  TEXT    NOT NULL,
            action TEXT    NOT NULL,
            target TEXT    NOT NULL,
            detail TEXT    NOT NULL
        )""",
    ),
    # Changes to sent messages: each takes the room's next change number (rev), which the
    # message keeps, so a client catches up on changes by number, as on messages by id.
    4: (
        "ALTER TABLE messages ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX messages_changes ON messages (room, rev) WHERE rev > 0",
        "ALTER TABLE rooms ADD COLUMN last_rev INTEGER NOT NULL DEFAULT 0",
        # Mentions as resolved when a message was stored: on the message (its account ids,
        # space-separated; "room" or "here"), and a row per mentioned account, for counts.
        "ALTER TABLE messages ADD COLUMN mentions TEXT",
        "ALTER TABLE messages ADD COLUMN mention_all TEXT",
        """CREATE INDEX messages_mention_all ON messages (room, id)
            WHERE mention_all IS NOT NULL""",
        """CREATE TABLE mentions (
            account_id TEXT    NOT NULL,
            room       TEXT    NOT NULL,
            id         INTEGER NOT NULL,
            PRIMARY KEY (account_id, room, id)
        ) WITHOUT ROWID""",
        # An account's rooms, and the newest message it read in each.
        """CREATE TABLE room_state (
            account_id TEXT    NOT NULL,
            room       TEXT    NOT NULL,
            last_read  INTEGER NOT NULL,
            PRIMARY KEY (account_id, room)
        ) WITHOUT ROWID""",
    ),
    # Edits, reactions and replies. An edit keeps the text it replaced (for admins) until
    # the message is deleted; reactions live on the message, as JSON (store.reactions).
    5: (
        "ALTER TABLE messages ADD COLUMN edited INTEGER",
        "ALTER TABLE messages ADD COLUMN reactions TEXT",
        "ALTER TABLE messages ADD COLUMN reply_to INTEGER",
        # Files: a message's attachment (as clients see it, and where its bytes are), and a
        # row per attached file, for its URL, its readers, upload quotas and the files
        # directory's clean-up. A deletion or expiry of the message removes the row.
        "ALTER TABLE messages ADD COLUMN attachment TEXT",
        """CREATE TABLE files (
            id       TEXT    PRIMARY KEY,
            room     TEXT    NOT NULL,
            msg_id   INTEGER NOT NULL,
            sha256   TEXT    NOT NULL,
            thumb    TEXT,
            size     INTEGER NOT NULL,
            uploader TEXT    NOT NULL,
            ts       INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX files_message ON files (room, msg_id)",
        "CREATE INDEX files_uploader ON files (uploader, ts)",
        "CREATE INDEX files_sha256 ON files (sha256)",
        "CREATE INDEX files_thumb ON files (thumb) WHERE thumb IS NOT NULL",
        """CREATE TABLE message_edits (
            room TEXT    NOT NULL,
            id   INTEGER NOT NULL,
            rev  INTEGER NOT NULL,
            ts   INTEGER NOT NULL,
            text TEXT    NOT NULL,
            PRIMARY KEY (room, id, rev)
        ) WITHOUT ROWID""",
        # Search: a contentless FTS5 index of the texts (no second copy of them), its rows
        # numbered by search_rows. New messages are indexed in batches, after they are
        # committed (search_progress: each room's newest id indexed; a search first
        # indexes what is left), which costs a twentieth of indexing each in its own
        # commit; triggers keep indexed texts in step with every edit, deletion and
        # expiry, handing FTS5 the old text it needs to take a text's words out.
        """CREATE TABLE search_rows (
            rowid INTEGER PRIMARY KEY,
            room  TEXT    NOT NULL,
            id    INTEGER NOT NULL,
            UNIQUE (room, id)
        )""",
        """CREATE VIRTUAL TABLE messages_fts
            USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2')""",
        """CREATE TABLE search_progress (
            room    TEXT    PRIMARY KEY,
            indexed INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TRIGGER messages_fts_change AFTER UPDATE OF text ON messages
        WHEN old.text != new.text BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text)
                SELECT 'delete', rowid, old.text FROM search_rows
                WHERE room = old.room AND id = old.id;
            DELETE FROM search_rows WHERE room = old.room AND id = old.id AND new.text = '';
            INSERT INTO messages_fts (rowid, text)
                SELECT rowid, new.text FROM search_rows
                WHERE room = new.room AND id = new.id AND new.text != '';
        END""",
        """CREATE TRIGGER messages_fts_remove AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text)
                SELECT 'delete', rowid, old.text FROM search_rows
                WHERE room = old.room AND id = old.id;
            DELETE FROM search_rows WHERE room = old.room AND id = old.id;
        END""",
        # What was there before this version is indexed by the first search, or within a
        # second of the server's start.
    ),
}
_COLUMNS = (
    "id, room, name, text, ts, user_id, handle, bot, rev, deleted, mentions, mention_all, "
    "edited, reactions, reply_to, attachment"
)
_M_COLUMNS = ", ".join("m." + c.strip() for c in _COLUMNS.split(","))
#: Rooms an account (or, with NULL, a guest) may read.
_READABLE = (
    "(m.room NOT IN (SELECT room FROM private_rooms) "
    "OR m.room IN (SELECT room FROM room_members WHERE account_id = ?))"
)
#: An account has read a room up to an id (never back); the room becomes one of its rooms.
_READ_UPTO = (
    "INSERT INTO room_state (account_id, room, last_read) VALUES (?, ?, ?) "
    "ON CONFLICT (account_id, room) DO UPDATE SET last_read=MAX(last_read, excluded.last_read)"
)
#: WAL pages after which a commit of the store's thread checkpoints (SQLite's default: 1,000).
AUTOCHECKPOINT_PAGES = 4000
#: Commits made on the event loop between two checkpoints (a lone message's commit writes
#: about 4 pages).
CHECKPOINT_EVERY = 1000
#: Names per ``IN (...)`` list (SQLite allows 32766 parameters since 3.32, 999 before).
_IN_CHUNK = 500


_ACCOUNT_COLUMNS = "id, handle, display_name, role, created"
#: An account's rooms with their read state: the mentions of it after the read message,
#: and the messages to everyone (@room, @here) by others after it.
_ROOM_STATES = """
SELECT s.room, s.last_read, COALESCE(r.last_id, 0),
    (SELECT COUNT(*) FROM mentions m
        WHERE m.account_id = s.account_id AND m.room = s.room AND m.id > s.last_read)
    + (SELECT COUNT(*) FROM messages g
        WHERE g.room = s.room AND g.mention_all IS NOT NULL AND g.id > s.last_read
        AND g.user_id IS NOT s.account_id)
FROM room_state s LEFT JOIN rooms r ON r.room = s.room
WHERE s.account_id = ? ORDER BY s.room
"""
_SIGN_IN_COLUMNS = "id, account_id, created, expires, address, agent"
_INVITE_COLUMNS = "id, role, claim, created, expires, created_by"


def _account(row: tuple[Any, ...]) -> Account:
    return Account(id=row[0], handle=row[1], display_name=row[2], role=row[3], created=row[4])


def _invite(row: tuple[Any, ...]) -> Invite:
    return Invite(row[0], row[1], bool(row[2]), row[3], row[4], row[5])


def _usable_invite(conn: sqlite3.Connection, token_hash: str, now: int) -> Invite | None:
    row = conn.execute(
        f"SELECT {_INVITE_COLUMNS} FROM invites "
        "WHERE token_hash=? AND used_by IS NULL AND expires>?",
        (token_hash, now),
    ).fetchone()
    if row is None:
        return None
    invite = _invite(row)
    if invite.claim and conn.execute("SELECT 1 FROM accounts WHERE role='admin'").fetchone():
        return None
    return invite


def _insert_account(
    conn: sqlite3.Connection, account: Account, keys: Sequence[str], password_hash: str | None
) -> None:
    """Inside the caller's write transaction."""
    marks = ",".join("?" * len(keys))
    taken = conn.execute(f"SELECT 1 FROM handle_keys WHERE key IN ({marks})", list(keys)).fetchone()
    if taken is not None:
        raise HandleTaken(account.handle)
    conn.execute(
        f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}, password) VALUES (?, ?, ?, ?, ?, ?)",
        (
            account.id,
            account.handle,
            account.display_name,
            account.role,
            account.created,
            password_hash,
        ),
    )
    conn.executemany(
        "INSERT INTO handle_keys (key, account_id) VALUES (?, ?)",
        [(key, account.id) for key in keys],
    )


def _log(conn: sqlite3.Connection, entry: LogEntry) -> None:
    conn.execute(
        "INSERT INTO mod_log (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (entry.ts, entry.actor, entry.action, entry.target, entry.detail),
    )


def _set_member(
    conn: sqlite3.Connection, room: str, account_id: str, member: bool, entry: LogEntry
) -> bool:
    """Inside the caller's transaction: add or remove a member, logged if it changed."""
    if member:
        sql = "INSERT INTO room_members (room, account_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
    else:
        sql = "DELETE FROM room_members WHERE room=? AND account_id=?"
    changed = conn.execute(sql, (room, account_id)).rowcount > 0
    if changed:
        _log(conn, entry)
    return changed


def _sign_in(row: tuple[Any, ...]) -> SignIn:
    return SignIn(*row[:6])


def _row(row: tuple[Any, ...]) -> Message:
    return Message(
        id=row[0],
        room=row[1],
        name=row[2],
        text=row[3],
        ts=row[4],
        user_id=row[5],
        handle=row[6],
        bot=bool(row[7]),
        rev=row[8],
        deleted=bool(row[9]),
        mentions=tuple(row[10].split()) if row[10] else (),
        mention_all=row[11],
        edited=row[12],
        reactions=reactions.decode(row[13]),
        reply_to=row[14],
        attachment=Attachment.decode(row[15]),
    )


def _insert_file(
    conn: sqlite3.Connection, room: str, msg_id: int, ts: int, file: Attachment
) -> None:
    conn.execute(
        "INSERT INTO files (id, room, msg_id, sha256, thumb, size, uploader, ts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (file.id, room, msg_id, file.sha256, file.thumb, file.size, file.uploader, ts),
    )


#: Messages indexed for search in one transaction at most.
INDEX_BATCH = INDEX_BATCH_HINT


def _index(conn: sqlite3.Connection) -> int:
    """Index for search the messages committed since the last time, up to
    :data:`INDEX_BATCH` of them, in one write transaction; how many ids it covered."""
    done = 0
    with _locked(conn):
        behind = conn.execute(
            "SELECT r.room, COALESCE(p.indexed, 0), r.last_id FROM rooms r "
            "LEFT JOIN search_progress p ON p.room = r.room "
            "WHERE r.last_id > COALESCE(p.indexed, 0)"
        ).fetchall()
        for room, indexed, last in behind:
            upto = min(last, indexed + INDEX_BATCH - done)
            conn.execute(
                "INSERT INTO search_rows (room, id) SELECT room, id FROM messages "
                "WHERE room = ? AND id > ? AND id <= ? AND text != ''",
                (room, indexed, upto),
            )
            conn.execute(
                "INSERT INTO messages_fts (rowid, text) SELECT s.rowid, m.text "
                "FROM search_rows s JOIN messages m ON m.room = s.room AND m.id = s.id "
                "WHERE s.room = ? AND s.id > ? AND s.id <= ?",
                (room, indexed, upto),
            )
            conn.execute(
                "INSERT INTO search_progress (room, indexed) VALUES (?, ?) "
                "ON CONFLICT (room) DO UPDATE SET indexed = excluded.indexed",
                (room, upto),
            )
            done += upto - indexed
            if done >= INDEX_BATCH:
                break
    return done


def _get(conn: sqlite3.Connection, room: str, msg_id: int) -> Message | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id=?", (room, msg_id)
    ).fetchone()
    return None if row is None else _row(row)


def _next_rev(conn: sqlite3.Connection, room: str) -> int:
    """Take the room's next change number (in the caller's write transaction)."""
    conn.execute("UPDATE rooms SET last_rev=last_rev+1 WHERE room=?", (room,))
    return int(conn.execute("SELECT last_rev FROM rooms WHERE room=?", (room,)).fetchone()[0])


def _too_new(path: str, version: int) -> StoreError:
    return StoreError(
        f"the SQLite database {path!r} is at schema version {version}, newer than "
        f"this chatapp understands ({SCHEMA_VERSION}); upgrade chatapp"
    )


def _file_version(path: str) -> int:
    """The schema version of the file at ``path`` (0 if there is none), read without
    writing to it or creating anything beside it.

    A connection that reads would do both: opening a WAL file makes its ``-wal`` and
    ``-shm`` files, and the PRAGMAs that set the file up rewrite its header. So the
    version (``user_version``, 4 bytes at offset 60 of the header) is read from the file,
    unless a ``-wal`` file beside it may hold a newer header; then SQLite reads it,
    read-only. Something that is not a SQLite file is left for SQLite to report.
    """
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        return 0
    except OSError:
        return 0  # a directory, no permission...: connecting reports it
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
        return 0
    wal_mode = header[18] == 2
    if not (wal_mode and os.path.exists(path + "-wal")):
        return int.from_bytes(header[60:64], "big")
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@contextlib.contextmanager
def _locked(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: BEGIN IMMEDIATE (the file's write lock from the start, so two
    processes' checks and writes do not interleave), committed at the end of the block,
    rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the file's schema to :data:`SCHEMA_VERSION`; return the version it had.

    One write transaction: several processes opening the file at once migrate it once,
    and a failed migration leaves the file as it was.
    """
    with _locked(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise _too_new(path, version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return int(version)


def _connect(path: str) -> tuple[sqlite3.Connection, int]:
    """A connection to the file, set up (WAL) and migrated; and the version it had.

    A file of a newer schema is refused before anything is written to it.
    """
    version = _file_version(path)
    if version > SCHEMA_VERSION:
        raise _too_new(path, version)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not enable WAL (got {mode})")
        # NORMAL in WAL mode survives a process crash; only an OS crash can lose the
        # last commits, which is the documented trade-off for write speed.
        conn.execute("PRAGMA synchronous=NORMAL")
        # A deleted message's text, and expired history, are overwritten, not left in the
        # file's free pages. (Deletes and updates all go through this connection.)
        conn.execute("PRAGMA secure_delete=ON")
        # A checkpoint copies each page the WAL holds once, however often it was written
        # since the last: every 4,000 pages (SQLite's default is 1,000) a message costs a
        # quarter less to store under load, at the price of a WAL of about 16 MB and a
        # wait of up to about 25 ms (not 13) for the batch that checkpoints.
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        version = _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    if version < SCHEMA_VERSION:
        log.info(
            "SQLite file %s migrated from schema version %d to %d", path, version, SCHEMA_VERSION
        )
    return conn, version


def migrate(path: str) -> tuple[int, int]:
    """Bring the SQLite file at ``path`` (created if missing) to :data:`SCHEMA_VERSION`:
    (the version it had, the version it has). StoreError if it cannot."""
    try:
        conn, version = _connect(path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
    conn.close()
    return version, SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class _Add:
    room: str
    name: str
    text: str
    client_id: str | None
    user_id: str | None
    handle: str | None
    bot: bool
    mentions: tuple[str, ...]
    mention_all: str | None
    reply_to: int | None
    attachment: Attachment | None
    read_by: str | None
    done: asyncio.Future[tuple[Message, bool]]


_Outcome = tuple[Message, bool] | BaseException


def _insert(
    conn: sqlite3.Connection, add: _Add, newest: dict[str, Message]
) -> tuple[Message, bool]:
    """Add one message inside the caller's write transaction; (message, created).

    ``newest`` holds each room's newest message written in this transaction.
    """
    previous = newest.get(add.room)
    if previous is not None:
        last = previous.id
    else:
        row = conn.execute("SELECT last_id FROM rooms WHERE room=?", (add.room,)).fetchone()
        last = row[0] if row is not None else 0
    msg = Message(
        id=last + 1,
        room=add.room,
        name=add.name,
        text=add.text,
        ts=now_ms(),
        user_id=add.user_id,
        handle=add.handle,
        bot=add.bot,
        mentions=add.mentions,
        mention_all=add.mention_all,
        reply_to=add.reply_to,
        attachment=add.attachment,
    )
    # A retry (same sender, room and client_id) hits a unique index and inserts nothing;
    # then it is answered with the message stored the first time. One statement for a new
    # message instead of a look-up and an insert. It is all inside the write lock: another
    # process on the same file may be committing the same client_id right now.
    cursor = conn.execute(
        "INSERT OR IGNORE INTO messages (room, id, name, text, ts, client_id, user_id, "
        "handle, bot, mentions, mention_all, reply_to, attachment) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            add.room,
            msg.id,
            add.name,
            add.text,
            msg.ts,
            add.client_id,
            add.user_id,
            add.handle,
            int(add.bot),
            " ".join(add.mentions) or None,
            add.mention_all,
            add.reply_to,
            add.attachment.encode() if add.attachment is not None else None,
        ),
    )
    if cursor.rowcount == 0:
        return _stored_retry(conn, add), False
    if add.attachment is not None:
        _insert_file(conn, add.room, msg.id, msg.ts, add.attachment)
    if add.mentions:
        conn.executemany(
            "INSERT INTO mentions (account_id, room, id) VALUES (?, ?, ?)",
            [(a, add.room, msg.id) for a in add.mentions if a != add.user_id],
        )
    if add.read_by is not None:
        # The message is the room's newest: read up to it (never back).
        conn.execute(_READ_UPTO, (add.read_by, add.room, msg.id))
    newest[add.room] = msg
    return msg, True


def _stored_retry(conn: sqlite3.Connection, add: _Add) -> Message:
    """The message a retry repeats: the one stored with its sender, room and client_id."""
    row = None
    if add.client_id is not None:
        if add.user_id is not None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND user_id=? AND client_id=?",
                (add.room, add.user_id, add.client_id),
            ).fetchone()
        else:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM messages "
                "WHERE room=? AND name=? AND client_id=? AND user_id IS NULL",
                (add.room, add.name, add.client_id),
            ).fetchone()
    if row is None:
        # Not a retry: another constraint refused the row (its id taken, say).
        raise StoreError(f"the store refused a message to {add.room!r}: a constraint failed")
    return _row(row)


def _transaction(conn: sqlite3.Connection, batch: list[_Add]) -> list[_Outcome]:
    with _locked(conn):
        newest: dict[str, Message] = {}
        outcomes: list[_Outcome] = [_insert(conn, add, newest) for add in batch]
        # One row per room, written once per transaction however many messages it got.
        conn.executemany(
            "INSERT INTO rooms (room, last_id, last_ts) VALUES (?, ?, ?) "
            "ON CONFLICT (room) DO UPDATE SET last_id=excluded.last_id, last_ts=excluded.last_ts",
            [(m.room, m.id, m.ts) for m in newest.values()],
        )
    return outcomes


def _write(conn: sqlite3.Connection, batch: list[_Add]) -> list[_Outcome]:
    """Runs in the store's thread: the batch in one transaction, or each alone on failure."""
    try:
        return _transaction(conn, batch)
    except Exception as exc:
        if len(batch) == 1:
            return [exc]
    # Something in the batch failed (say, text SQLite cannot encode): give every add its
    # own transaction and its own outcome, so one bad message fails nobody else's.
    outcomes: list[_Outcome] = []
    for add in batch:
        try:
            outcomes.extend(_transaction(conn, [add]))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _checkpoint(conn: sqlite3.Connection | None) -> None:
    """Runs in the store's thread: copy the WAL into the database without blocking writers."""
    if conn is not None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


class SQLiteStore:
    """A MessageStore on a SQLite file in WAL mode: reads and batches in one worker thread,
    a lone message written at once.

    The worker thread owns one connection and runs every read, every batch of writes and
    the checkpoints, which keeps the event loop free of waiting on the disk. Messages that
    arrive while a write is under way are committed together in the next transaction
    (group commit). A message that arrives alone, with no write under way, is committed at
    once on the event loop through a second connection (:meth:`_write_inline`): a WAL
    append that waits for no disk flush (``synchronous=NORMAL``) and for no lock (a busy
    file sends it to the thread instead); that saves the two thread hand-offs that
    dominated a message's latency at a calm rate. That connection never checkpoints (that
    flushes to disk): every :data:`CHECKPOINT_EVERY` of its commits the thread does. A
    welcome's reads (:meth:`view`, :meth:`find_account`) are done on the event loop too,
    through that connection (:meth:`_read_inline`). The other reads asked for in one turn
    of the event loop go to the thread together (:meth:`_run`).
    Per-room ids stay consecutive: ids are assigned inside the write transaction, and a
    message goes inline only when no write is queued or under way. Closing waits for
    queued writes.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None  # the event loop's, for lone adds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatapp-sqlite")
        self._batch: list[_Add] = []  # adds waiting for the next write transaction
        # The batch being written, or a checkpoint, in the thread.
        self._writing: asyncio.Future[Any] | None = None
        self._flushing = False  # a _flush is scheduled for this turn of the event loop
        self._inline_commits = 0  # since the last checkpoint
        # Calls of this turn of the event loop, for the thread (_run).
        self._calls: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the thread, with the calls of the same turn of the event loop: one
        hand-off for all of them (a crowd connecting reads a room each)."""
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._calls:
            loop.call_soon(self._hand_over)
        self._calls.append((fn, future))
        # A cancelled handler cancels only its wait: the call runs in the thread all the
        # same, and its outcome, finding the future done, is dropped (no shield needed).
        return await future

    def _hand_over(self) -> asyncio.Future[Any] | None:
        """Send this turn's calls to the thread, in order; each gets its own outcome."""
        calls, self._calls = self._calls, []
        conn = self._conn
        if not calls:
            return None
        if conn is None:
            for _, future in calls:
                if not future.done():
                    future.set_exception(StoreError("the SQLite store is not open"))
            return None

        def run() -> list[tuple[bool, Any]]:
            outcomes: list[tuple[bool, Any]] = []
            for fn, _ in calls:
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as exc:
                    outcomes.append((False, exc))
            return outcomes

        def done(job: asyncio.Future[list[tuple[bool, Any]]]) -> None:
            failure = None if job.cancelled() else job.exception()
            if job.cancelled() or failure is not None:
                outcomes = [(False, failure or StoreError("cancelled"))] * len(calls)
            else:
                outcomes = job.result()
            for (_, future), (ok, value) in zip(calls, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        job = asyncio.get_running_loop().run_in_executor(self._executor, run)
        job.add_done_callback(done)
        return job

    async def open(self) -> None:
        def connect() -> tuple[sqlite3.Connection, sqlite3.Connection]:
            conn, _ = _connect(self.path)
            try:
                inline = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            except BaseException:
                conn.close()
                raise
            try:
                inline.execute("PRAGMA synchronous=NORMAL")
                inline.execute("PRAGMA busy_timeout=0")  # the event loop never waits
                inline.execute("PRAGMA wal_autocheckpoint=0")  # the thread checkpoints
            except BaseException:
                conn.close()
                inline.close()
                raise
            return conn, inline

        try:
            self._conn, self._inline = await asyncio.get_running_loop().run_in_executor(
                self._executor, connect
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        log.info("history in SQLite file %s", self.path)

    async def close(self) -> None:
        while self._batch or self._writing is not None:
            if self._writing is None:
                self._write_batch()  # a flush scheduled for this turn has not run yet
                continue
            # Its callback, registered first, has queued the next batch when this returns.
            await asyncio.wait([self._writing])
        reads = self._hand_over()  # calls of this turn, not handed over yet
        if reads is not None:
            await asyncio.wait([reads])
        conn, self._conn = self._conn, None
        inline, self._inline = self._inline, None
        loop = asyncio.get_running_loop()
        if inline is not None:
            await loop.run_in_executor(self._executor, inline.close)
        if conn is not None:
            await loop.run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

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
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[Message, bool]] = loop.create_future()
        self._batch.append(
            _Add(
                room,
                name,
                text,
                client_id,
                user_id,
                handle,
                bot,
                mentions,
                mention_all,
                reply_to,
                attachment,
                read_by,
                done,
            )
        )
        if self._writing is None and not self._flushing:
            # Adds of this turn of the loop are written together, at its end.
            self._flushing = True
            loop.call_soon(self._flush)
        # A cancelled handler cancels only its wait: the batch holds the add, which is
        # written all the same (no half-seen write), and its outcome, finding ``done``
        # done, is dropped. Cheaper than a shield, on every message's path.
        return await done

    def _flush(self) -> None:
        self._flushing = False
        if self._writing is not None:
            return  # the running write's callback takes the batch
        if len(self._batch) == 1 and self._write_inline(self._batch[0]):
            self._batch = []
            return
        self._write_batch()

    def _write_inline(self, add: _Add) -> bool:
        """Commit a lone add on the event loop; False if the file is busy (another
        process writing) and it must go to the thread."""
        inline = self._inline
        if inline is None:
            return False
        try:
            (outcome,) = _transaction(inline, [add])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            outcome = exc
        except Exception as exc:
            outcome = exc
        if not add.done.done():
            if isinstance(outcome, BaseException):
                add.done.set_exception(outcome)
            else:
                add.done.set_result(outcome)
        self._inline_commits += 1
        if self._inline_commits >= CHECKPOINT_EVERY:
            # Counted as a write under way: adds meanwhile wait and go to the thread after
            # it. A checkpoint overtaken by commits would never let the WAL start over.
            self._inline_commits = 0
            job = asyncio.get_running_loop().run_in_executor(
                self._executor, _checkpoint, self._conn
            )
            self._writing = job
            job.add_done_callback(self._checkpointed)
        return True

    def _checkpointed(self, job: asyncio.Future[None]) -> None:
        if not job.cancelled() and job.exception() is not None:
            log.warning("SQLite checkpoint failed: %s", job.exception())
        self._write_batch()

    def _write_batch(self) -> None:
        """Commit every add waiting, in one transaction, then the next batch, and so on.

        Under load, adds arrive while a transaction is being written; committing them
        together costs one BEGIN/COMMIT and one trip to the thread for the lot instead of
        one each. When idle, an add is written at once, alone.
        """
        batch, self._batch = self._batch, []
        conn = self._conn
        if not batch or conn is None:
            self._writing = None
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(StoreError("the SQLite store is not open"))
            return
        job = asyncio.get_running_loop().run_in_executor(self._executor, _write, conn, batch)
        self._writing = job
        job.add_done_callback(lambda job: self._written(batch, job))

    def _written(self, batch: list[_Add], job: asyncio.Future[list[_Outcome]]) -> None:
        if job.cancelled():
            outcomes: list[_Outcome] = [StoreError("the write was cancelled")] * len(batch)
        elif job.exception() is not None:
            outcomes = [cast(BaseException, job.exception())] * len(batch)
        else:
            outcomes = job.result()
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.done.done():
                continue
            if isinstance(outcome, BaseException):
                item.done.set_exception(outcome)
            else:
                item.done.set_result(outcome)
        self._write_batch()

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
            row = conn.execute("SELECT last_id FROM rooms WHERE room=?", (room,)).fetchone()
            return int(row[0]) if row is not None else 0

        return await self._run(last)

    async def view(self, room: str, limit: int, after: int | None = None) -> RoomView:
        def view(conn: sqlite3.Connection) -> RoomView:
            # The room's row first: a message stored after it is read shows in the page.
            row = conn.execute(
                "SELECT last_rev, last_id FROM rooms WHERE room=?", (room,)
            ).fetchone()
            rev, last = (int(row[0]), int(row[1])) if row is not None else (0, 0)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND id>? ORDER BY id DESC LIMIT ?",
                (room, after or 0, limit + 1),
            ).fetchall()
            page = Page([_row(r) for r in reversed(rows[:limit])], len(rows) > limit)
            return RoomView(rev, page, page.messages[-1].id if page.messages else last)

        return await self._read_at_once(view)

    async def _read_at_once(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run the read ``fn`` on the event loop (:meth:`_read_inline`), or in the thread
        if the file is busy."""
        read = self._read_inline(fn)
        return read[0] if read is not None else await self._run(fn)

    def _read_inline(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[T] | None:
        """Run the read ``fn`` on the event loop: its outcome, in a tuple; None if the file
        is busy (a WAL being reset) and it must go to the thread.

        For what a connecting client needs (its room's view, whether its name is an
        account's), a few indexed rows: the thread's hand-off cost the event loop several
        times what the read does. A WAL reader takes no lock a writer holds, so the
        thread's writes never hold it up.
        """
        inline = self._inline
        if inline is None:
            return None
        try:
            return (fn(inline),)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise

    async def active_rooms(self, limit: int, after: tuple[int, str] | None = None) -> list[Room]:
        def active(conn: sqlite3.Connection) -> list[Room]:
            if after is None:
                rows = conn.execute(
                    "SELECT room, last_ts FROM rooms ORDER BY last_ts DESC, room LIMIT ?",
                    (limit,),
                ).fetchall()
            else:
                # The range on last_ts walks the index; the few rooms with the same ts as
                # the cursor are told apart by name.
                ts, name = after
                rows = conn.execute(
                    "SELECT room, last_ts FROM rooms WHERE last_ts <= ? "
                    "AND NOT (last_ts = ? AND room <= ?) "
                    "ORDER BY last_ts DESC, room LIMIT ?",
                    (ts, ts, name, limit),
                ).fetchall()
            return [Room(room, last_ts) for room, last_ts in rows]

        return await self._run(active)

    async def last_message_times(self, rooms: Iterable[str]) -> dict[str, int]:
        wanted = list(rooms)

        def times(conn: sqlite3.Connection) -> dict[str, int]:
            found: dict[str, int] = {}
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(
                    conn.execute(
                        f"SELECT room, last_ts FROM rooms WHERE room IN ({marks})", chunk
                    ).fetchall()
                )
            return found

        return await self._run(times) if wanted else {}

    async def get(self, room: str, msg_id: int) -> Message | None:
        return await self._run(lambda conn: _get(conn, room, msg_id))

    async def delete(self, room: str, msg_id: int) -> tuple[Message, bool] | None:
        def delete(conn: sqlite3.Connection) -> tuple[Message, bool] | None:
            with _locked(conn):
                msg = _get(conn, room, msg_id)
                if msg is None or msg.deleted:
                    return None if msg is None else (msg, False)
                rev = _next_rev(conn, room)
                conn.execute(
                    "UPDATE messages SET text='', deleted=1, rev=?, mentions=NULL, "
                    "mention_all=NULL, reactions=NULL, attachment=NULL WHERE room=? AND id=?",
                    (rev, room, msg_id),
                )
                conn.execute("DELETE FROM files WHERE room=? AND msg_id=?", (room, msg_id))
                conn.execute("DELETE FROM mentions WHERE room=? AND id=?", (room, msg_id))
                conn.execute("DELETE FROM message_edits WHERE room=? AND id=?", (room, msg_id))
            # The write-ahead log still holds the page as it was: copy it into the file
            # (secure_delete overwrote the text there) and empty the log. If a reader
            # holds it back, the next checkpoint does it.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            gone = replace(msg, text="", deleted=True, rev=rev, mentions=(), mention_all=None)
            return replace(gone, reactions=(), attachment=None), True

        return await self._run(delete)

    async def edit(
        self,
        room: str,
        msg_id: int,
        text: str,
        mentions: tuple[str, ...] = (),
        mention_all: str | None = None,
    ) -> tuple[Message, bool] | None:
        def edit(conn: sqlite3.Connection) -> tuple[Message, bool] | None:
            with _locked(conn):
                msg = _get(conn, room, msg_id)
                if msg is None or msg.deleted or msg.text == text:
                    return None if msg is None else (msg, False)
                rev, ts = _next_rev(conn, room), now_ms()
                conn.execute(
                    "INSERT INTO message_edits (room, id, rev, ts, text) VALUES (?, ?, ?, ?, ?)",
                    (room, msg_id, rev, ts, msg.text),
                )
                conn.execute(
                    "UPDATE messages SET text=?, rev=?, edited=?, mentions=?, mention_all=? "
                    "WHERE room=? AND id=?",
                    (text, rev, ts, " ".join(mentions) or None, mention_all, room, msg_id),
                )
                conn.execute("DELETE FROM mentions WHERE room=? AND id=?", (room, msg_id))
                conn.executemany(
                    "INSERT INTO mentions (account_id, room, id) VALUES (?, ?, ?)",
                    [(a, room, msg_id) for a in mentions if a != msg.user_id],
                )
            edited = replace(msg, text=text, rev=rev, edited=ts, mentions=mentions)
            return replace(edited, mention_all=mention_all), True

        return await self._run(edit)

    async def edits(self, room: str, msg_id: int) -> list[Edit]:
        def edits(conn: sqlite3.Connection) -> list[Edit]:
            rows = conn.execute(
                "SELECT ts, text FROM message_edits WHERE room=? AND id=? ORDER BY rev",
                (room, msg_id),
            ).fetchall()
            return [Edit(ts, text) for ts, text in rows]

        return await self._run(edits)

    async def react(
        self, room: str, msg_id: int, emoji: str, user_id: str, add: bool | None
    ) -> tuple[Message, bool] | None:
        def react(conn: sqlite3.Connection) -> tuple[Message, bool] | None:
            with _locked(conn):
                msg = _get(conn, room, msg_id)
                if msg is None or msg.deleted:
                    return None if msg is None else (msg, False)
                now = reactions.toggle(msg.reactions, emoji, user_id, add)
                if now is None:
                    return msg, False
                rev = _next_rev(conn, room)
                conn.execute(
                    "UPDATE messages SET reactions=?, rev=? WHERE room=? AND id=?",
                    (reactions.encode(now), rev, room, msg_id),
                )
            return replace(msg, reactions=now, rev=rev), True

        return await self._run(react)

    async def file(self, file_id: str) -> tuple[str, Attachment] | None:
        def find(conn: sqlite3.Connection) -> tuple[str, Attachment] | None:
            row = conn.execute(
                "SELECT m.room, m.attachment, f.uploader FROM files f "
                "JOIN messages m ON m.room = f.room AND m.id = f.msg_id WHERE f.id = ?",
                (file_id,),
            ).fetchone()
            found = Attachment.decode(row[1]) if row is not None else None
            return None if found is None else (row[0], replace(found, uploader=row[2]))

        return await self._run(find)

    async def uploaded(self, uploader: str, since: int) -> int:
        def total(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM files WHERE uploader = ? AND ts >= ?",
                (uploader, since),
            ).fetchone()
            return int(row[0])

        return await self._run(total)

    async def referenced(self, digests: Sequence[str]) -> set[str]:
        def used(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(digests), _IN_CHUNK):
                chunk = list(digests[i : i + _IN_CHUNK])
                marks = ",".join("?" * len(chunk))
                for column in ("sha256", "thumb"):
                    rows = conn.execute(
                        f"SELECT DISTINCT {column} FROM files WHERE {column} IN ({marks})", chunk
                    ).fetchall()
                    found.update(r[0] for r in rows)
            return found

        return await self._run(used)

    async def index(self) -> int:
        """Index for search what was committed since the last time (a batch at most)."""
        return await self._run(_index)

    async def search(
        self, query: Query, account_id: str | None, limit: int, offset: int
    ) -> list[Message]:
        terms = [f'"{w}"' for w in query.words] + [f'"{" ".join(p)}"' for p in query.phrases]
        where = [_READABLE]
        args: list[Any] = [" ".join(terms), account_id]
        if query.sender is not None:
            where.append("(m.handle = ? COLLATE NOCASE OR m.name = ? COLLATE NOCASE)")
            args += [query.sender, query.sender]
        if query.room is not None:
            where.append("m.room = ?")
            args.append(query.room)
        if query.after is not None:
            where.append("m.ts >= ?")
            args.append(query.after)
        if query.before is not None:
            where.append("m.ts < ?")
            args.append(query.before)

        # Unfiltered, only the newest matches are ranked (search.RANKED): a word in every
        # tenth message would otherwise cost a score for each of them.
        newest = "" if query.filtered() else f"ORDER BY rowid DESC LIMIT {RANKED}"

        def search(conn: sqlite3.Connection) -> list[Message]:
            while _index(conn) >= INDEX_BATCH:  # what was committed before the search
                pass
            rows = conn.execute(
                f"WITH hits AS (SELECT rowid, bm25(messages_fts) AS score FROM messages_fts "
                f"WHERE messages_fts MATCH ? {newest}) "
                f"SELECT {_M_COLUMNS} FROM hits f "
                "JOIN search_rows s ON s.rowid = f.rowid "
                "JOIN messages m ON m.room = s.room AND m.id = s.id "
                f"WHERE {' AND '.join(where)} "
                "ORDER BY f.score, m.ts DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            return [_row(r) for r in rows]

        return await self._run(search)

    async def last_rev(self, room: str) -> int:
        def last(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT last_rev FROM rooms WHERE room=?", (room,)).fetchone()
            return int(row[0]) if row is not None else 0

        return await self._run(last)

    async def changes(self, room: str, after: int, upto: int, limit: int) -> list[Message]:
        def changed(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE room=? AND rev>? AND rev<=? "
                "ORDER BY rev LIMIT ?",
                (room, after, upto, limit),
            ).fetchall()
            return [_row(r) for r in rows]

        return await self._run(changed)

    async def expire(self, room: str, before_ts: int) -> int:
        def expire(conn: sqlite3.Connection) -> int:
            # The room's rows only (its primary key range), one transaction per room: the
            # write lock is never held for long.
            with _locked(conn):
                gone = conn.execute(
                    "DELETE FROM messages WHERE room=? AND ts<?", (room, before_ts)
                ).rowcount
                if gone:
                    # Ids grow with time: what is left starts after the last one gone.
                    for table, column in (
                        ("mentions", "id"),
                        ("message_edits", "id"),
                        ("files", "msg_id"),
                    ):
                        conn.execute(
                            f"DELETE FROM {table} WHERE room=? AND {column} < "
                            "(SELECT COALESCE(MIN(id), 1 << 62) FROM messages WHERE room=?)",
                            (room, room),
                        )
            return int(gone)

        return await self._run(expire)

    async def retention(self) -> dict[str, float]:
        def rooms(conn: sqlite3.Connection) -> dict[str, float]:
            return dict(conn.execute("SELECT room, days FROM room_retention").fetchall())

        return await self._run(rooms)

    async def set_retention(self, room: str, days: float | None, entry: LogEntry) -> None:
        def change(conn: sqlite3.Connection) -> None:
            with _locked(conn):
                if days is None:
                    conn.execute("DELETE FROM room_retention WHERE room=?", (room,))
                else:
                    conn.execute(
                        "INSERT INTO room_retention (room, days) VALUES (?, ?) "
                        "ON CONFLICT (room) DO UPDATE SET days=excluded.days",
                        (room, days),
                    )
                _log(conn, entry)

        await self._run(change)

    async def restore(self, room: str, messages: Sequence[Message]) -> None:
        def restore(conn: sqlite3.Connection) -> None:
            with _locked(conn):
                if conn.execute("SELECT 1 FROM rooms WHERE room=?", (room,)).fetchone():
                    raise StoreError(f"#{room} has history already")
                conn.executemany(
                    "INSERT INTO messages (room, id, name, text, ts, user_id, handle, bot, "
                    "rev, deleted, mentions, mention_all, edited, reactions, reply_to, "
                    "attachment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            room,
                            m.id,
                            m.name,
                            m.text,
                            m.ts,
                            m.user_id,
                            m.handle,
                            int(m.bot),
                            m.rev,
                            int(m.deleted),
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
                        _insert_file(conn, room, m.id, m.ts, m.attachment)
                conn.executemany(
                    "INSERT INTO mentions (account_id, room, id) VALUES (?, ?, ?)",
                    [(a, room, m.id) for m in messages for a in m.mentions if a != m.user_id],
                )
                if messages:
                    conn.execute(
                        "INSERT INTO rooms (room, last_id, last_ts, last_rev) VALUES (?, ?, ?, ?)",
                        (room, messages[-1].id, messages[-1].ts, max(m.rev for m in messages)),
                    )

        await self._run(restore)

    # -- an account's rooms -------------------------------------------------------------------

    async def set_read(self, account_id: str, room: str, msg_id: int) -> int:
        def mark(conn: sqlite3.Connection) -> int:
            with _locked(conn):
                row = conn.execute("SELECT last_id FROM rooms WHERE room=?", (room,)).fetchone()
                upto = min(msg_id, row[0] if row is not None else 0)
                conn.execute(_READ_UPTO, (account_id, room, upto))
                (read,) = conn.execute(
                    "SELECT last_read FROM room_state WHERE account_id=? AND room=?",
                    (account_id, room),
                ).fetchone()
            return int(read)

        return await self._run(mark)

    async def room_states(self, account_id: str) -> list[RoomState]:
        def states(conn: sqlite3.Connection) -> list[RoomState]:
            rows = conn.execute(_ROOM_STATES, (account_id,)).fetchall()
            return [RoomState(*row) for row in rows]

        return await self._run(states)

    async def remove_room_state(self, account_id: str, room: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "DELETE FROM room_state WHERE account_id=? AND room=?", (account_id, room)
                ).rowcount
                > 0
            )

        return await self._run(remove)

    # -- accounts --------------------------------------------------------------------------------

    async def add_account(
        self, account: Account, keys: Sequence[str], password_hash: str | None
    ) -> None:
        def add(conn: sqlite3.Connection) -> None:
            with _locked(conn):
                _insert_account(conn, account, keys, password_hash)

        await self._run(add)

    async def find_account(self, key: str) -> tuple[Account, str | None] | None:
        def find(conn: sqlite3.Connection) -> tuple[Account, str | None] | None:
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS}, password FROM accounts "
                "WHERE id = (SELECT account_id FROM handle_keys WHERE key=?)",
                (key,),
            ).fetchone()
            return None if row is None else (_account(row), row[5])

        # On the event loop when it can: a guest's connect asks whether its name is taken.
        return await self._read_at_once(find)

    async def find_accounts(self, keys: Sequence[str]) -> list[Account]:
        if not keys:
            return []

        def find(conn: sqlite3.Connection) -> list[Account]:
            marks = ",".join("?" * len(keys))
            rows = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id IN "
                f"(SELECT account_id FROM handle_keys WHERE key IN ({marks}))",
                tuple(keys),
            ).fetchall()
            return list(map(_account, rows))

        return await self._run(find)

    async def list_accounts(self) -> list[Account]:
        def accounts(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts").fetchall()
            return sorted(map(_account, rows), key=lambda a: (a.handle.casefold(), a.handle))

        return await self._run(accounts)

    async def _update(self, sql: str, args: tuple[Any, ...]) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, args).rowcount > 0

        return await self._run(update)

    async def set_password(self, account_id: str, password_hash: str | None) -> bool:
        return await self._update(
            "UPDATE accounts SET password=? WHERE id=?", (password_hash, account_id)
        )

    async def set_role(self, account_id: str, role: str) -> bool:
        return await self._update("UPDATE accounts SET role=? WHERE id=?", (role, account_id))

    async def remove_account(self, account_id: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            with _locked(conn):
                conn.execute("DELETE FROM sessions WHERE account_id=?", (account_id,))
                conn.execute("DELETE FROM handle_keys WHERE account_id=?", (account_id,))
                removed = conn.execute("DELETE FROM accounts WHERE id=?", (account_id,)).rowcount
            return removed > 0

        return await self._run(remove)

    # -- sign-ins --------------------------------------------------------------------------------

    async def add_sign_in(self, sign_in: SignIn, token_hash: str) -> None:
        def add(conn: sqlite3.Connection) -> None:
            with _locked(conn):
                exists = conn.execute(
                    "SELECT 1 FROM accounts WHERE id=?", (sign_in.account_id,)
                ).fetchone()
                if exists is None:
                    raise StoreError("the account is gone")
                conn.execute(
                    f"INSERT INTO sessions (token_hash, {_SIGN_IN_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        token_hash,
                        sign_in.id,
                        sign_in.account_id,
                        sign_in.created,
                        sign_in.expires,
                        sign_in.address,
                        sign_in.agent,
                    ),
                )

        await self._run(add)

    async def find_sign_in(self, token_hash: str, now: int) -> tuple[SignIn, Account] | None:
        columns = ", ".join(f"s.{c.strip()}" for c in _SIGN_IN_COLUMNS.split(","))
        account_columns = ", ".join(f"a.{c.strip()}" for c in _ACCOUNT_COLUMNS.split(","))

        def find(conn: sqlite3.Connection) -> tuple[SignIn, Account] | None:
            row = conn.execute(
                f"SELECT {columns}, {account_columns} FROM sessions s "
                "JOIN accounts a ON a.id = s.account_id WHERE s.token_hash=? AND s.expires>?",
                (token_hash, now),
            ).fetchone()
            return None if row is None else (_sign_in(row), _account(row[6:]))

        return await self._run(find)

    async def list_sign_ins(self, account_id: str, now: int) -> list[SignIn]:
        def signed_in(conn: sqlite3.Connection) -> list[SignIn]:
            rows = conn.execute(
                f"SELECT {_SIGN_IN_COLUMNS} FROM sessions WHERE account_id=? AND expires>? "
                "ORDER BY created DESC, id",
                (account_id, now),
            ).fetchall()
            return [_sign_in(r) for r in rows]

        return await self._run(signed_in)

    # -- invites ---------------------------------------------------------------------------------

    async def has_admin(self) -> bool:
        def admin(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM accounts WHERE role='admin'").fetchone() is not None

        return await self._run(admin)

    async def add_invite(self, invite: Invite, token_hash: str) -> None:
        def add(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM invites WHERE expires<=?", (invite.created,))
            conn.execute(
                f"INSERT INTO invites (token_hash, {_INVITE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token_hash,
                    invite.id,
                    invite.role,
                    int(invite.claim),
                    invite.created,
                    invite.expires,
                    invite.created_by,
                ),
            )

        await self._run(add)

    async def find_invite(self, token_hash: str, now: int) -> Invite | None:
        return await self._run(lambda conn: _usable_invite(conn, token_hash, now))

    async def redeem_invite(
        self,
        token_hash: str,
        now: int,
        account: Account,
        keys: Sequence[str],
        password_hash: str | None,
    ) -> None:
        def redeem(conn: sqlite3.Connection) -> None:
            with _locked(conn):
                if _usable_invite(conn, token_hash, now) is None:
                    raise InviteInvalid()
                _insert_account(conn, account, keys, password_hash)
                conn.execute(
                    "UPDATE invites SET used_by=? WHERE token_hash=?", (account.id, token_hash)
                )

        await self._run(redeem)

    # -- moderation ------------------------------------------------------------------------------

    async def add_ban(self, ban: Ban, entry: LogEntry) -> None:
        def add(conn: sqlite3.Connection) -> None:
            with _locked(conn):
                conn.execute(
                    "INSERT INTO bans (id, kind, target, until, reason, created, created_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        ban.id,
                        ban.kind,
                        ban.target,
                        ban.until,
                        ban.reason,
                        ban.created,
                        ban.created_by,
                    ),
                )
                _log(conn, entry)

        await self._run(add)

    async def remove_ban(self, ban_id: str, entry: LogEntry) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            with _locked(conn):
                removed = conn.execute("DELETE FROM bans WHERE id=?", (ban_id,)).rowcount > 0
                if removed:
                    _log(conn, entry)
            return removed

        return await self._run(remove)

    async def log_action(self, entry: LogEntry) -> None:
        await self._run(lambda conn: _log(conn, entry))

    async def bans(self, now: int) -> list[Ban]:
        def bans(conn: sqlite3.Connection) -> list[Ban]:
            rows = conn.execute(
                "SELECT id, kind, target, until, reason, created, created_by FROM bans "
                "WHERE until=0 OR until>? ORDER BY created DESC, id",
                (now,),
            ).fetchall()
            return [Ban(*row) for row in rows]

        return await self._run(bans)

    async def mod_log(self, limit: int, before: int | None = None) -> list[LogEntry]:
        def entries(conn: sqlite3.Connection) -> list[LogEntry]:
            rows = conn.execute(
                "SELECT ts, actor, action, target, detail FROM mod_log WHERE ts<? "
                "ORDER BY seq DESC LIMIT ?",
                (before if before is not None else 2**62, limit),
            ).fetchall()
            return [LogEntry(*row) for row in rows]

        return await self._run(entries)

    async def set_private(
        self,
        room: str,
        private: bool,
        entry: LogEntry,
        members: Sequence[tuple[str, LogEntry]] = (),
    ) -> bool:
        def change(conn: sqlite3.Connection) -> bool:
            with _locked(conn):
                if private:
                    changed = (
                        conn.execute(
                            "INSERT INTO private_rooms (room) VALUES (?) ON CONFLICT DO NOTHING",
                            (room,),
                        ).rowcount
                        > 0
                    )
                else:
                    changed = (
                        conn.execute("DELETE FROM private_rooms WHERE room=?", (room,)).rowcount > 0
                    )
                    conn.execute("DELETE FROM room_members WHERE room=?", (room,))
                if changed:
                    _log(conn, entry)
                for account_id, added in members if private else ():
                    _set_member(conn, room, account_id, True, added)
            return changed

        return await self._run(change)

    async def add_dm(self, room: str, account_ids: Sequence[str]) -> bool:
        def add(conn: sqlite3.Connection) -> bool:
            with _locked(conn):
                made = conn.execute(
                    "INSERT INTO private_rooms (room) VALUES (?) ON CONFLICT DO NOTHING", (room,)
                ).rowcount
                if made:
                    conn.executemany(
                        "INSERT INTO room_members (room, account_id) VALUES (?, ?)",
                        [(room, a) for a in account_ids],
                    )
                    conn.executemany(
                        "INSERT INTO room_state (account_id, room, last_read) VALUES (?, ?, 0) "
                        "ON CONFLICT DO NOTHING",
                        [(a, room) for a in account_ids],
                    )
            return made > 0

        return await self._run(add)

    async def set_member(self, room: str, account_id: str, member: bool, entry: LogEntry) -> bool:
        def change(conn: sqlite3.Connection) -> bool:
            with _locked(conn):
                return _set_member(conn, room, account_id, member, entry)

        return await self._run(change)

    async def private_rooms(self) -> dict[str, set[str]]:
        def rooms(conn: sqlite3.Connection) -> dict[str, set[str]]:
            found: dict[str, set[str]] = {
                room: set() for (room,) in conn.execute("SELECT room FROM private_rooms")
            }
            for room, account_id in conn.execute("SELECT room, account_id FROM room_members"):
                if room in found:
                    found[room].add(account_id)
            return found

        return await self._run(rooms)

    async def live_sign_ins(self, ids: Sequence[str], now: int) -> set[str]:
        wanted = list(ids)

        def live(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT id FROM sessions WHERE id IN ({marks}) AND expires>?", [*chunk, now]
                ).fetchall()
                found.update(row[0] for row in rows)
            return found

        return await self._run(live) if wanted else set()

    async def remove_sign_ins(
        self, account_id: str, ids: Sequence[str] | None = None, now: int = 0
    ) -> int:
        def remove(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM sessions WHERE expires<=?", (now,))
            if ids is None:
                cursor = conn.execute("DELETE FROM sessions WHERE account_id=?", (account_id,))
                return cursor.rowcount
            removed = 0
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = list(ids[start : start + _IN_CHUNK])
                marks = ",".join("?" * len(chunk))
                removed += conn.execute(
                    f"DELETE FROM sessions WHERE account_id=? AND id IN ({marks})",
                    [account_id, *chunk],
                ).rowcount
            return removed

        return await self._run(remove)
