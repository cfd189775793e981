"""@mentions: whom a message names, decided once, when it is stored.

``@handle`` names the account with that handle (written in any case); ``@room`` and
``@here`` name everyone in the room (``@here``: those online there). The server resolves
them as it stores the message and the message carries the result (``mentions``, the
account ids, and ``mention_all``), so every client, bot and process agrees on who was
mentioned, and a later rename or a new account with that handle changes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from .store import Account

#: ``@`` that starts a word (not inside an address such as ann@example.com), then the
#: handle: anything up to a space or another ``@``.
_MENTION = re.compile(r"(?<![\w@])@([^\s@]+)")
#: What may follow a handle in a sentence without being part of it.
_TRAILING = ".,:;!?)]}'\"\u2019\u201d"
#: Code, where an @word is text (as the page shows it): a fenced block, to its closing
#: fence or the end, and an inline span.
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
#: The words that name everyone in the room.
EVERYONE = ("room", "here")
#: Accounts one message may name (the rest of its @words stay text).
MAX_MENTIONS = 50


@dataclass(frozen=True, slots=True)
class Mentions:
    """The accounts a message names, in order of first mention, and ``everyone``:
    "room", "here" or None."""

    user_ids: tuple[str, ...] = ()
    everyone: str | None = None

    def __bool__(self) -> bool:
        return bool(self.user_ids) or self.everyone is not None


NONE = Mentions()


@dataclass(frozen=True, slots=True)
class Named:
    """What a message's @words say, before they are looked up: the handles it may name
    (NFC, case-folded, each once, in order) and ``everyone``."""

    handles: tuple[str, ...] = ()
    everyone: str | None = None


def read_mentions(text: str) -> Named:
    """The @words of ``text``, outside code."""
    if "@" not in text:
        return Named()
    if "`" in text:
        text = _CODE.sub(" ", text)
    handles: dict[str, None] = {}
    everyone: str | None = None
    for match in _MENTION.finditer(text):
        word = unicodedata.normalize("NFC", match.group(1).rstrip(_TRAILING)).casefold()
        if word in EVERYONE:
            everyone = "room" if "room" in (word, everyone) else "here"
        elif word:
            handles[word] = None
    return Named(tuple(handles), everyone)


def resolve_mentions(named: Named, accounts: Mapping[str, Account]) -> Mentions:
    """The mentions ``named`` makes, given the accounts of its handles (by handle
    case-folded; a handle that is not there names nobody)."""
    ids: list[str] = []
    for handle in named.handles:
        account = accounts.get(handle)
        if account is not None and account.id not in ids:
            ids.append(account.id)
            if len(ids) == MAX_MENTIONS:
                break
    return Mentions(tuple(ids), named.everyone)
