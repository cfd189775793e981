"""Reactions on a message: who reacted with which emoji, kept on the message itself (so
a page of history carries them with no second read), changed by toggling one."""

from __future__ import annotations

import orjson

#: Emoji, each with the ids of who reacted with it, both in the order they came.
Reactions = tuple[tuple[str, tuple[str, ...]], ...]

#: Different emoji one message may carry.
MAX_KINDS = 20
#: Reactions (of every emoji) one message may carry.
MAX_REACTIONS = 500


class ReactionRefused(Exception):
    """The message cannot take this reaction; ``str(exc)`` says why."""


def toggle(reactions: Reactions, emoji: str, user_id: str, add: bool | None) -> Reactions | None:
    """``reactions`` with ``user_id``'s ``emoji`` added (``add`` true), removed (false),
    or toggled (None); None if that changes nothing. ReactionRefused past the caps."""
    users = dict(reactions)
    had = user_id in users.get(emoji, ())
    if add is None:
        add = not had
    if add == had:
        return None
    if not add:
        left = tuple(u for u in users[emoji] if u != user_id)
        return tuple((e, left if e == emoji else u) for e, u in reactions if e != emoji or left)
    if emoji not in users and len(reactions) >= MAX_KINDS:
        raise ReactionRefused(f"a message takes at most {MAX_KINDS} different reactions")
    if sum(len(u) for _, u in reactions) >= MAX_REACTIONS:
        raise ReactionRefused(f"a message takes at most {MAX_REACTIONS} reactions")
    if emoji not in users:
        return (*reactions, (emoji, (user_id,)))
    return tuple((e, (*u, user_id) if e == emoji else u) for e, u in reactions)


def encode(reactions: Reactions) -> str | None:
    """The column value of ``reactions`` (NULL for none)."""
    return orjson.dumps(reactions).decode() if reactions else None


def decode(value: str | None) -> Reactions:
    if not value:
        return ()
    return tuple((e, tuple(u)) for e, u in orjson.loads(value))
