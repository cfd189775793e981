"""Validation of everything a client sends, with the error texts the protocol documents.

Every function here takes untrusted, already JSON-decoded data and either returns a clean
value or raises :class:`ProtocolError` whose message is safe to send back to the client.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

DEFAULT_ROOM = "lobby"
MAX_NAME = 32
MAX_TEXT = 2000
MAX_CLIENT_ID = 64
WELCOME_HISTORY = 50
CATCH_UP_LIMIT = 500
HISTORY_DEFAULT = 50
HISTORY_MAX = 100

_ROOM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ROOM_RULE = "invalid room name: must be 1-64 of a-z 0-9 _ -, starting with a letter or digit"


class ProtocolError(ValueError):
    """Bad input from a client; ``str(exc)`` is the readable reason sent back."""


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    room: str
    name: str
    since: int | None


@dataclass(frozen=True, slots=True)
class MessageRequest:
    text: str
    client_id: str | None


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


def parse_name(value: Any) -> str:
    """A display name: 1-32 characters after trimming, no control characters."""
    if not isinstance(value, str):
        raise ProtocolError("invalid name: must be a string")
    name = value.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise ProtocolError(f"invalid name: must be 1-{MAX_NAME} characters")
    if not _is_valid_unicode(name) or any(unicodedata.category(c) == "Cc" for c in name):
        raise ProtocolError("invalid name: must not contain control characters")
    return name


def default_name() -> str:
    return f"guest-{secrets.token_hex(2)}"


def parse_since(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("invalid since: must be a message id (an integer >= 0)")
    return value


def parse_connect(auth: Any) -> ConnectRequest:
    """The ``auth`` object of a connection: ``{room?, name?, since?}``."""
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise ProtocolError("invalid auth: must be an object {room?, name?, since?}")
    room = parse_room(auth["room"]) if auth.get("room") is not None else DEFAULT_ROOM
    name = parse_name(auth["name"]) if auth.get("name") is not None else default_name()
    return ConnectRequest(room=room, name=name, since=parse_since(auth.get("since")))


def _payload(data: Any, shape: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"invalid payload: expected an object {shape}")
    return data


def parse_message(data: Any) -> MessageRequest:
    data = _payload(data, "{text, client_id?}")
    text = data.get("text")
    if not isinstance(text, str):
        raise ProtocolError("invalid text: must be a string")
    if not 1 <= len(text.strip()) <= MAX_TEXT:
        raise ProtocolError(f"invalid text: must be 1-{MAX_TEXT} characters")
    if not _is_valid_unicode(text):
        raise ProtocolError("invalid text: not valid Unicode")
    client_id = data.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str)
        or not 1 <= len(client_id) <= MAX_CLIENT_ID
        or not client_id.isprintable()
        or not _is_valid_unicode(client_id)
    ):
        raise ProtocolError(f"invalid client_id: must be a string of 1-{MAX_CLIENT_ID} characters")
    return MessageRequest(text=text, client_id=client_id)


def parse_typing(data: Any) -> bool:
    data = _payload(data, "{typing: bool}")
    typing = data.get("typing")
    if not isinstance(typing, bool):
        raise ProtocolError("invalid typing: must be true or false")
    return typing


def parse_limit(value: Any) -> int:
    if value is None:
        return HISTORY_DEFAULT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= HISTORY_MAX:
        raise ProtocolError(f"invalid limit: must be an integer 1-{HISTORY_MAX}")
    return value


def parse_before(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProtocolError("invalid before: must be a message id (an integer >= 1)")
    return value


def parse_history(data: Any) -> tuple[int | None, int]:
    """``history {before?, limit?}`` -> (before, limit). No ``before`` means the newest."""
    data = _payload(data, "{before, limit?}")
    return parse_before(data.get("before")), parse_limit(data.get("limit"))


def parse_rename(data: Any) -> str:
    data = _payload(data, "{name}")
    return parse_name(data.get("name"))
