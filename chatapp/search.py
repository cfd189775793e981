"""Search: what a person types (words, "a phrase", from:, in:, before:, after:) read into a
:class:`Query` every store answers the same way, and the snippet that shows why a message
was found.

The stores match words whole, without case (SQLite also without accents), all of them
in each message found; the best matches come first. Only what the person may read is
searched: public rooms, and the private rooms and direct conversations they belong to.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from .jsoncodec import encoded_size
from .protocol import MAX_PAGE_BYTES, ProtocolError, parse_room
from .store import Message, MessageStore

log = logging.getLogger(__name__)

#: Messages one round of indexing covers at most (the SQLite store's batch): a round that
#: covered as many goes on at once.
INDEX_BATCH_HINT = 20_000
#: The longest search, in characters.
MAX_QUERY = 200
#: Words and phrases of one search.
MAX_TERMS = 10
#: Results a search answers with at a time, and how deep it pages.
MAX_LIMIT = 50
DEFAULT_LIMIT = 20
MAX_OFFSET = 500
#: Without a filter, the newest matches ranked (best first) when there are more: a word
#: in every other message is not scored a million times. Filters narrow the matches
#: before they are ranked, so with one every match is.
RANKED = 2000
#: Characters of text around the first match in a snippet.
SNIPPET = 160

#: A word as the stores' tokenizers see it: letters, digits, marks (and what joins them
#: inside a word: an apostrophe is a separator there too, so it is one here).
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: A term: ``key:value`` (a filter, if ``key`` is one), ``"a phrase"`` or a word.
_TERM = re.compile(r'(?:(\w+):)?(?:"([^"]*)"?|(\S+))', re.UNICODE)
_FILTERS = ("from", "in", "before", "after")


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search: every one of ``words`` and of ``phrases`` (each a tuple of words
    in order) in a message's text, and the filters."""

    words: tuple[str, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()
    #: A sender: an account's handle, or a name (any case).
    sender: str | None = None
    room: str | None = None
    #: Epoch milliseconds: ``after <= ts < before``.
    after: int | None = None
    before: int | None = None

    def filtered(self) -> bool:
        """Whether a filter (sender, room, dates) narrows the matches."""
        return any(f is not None for f in (self.sender, self.room, self.after, self.before))

    def terms(self) -> list[str]:
        """Every word searched for, for the snippet."""
        return [*self.words, *(w for p in self.phrases for w in p)]


def words_of(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(unicodedata.normalize("NFC", text))]


def _day(value: str, what: str) -> int:
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise ProtocolError(f"invalid search: {what}: must be a date, YYYY-MM-DD") from None
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp())


def parse_query(text: Any, room: Any = None) -> Query:
    """Read a search; ProtocolError with what is wrong. ``room`` (the API's parameter) is
    the same as ``in:room``."""
    if not isinstance(text, str):
        raise ProtocolError("invalid search: q must be a string")
    if len(text) > MAX_QUERY:
        raise ProtocolError(f"invalid search: at most {MAX_QUERY} characters")
    words: list[str] = []
    phrases: list[tuple[str, ...]] = []
    found: dict[str, str] = {}
    for match in _TERM.finditer(text):
        key, quoted, bare = match.groups()
        if key is not None and key.lower() in _FILTERS and bare is not None:
            found[key.lower()] = bare
            continue
        raw = quoted if quoted is not None else match.group(0)
        parts = words_of(raw)
        if quoted is not None and len(parts) > 1:
            phrases.append(tuple(parts))
        else:
            words.extend(w for w in parts if w not in words)
    if room is not None:
        found["in"] = room
    if len(words) + len(phrases) > MAX_TERMS:
        raise ProtocolError(f"invalid search: at most {MAX_TERMS} words and phrases")
    if not words and not phrases:
        raise ProtocolError("invalid search: search for at least one word")
    sender = found.get("from")
    if sender is not None:
        sender = sender.removeprefix("@")
    try:
        in_room = parse_room(found["in"].removeprefix("#")) if "in" in found else None
    except ProtocolError as exc:
        raise ProtocolError(f"invalid search: in: {exc}") from None
    after = _day(found["after"], "after") * 1000 if "after" in found else None
    before = _day(found["before"], "before") * 1000 if "before" in found else None
    return Query(tuple(words), tuple(phrases), sender, in_room, after, before)


def parse_paging(limit: Any, offset: Any) -> tuple[int, int]:
    """``limit`` (1-50, default 20) and ``offset`` (0-500) of a search."""
    if limit is None:
        limit = DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ProtocolError(f"invalid limit: must be an integer 1-{MAX_LIMIT}")
    offset = offset or 0
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise ProtocolError(f"invalid offset: must be an integer 0-{MAX_OFFSET}")
    return limit, offset


def snippet(text: str, terms: list[str]) -> list[list[Any]]:
    """Up to :data:`SNIPPET` characters of ``text`` around its first match, as
    ``[[text, matched], ...]`` pieces (text to show as text, never markup)."""
    wanted = set(terms)
    hits = [
        (m.start(), m.end())
        for m in _WORD.finditer(text)
        if unicodedata.normalize("NFC", m.group()).casefold() in wanted
    ]
    start = max(0, hits[0][0] - SNIPPET // 3) if hits else 0
    end = min(len(text), start + SNIPPET)
    pieces: list[list[Any]] = [["…", False]] if start else []
    at = start
    for s, e in hits:
        if s < at or e > end:
            continue
        if s > at:
            pieces.append([text[at:s], False])
        pieces.append([text[s:e], True])
        at = e
    if at < end:
        pieces.append([text[at:end], False])
    if end < len(text):
        pieces.append(["…", False])
    return pieces


#: Seconds between two rounds of indexing what was committed.
INDEX_EVERY = 1.0


async def keep_indexing(store: MessageStore) -> None:
    """Index new messages for search every :data:`INDEX_EVERY` seconds, for ever."""
    while True:
        await asyncio.sleep(INDEX_EVERY)
        try:
            while await store.index() >= INDEX_BATCH_HINT:
                pass
        except Exception:
            log.exception("search: indexing failed; trying again in a second")


async def search(
    store: MessageStore, account_id: str | None, q: Any, room: Any, limit: Any, offset: Any
) -> dict[str, Any]:
    """A search's answer for ``account_id`` (None: a guest): ``{results: [{message,
    snippet}], has_more}``, best first, within :data:`protocol.MAX_PAGE_BYTES` of JSON;
    ProtocolError for a bad request."""
    query = parse_query(q, room)
    limit, offset = parse_paging(limit, offset)
    found = await store.search(query, account_id, limit + 1, offset)
    return _answer(found, limit, query.terms())


def _answer(found: list[Message], limit: int, terms: list[str]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    total = 2
    for msg in found[:limit]:
        result = {"message": msg.to_dict(), "snippet": snippet(msg.text, terms)}
        total += encoded_size(result) + 1
        if total > MAX_PAGE_BYTES:
            return {"results": results, "has_more": True}
        results.append(result)
    return {"results": results, "has_more": len(found) > limit}
