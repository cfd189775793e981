"""The presence interface: who is online in which room, with one person's tabs merged.

A person online is a *member*: a user id and the display name it uses, encoded as one
string by :func:`member` (backends treat it as opaque). Two people with one name are two
members; one person's tabs under one name are one.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

#: ``callback(room, joined, left)``: a member came online in or left ``room`` without a
#: join or leave through this process's handlers (e.g. another process died).
ChangeCallback = Callable[[str, str | None, str | None], Coroutine[Any, Any, None]]

#: Between the user id and the name in a member: a control character, which names never hold.
_SEPARATOR = "\x1f"


def member(user_id: str, name: str, handle: str | None = None, bot: bool = False) -> str:
    """The presence key of ``user_id`` shown as ``name`` (an account's: with its
    ``handle``, and whether it is a bot)."""
    if handle is None:
        return f"{user_id}{_SEPARATOR}{name}"
    return f"{user_id}{_SEPARATOR}{name}{_SEPARATOR}{handle}{_SEPARATOR}{int(bot)}"


def person(key: str) -> dict[str, Any]:
    """``{"user_id", "name"}`` of a member, with ``"handle"`` (and ``"bot": true``) for an
    account's (``user_id`` None for a bare name, as an earlier release stored them)."""
    parts = key.split(_SEPARATOR)
    if len(parts) == 1:
        return {"user_id": None, "name": key}
    found: dict[str, Any] = {"user_id": parts[0], "name": parts[1]}
    if len(parts) == 4:
        found["handle"] = parts[2]
        if parts[3] == "1":
            found["bot"] = True
    return found


def people(keys: list[str]) -> list[dict[str, Any]]:
    """The members ``keys`` as :func:`person` dicts, sorted by name case-insensitively."""
    found = [person(key) for key in keys]
    found.sort(key=lambda p: (str(p["name"]).casefold(), str(p["name"]), str(p["user_id"])))
    return found


class Presence(Protocol):
    """Tracks connections per room under a member key (:func:`member`).

    A member is online in a room while at least one of its connections is; ``join`` and
    ``leave`` say when a member first appears or finally leaves, which is when the room is
    told. The parameters called ``name`` below are member keys.
    """

    async def start(self) -> None:
        """Connect to the backing service, if any."""

    async def close(self) -> None:
        """Forget this process's connections and release resources."""

    def on_change(self, callback: ChangeCallback) -> None:
        """Have ``callback`` announce changes that no handler of this process caused."""

    async def join(self, room: str, conn_id: str, name: str) -> bool:
        """Add a connection; True if ``name`` was not online in ``room`` before."""

    async def leave(self, room: str, conn_id: str, name: str) -> bool:
        """Remove a connection; True if ``name`` has no connection left in ``room``."""

    async def users(self, room: str) -> list[str]:
        """Members online in ``room``, in any order (:func:`people` sorts them by name)."""

    async def counts(self) -> dict[str, int]:
        """Rooms with anyone online -> number of distinct members."""
