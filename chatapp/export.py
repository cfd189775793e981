"""``python -m chatapp export`` and ``import``: history as JSON Lines, one message a line.

Export writes a room's history, or every room's, oldest first per room:
``{"room", "id", "name", "text", "ts", "user_id", "handle", "bot", "rev", "deleted"}``
and, when it has them, ``mentions``, ``mention_all``, ``edited``, ``reactions``,
``reply_to`` and ``file`` (with where its bytes are: ``sha256`` and the thumbnail's
``thumb``; the files themselves stay in the files directory, to copy along). A deleted
message is a tombstone: no text, ``deleted: true``. What an edited message said before
its edits is not exported (a database backup keeps it). Import puts such a file
back into rooms that have no history yet (a new database, or another server's), keeping
every id and time, one transaction per room: a room is imported whole or not at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import IO

import orjson

from . import protocol
from .mentions import EVERYONE, MAX_MENTIONS
from .protocol import ProtocolError
from .settings import add_flags, settings_from
from .store import Attachment, Message, MessageStore, StoreError, open_store
from .store.reactions import MAX_KINDS, MAX_REACTIONS, Reactions

EXIT_REFUSED = 1
EXIT_ERROR = 2
#: Messages read from the store at a time.
CHUNK = 1000
#: Rooms listed from the store at a time.
ROOMS_PAGE = 100


class BadImport(ValueError):
    """A line of an import file that is not a message; ``str(exc)`` says where and why."""


async def all_rooms(store: MessageStore) -> list[str]:
    rooms: list[str] = []
    after: tuple[int, str] | None = None
    while True:
        page = await store.active_rooms(ROOMS_PAGE, after)
        rooms.extend(r.room for r in page)
        if len(page) < ROOMS_PAGE:
            return sorted(rooms)
        after = (page[-1].last_ts, page[-1].room)


async def messages_of(store: MessageStore, room: str) -> AsyncIterator[Message]:
    last = await store.last_id(room)
    after = 0
    while after < last:
        chunk = await store.range(room, after, min(after + CHUNK, last))
        for msg in chunk:
            yield msg
        after += CHUNK


def _line(msg: Message) -> bytes:
    data = msg.to_dict()
    if msg.attachment is not None:
        data["file"] |= {"sha256": msg.attachment.sha256, "thumb": msg.attachment.thumb}
    data.setdefault("handle", None)
    data.setdefault("bot", False)
    data.setdefault("rev", 0)
    data.setdefault("deleted", False)
    return orjson.dumps(data) + b"\n"


async def export(store: MessageStore, rooms: Sequence[str], out: IO[bytes]) -> int:
    """Write the history of ``rooms``; the number of messages written."""
    count = 0
    for room in rooms:
        async for msg in messages_of(store, room):
            out.write(_line(msg))
            count += 1
    out.flush()
    return count


def parse_line(raw: bytes, number: int) -> Message:
    """A message of an import file; BadImport naming the line otherwise."""
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ProtocolError("not a JSON object")
        room = protocol.parse_room(data.get("room"))
        name = protocol.parse_name(data.get("name"))
        text, deleted = data.get("text"), data.get("deleted", False)
        if not isinstance(deleted, bool):
            raise ProtocolError("deleted must be true or false")
        if not isinstance(text, str):
            raise ProtocolError("text must be a string")
        if deleted and text:
            raise ProtocolError("a deleted message has no text")
        if not deleted and not 1 <= len(text) <= protocol.MAX_TEXT:
            raise ProtocolError(f"text must be 1-{protocol.MAX_TEXT} characters")
        rev = data.get("rev", 0)
        if not (isinstance(rev, int) and 0 <= rev <= protocol.MAX_ID) or (deleted and not rev):
            raise ProtocolError("rev must be a change number (a deleted message has one)")
        ident, ts = data.get("id"), data.get("ts")
        if not (isinstance(ident, int) and 1 <= ident <= protocol.MAX_ID):
            raise ProtocolError("id must be a message id")
        if not (isinstance(ts, int) and 0 <= ts < 2**53):
            raise ProtocolError("ts must be epoch milliseconds")
        user_id, handle, bot = data.get("user_id"), data.get("handle"), data.get("bot", False)
        if not (user_id is None or (isinstance(user_id, str) and len(user_id) <= 64)):
            raise ProtocolError("user_id must be a string or null")
        if not (handle is None or (isinstance(handle, str) and len(handle) <= 64)):
            raise ProtocolError("handle must be a string or null")
        if not isinstance(bot, bool):
            raise ProtocolError("bot must be true or false")
        mentions, mention_all = data.get("mentions", []), data.get("mention_all")
        if not (
            isinstance(mentions, list)
            and len(mentions) <= MAX_MENTIONS
            and all(isinstance(m, str) and 0 < len(m) <= 64 and " " not in m for m in mentions)
        ):
            raise ProtocolError("mentions must be a list of account ids")
        if mention_all not in (None, *EVERYONE):
            raise ProtocolError("mention_all must be null, room or here")
        edited, reply_to = data.get("edited"), data.get("reply_to")
        if not (edited is None or (isinstance(edited, int) and 0 <= edited < 2**53)):
            raise ProtocolError("edited must be epoch milliseconds or null")
        if not (reply_to is None or (isinstance(reply_to, int) and 1 <= reply_to < ident)):
            raise ProtocolError("reply_to must be the id of an earlier message, or null")
        reactions = _reactions(data.get("reactions", []))
        attachment = _attachment(data.get("file"))
    except (orjson.JSONDecodeError, ProtocolError) as exc:
        raise BadImport(f"line {number}: {exc}") from None
    return Message(
        ident,
        room,
        name,
        text,
        ts,
        user_id,
        handle,
        bot,
        rev,
        deleted,
        tuple(mentions),
        mention_all,
        edited,
        reactions,
        reply_to,
        attachment,
    )


_DIGEST = re.compile(r"[0-9a-f]{64}")


def _attachment(value: object) -> Attachment | None:
    """The ``file`` of an exported message, as export writes it."""
    if value is None:
        return None
    rule = "file must be {id, name, type, size, sha256, width?, height?, thumb?}"
    if not isinstance(value, dict):
        raise ProtocolError(rule)
    ident, name, kind, size = (value.get(k) for k in ("id", "name", "type", "size"))
    digest, thumb = value.get("sha256"), value.get("thumb")
    width, height = value.get("width"), value.get("height")
    if not (
        isinstance(ident, str)
        and 0 < len(ident) <= 64
        and isinstance(name, str)
        and 0 < len(name) <= 255
        and isinstance(kind, str)
        and 0 < len(kind) <= 100
        and isinstance(size, int)
        and size > 0
        and isinstance(digest, str)
        and _DIGEST.fullmatch(digest)
        and (thumb is None or (isinstance(thumb, str) and _DIGEST.fullmatch(thumb)))
        and all(d is None or (isinstance(d, int) and d > 0) for d in (width, height))
    ):
        raise ProtocolError(rule)
    return Attachment(ident, name, kind, size, digest, width, height, thumb)


def _reactions(value: object) -> Reactions:
    """The ``reactions`` of an exported message: ``[{emoji, users}]`` (``count`` is
    ``len(users)``)."""
    rule = "reactions must be a list of {emoji, users: [user_id]}"
    if not isinstance(value, list) or len(value) > MAX_KINDS:
        raise ProtocolError(rule)
    found: list[tuple[str, tuple[str, ...]]] = []
    for item in value:
        users = item.get("users") if isinstance(item, dict) else None
        if not (
            isinstance(users, list)
            and users
            and all(isinstance(u, str) and 0 < len(u) <= 64 for u in users)
        ):
            raise ProtocolError(rule)
        found.append((protocol.parse_emoji(item.get("emoji")), tuple(users)))
    if sum(len(u) for _, u in found) > MAX_REACTIONS:
        raise ProtocolError(f"a message takes at most {MAX_REACTIONS} reactions")
    return tuple(found)


async def import_(store: MessageStore, lines: IO[bytes], say: Callable[[str], None]) -> int:
    """Read a whole export, check it, then restore room after room; messages imported."""
    rooms: dict[str, list[Message]] = {}
    for number, raw in enumerate(lines, 1):
        if raw.strip():
            msg = parse_line(raw, number)
            rooms.setdefault(msg.room, []).append(msg)
    for room, messages in rooms.items():
        ids = [m.id for m in messages]
        if ids != list(range(1, len(ids) + 1)):
            raise BadImport(f"#{room}: ids must count 1, 2, 3... in the file's order")
    busy = [room for room in rooms if await store.last_id(room)]
    if busy:
        raise BadImport(f"rooms with history already: {', '.join(sorted(busy))}")
    count = 0
    for room, messages in sorted(rooms.items()):
        await store.restore(room, messages)
        say(f"#{room}: {len(messages)} messages")
        count += len(messages)
    return count


def main(argv: Sequence[str], prog: str, command: str) -> int:
    """``export`` or ``import``: the exit status."""
    parser = argparse.ArgumentParser(
        prog=prog,
        argument_default=argparse.SUPPRESS,
        description=(
            "Write the history of --db (or CHATAPP_DB) as JSON Lines, to PATH or standard "
            "output: every room's, or --room's."
            if command == "export"
            else "Put back history exported as JSON Lines (PATH, or - for standard input) "
            "into rooms that have none yet, keeping ids and times."
        ),
    )
    add_flags(parser, ("db",))
    if command == "export":
        parser.add_argument("--room", action="append", help="only this room (repeatable)")
        parser.add_argument("path", metavar="PATH", nargs="?", default="-")
    else:
        parser.add_argument("path", metavar="PATH")
    args = parser.parse_args(argv)
    settings = settings_from(parser, args, only=("db",))

    async def run(stream: IO[bytes]) -> str:
        store = open_store(settings.db)
        await store.open()
        try:
            if command == "export":
                try:
                    wanted = [protocol.parse_room(r) for r in getattr(args, "room", None) or []]
                except ProtocolError as exc:
                    raise BadImport(str(exc)) from None
                rooms = wanted or await all_rooms(store)
                count = await export(store, rooms, stream)
                return f"exported {count} messages of {len(rooms)} rooms"
            count = await import_(store, stream, print)
            return f"imported {count} messages"
        finally:
            await store.close()

    try:
        if args.path == "-":
            stream = sys.stdout.buffer if command == "export" else sys.stdin.buffer
            summary = asyncio.run(run(stream))
        else:
            with open(args.path, "xb" if command == "export" else "rb") as file:
                try:
                    summary = asyncio.run(run(file))
                except BaseException:
                    if command == "export":  # no half-written export left behind
                        os.unlink(args.path)
                    raise
    except (BadImport, FileExistsError, FileNotFoundError) as exc:
        reason = f"{exc.filename!r} exists already" if isinstance(exc, FileExistsError) else exc
        print(f"{prog}: error: {reason}", file=sys.stderr)
        return EXIT_REFUSED
    except StoreError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(summary, file=sys.stderr)
    return 0
