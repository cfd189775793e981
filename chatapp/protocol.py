"""Validation of everything a client sends, with the error texts the protocol documents.

Every function here takes untrusted, already JSON-decoded data and either returns a clean
value or raises :class:`ProtocolError` whose message is safe to send back to the client.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any, TypeGuard

DEFAULT_ROOM = "lobby"
MAX_NAME = 32
MAX_TEXT = 2000
MAX_CLIENT_ID = 64
WELCOME_HISTORY = 50
CATCH_UP_LIMIT = 500
#: Changes to earlier messages a reconnecting client's welcome carries; past this (or
#: past MAX_PAGE_BYTES) the client is told to start over from the newest messages.
CHANGES_CATCH_UP_LIMIT = 500
HISTORY_DEFAULT = 50
HISTORY_MAX = 100
#: The most bytes of messages (as JSON) one ``welcome``, ``history`` answer or API page
#: carries; past it the page holds fewer messages and says ``has_more``. Far above the
#: largest single message (2000 characters, at most ~12 KB of JSON when every one is
#: escaped), so every page carries at least a dozen.
MAX_PAGE_BYTES = 256 * 1024
#: Ids, ``since`` and ``before`` above this (the largest integer a JavaScript client holds
#: exactly) are treated as this: no room ever gets that far.
MAX_ID = 2**53 - 1
#: A browser's secret identity key (``auth.key``): the guest id is derived from it.
KEY_RULE = "invalid key: must be 16-128 characters of A-Z a-z 0-9 _ -"
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")

_ROOM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ROOM_RULE = "invalid room name: must be 1-64 of a-z 0-9 _ -, starting with a letter or digit"


class ProtocolError(ValueError):
    """Bad input from a client; ``str(exc)`` is the readable reason sent back."""


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    room: str
    name: str
    since: int | None
    #: The secret ``auth.key``, if any: who is connecting (see :func:`user_id_for`).
    key: str | None
    #: The room's change number the client has seen (``auth.rev``), with ``since``.
    rev: int | None = None


@dataclass(frozen=True, slots=True)
class MessageRequest:
    text: str
    client_id: str | None
    #: The id of the message of the same room it replies to.
    reply_to: int | None = None


def _is_valid_unicode(value: str) -> bool:
    # JSON can carry lone surrogates ("\ud800"); they cannot be stored or re-encoded.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_room(value: Any) -> str:
    """A room name, lowercased; raises ProtocolError unless it matches the documented rule."""
    if not isinstance(value, str):
        raise ProtocolError(ROOM_RULE)
    room = value.lower()
    if not _ROOM_RE.fullmatch(room):
        raise ProtocolError(ROOM_RULE)
    return room


def is_valid_room(value: str) -> bool:
    try:
        parse_room(value)
    except ProtocolError:
        return False
    return True


#: Characters that draw nothing (category Cf: zero-width spaces, direction marks and
#: overrides, the byte order mark, soft hyphens...) are refused in names, except these,
#: which join the characters around them: ZWNJ and ZWJ (emoji sequences, Indic scripts).
_JOINERS = frozenset("\u200c\u200d")
#: Letters and symbols that render as blank space although Unicode calls them visible.
_BLANK_LOOKING = frozenset("\u115f\u1160\u2800\u3164\uffa0")
#: Categories that draw nothing by themselves: a name needs a character outside them.
_NOT_VISIBLE = frozenset({"Cc", "Cf", "Cs", "Mn", "Mc", "Me", "Zs", "Zl", "Zp"})


def _is_tag(c: str) -> bool:
    # Tag characters spell out subdivision flags after a black flag emoji.
    return "\U000e0020" <= c <= "\U000e007f"


def parse_name(value: Any) -> str:
    """A display name: trimmed, NFC-normalised, 1-32 characters that render as what they say.

    No control characters; no characters that draw nothing or reorder the text around
    them (bidi overrides would show "evil admin" as "live admin"), no line or paragraph
    separators; at least one visible character; not starting with a combining mark.
    """
    if not isinstance(value, str):
        raise ProtocolError("invalid name: must be a string")
    if not _is_valid_unicode(value):
        raise ProtocolError("invalid name: must not contain control characters")
    name = unicodedata.normalize("NFC", value.strip())
    if not 1 <= len(name) <= MAX_NAME:
        raise ProtocolError(f"invalid name: must be 1-{MAX_NAME} characters")
    visible = False
    for c in name:
        category = unicodedata.category(c)
        if category == "Cc":
            raise ProtocolError("invalid name: must not contain control characters")
        if category in ("Zl", "Zp") or (category == "Cf" and c not in _JOINERS and not _is_tag(c)):
            raise ProtocolError(
                "invalid name: must not contain invisible or text-direction characters"
            )
        if category not in _NOT_VISIBLE and c not in _BLANK_LOOKING:
            visible = True
    if not visible:
        raise ProtocolError("invalid name: must contain a visible character")
    if unicodedata.category(name[0]) in ("Mn", "Mc", "Me"):
        raise ProtocolError("invalid name: must not start with a combining mark")
    return name


def default_name() -> str:
    return f"guest-{secrets.token_hex(2)}"


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_since(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        raise ProtocolError("invalid since: must be a message id (an integer >= 0)")
    return min(value, MAX_ID)


def parse_rev(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        raise ProtocolError("invalid rev: must be a change number (an integer >= 0)")
    return min(value, MAX_ID)


def parse_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _KEY_RE.fullmatch(value):
        raise ProtocolError(KEY_RULE)
    return value


def user_id_for(key: str | None, name: str) -> str:
    """The public id of whoever holds ``key``, or, without a key, of the name ``name``.

    With a key the id is a one-way digest of it: it is shown with every message, the key
    never is, so nobody can take on someone else's id by knowing it. Without one a client
    is known by its name alone, as before ids existed: its id is a digest of the name
    (``n:``), which every keyless client of that name shares.
    """
    if key is None:
        digest = hashlib.sha256(b"chatapp name id\0" + name.encode()).hexdigest()
        return "n:" + digest[:24]
    return "g:" + hashlib.sha256(b"chatapp guest id\0" + key.encode()).hexdigest()[:24]


def parse_connect(auth: Any) -> ConnectRequest:
    """The ``auth`` object of a connection: ``{room?, name?, since?, rev?, key?}``."""
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise ProtocolError("invalid auth: must be an object {room?, name?, since?}")
    room = parse_room(auth["room"]) if auth.get("room") is not None else DEFAULT_ROOM
    name = parse_name(auth["name"]) if auth.get("name") is not None else default_name()
    return ConnectRequest(
        room=room,
        name=name,
        since=parse_since(auth.get("since")),
        key=parse_key(auth.get("key")),
        rev=parse_rev(auth.get("rev")),
    )


def payload(data: Any, shape: str) -> dict[str, Any]:
    """``data`` if it is an object; ProtocolError naming the ``shape`` expected otherwise."""
    if not isinstance(data, dict):
        raise ProtocolError(f"invalid payload: expected an object {shape}")
    return data


def parse_text(text: Any) -> str:
    """A message's text, as sent (an edit's too)."""
    if not isinstance(text, str):
        raise ProtocolError("invalid text: must be a string")
    # Counted as sent and stored: leading and trailing whitespace included (it is kept,
    # verbatim), so the limit holds for what is stored and delivered.
    if not 1 <= len(text) <= MAX_TEXT or text.isspace():
        raise ProtocolError(f"invalid text: must be 1-{MAX_TEXT} characters")
    if not _is_valid_unicode(text):
        raise ProtocolError("invalid text: not valid Unicode")
    return text


def parse_message(data: Any) -> MessageRequest:
    data = payload(data, "{text, client_id?, reply_to?}")
    text = parse_text(data.get("text"))
    reply_to = data.get("reply_to")
    if reply_to is not None and (not _is_int(reply_to) or not 1 <= reply_to <= MAX_ID):
        raise ProtocolError("invalid reply_to: must be a message id (an integer >= 1)")
    client_id = data.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str)
        or not 1 <= len(client_id) <= MAX_CLIENT_ID
        or not client_id.isprintable()
        or not _is_valid_unicode(client_id)
    ):
        raise ProtocolError(f"invalid client_id: must be a string of 1-{MAX_CLIENT_ID} characters")
    return MessageRequest(text=text, client_id=client_id, reply_to=reply_to)


def parse_typing(data: Any) -> bool:
    data = payload(data, "{typing: bool}")
    typing = data.get("typing")
    if not isinstance(typing, bool):
        raise ProtocolError("invalid typing: must be true or false")
    return typing


def parse_limit(value: Any) -> int:
    if value is None:
        return HISTORY_DEFAULT
    if not _is_int(value) or not 1 <= value <= HISTORY_MAX:
        raise ProtocolError(f"invalid limit: must be an integer 1-{HISTORY_MAX}")
    return value


def parse_before(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ProtocolError("invalid before: must be a message id (an integer >= 1)")
    return min(value, MAX_ID)


def parse_history(data: Any) -> tuple[int | None, int]:
    """``history {before?, limit?}`` -> (before, limit). No ``before`` means the newest."""
    data = payload(data, "{before, limit?}")
    return parse_before(data.get("before")), parse_limit(data.get("limit"))


def parse_rename(data: Any) -> str:
    data = payload(data, "{name}")
    return parse_name(data.get("name"))


def parse_message_id(value: Any) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_ID:
        raise ProtocolError("invalid id: must be a message id (an integer >= 1)")
    return value


def parse_delete(data: Any) -> int:
    """``delete {id, room?}`` -> the id."""
    data = payload(data, "{id, room?}")
    return parse_message_id(data.get("id"))


@dataclass(frozen=True, slots=True)
class EditRequest:
    id: int
    text: str


def parse_edit(data: Any) -> EditRequest:
    """``edit {id, text, room?}``."""
    data = payload(data, "{id, text, room?}")
    return EditRequest(parse_message_id(data.get("id")), parse_text(data.get("text")))


def parse_edits(data: Any) -> int:
    """``edits {id, room?}`` -> the id."""
    return parse_message_id(payload(data, "{id, room?}").get("id"))


#: A reaction's emoji, in UTF-8 bytes: room for the longest emoji sequences (a family or
#: a subdivision flag), not for text.
MAX_EMOJI_BYTES = 32
EMOJI_RULE = f"invalid emoji: must be one emoji (at most {MAX_EMOJI_BYTES} bytes)"
#: What may join the pictographs (So) of one emoji: joiners and variation selectors,
#: skin tones (Sk), keycap and tag characters (the keycap's digit, # or *).
_EMOJI_PARTS = frozenset({"So", "Sk", "Mn", "Me"})
_EMOJI_EXTRA = frozenset("\u200d\ufe0e\ufe0f0123456789#*")


@dataclass(frozen=True, slots=True)
class ReactRequest:
    id: int
    emoji: str
    #: True: add it, False: take it away, None: toggle.
    add: bool | None


def parse_emoji(value: Any) -> str:
    """One emoji (a pictograph, possibly a sequence of them); never text."""
    if (
        not isinstance(value, str)
        or not value
        or not _is_valid_unicode(value)
        or len(value.encode()) > MAX_EMOJI_BYTES
        or not any(unicodedata.category(c) == "So" for c in value)
        or not all(
            c in _EMOJI_EXTRA
            or unicodedata.category(c) in _EMOJI_PARTS
            or 0xE0020 <= ord(c) <= 0xE007F  # tags: subdivision flags
            for c in value
        )
    ):
        raise ProtocolError(EMOJI_RULE)
    return value


def parse_react(data: Any) -> ReactRequest:
    """``react {id, emoji, add?, room?}``."""
    data = payload(data, "{id, emoji, add?, room?}")
    add = data.get("add")
    if add is not None and not isinstance(add, bool):
        raise ProtocolError("invalid add: must be true, false or left out (a toggle)")
    return ReactRequest(parse_message_id(data.get("id")), parse_emoji(data.get("emoji")), add)


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    room: str
    since: int | None
    rev: int | None


def parse_subscribe(data: Any) -> SubscribeRequest:
    """``subscribe {room, since?, rev?}``."""
    data = payload(data, "{room, since?, rev?}")
    return SubscribeRequest(
        room=parse_room(data.get("room")),
        since=parse_since(data.get("since")),
        rev=parse_rev(data.get("rev")),
    )


def parse_unsubscribe(data: Any) -> str:
    """``unsubscribe {room}`` -> the room."""
    return parse_room(payload(data, "{room}").get("room"))


def parse_read(data: Any) -> int:
    """``read {room?, id}`` -> the id of the newest message read (0: none)."""
    data = payload(data, "{room, id}")
    value = data.get("id")
    if not _is_int(value) or not 0 <= value <= MAX_ID:
        raise ProtocolError("invalid id: must be a message id (an integer >= 0)")
    return value


#: The most people one ``dm`` names (the starter makes one more).
MAX_DM_HANDLES = 7


def parse_dm(data: Any) -> list[str]:
    """``dm {with: [handles]}`` -> the handles."""
    handles = payload(data, "{with: [handles]}").get("with")
    if (
        not isinstance(handles, list)
        or not 1 <= len(handles) <= MAX_DM_HANDLES
        or not all(isinstance(h, str) and 0 < len(h) <= 64 for h in handles)
    ):
        raise ProtocolError(f"invalid with: must be a list of 1-{MAX_DM_HANDLES} handles")
    return [h.removeprefix("@") for h in handles]
