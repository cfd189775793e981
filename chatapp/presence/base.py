"""The presence interface: who is online in which room, with tabs of one name merged."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

#: ``callback(room, joined, left)``: a name came online in or left ``room`` without a
#: join or leave through this process's handlers (e.g. another process died).
ChangeCallback = Callable[[str, str | None, str | None], Coroutine[Any, Any, None]]


class Presence(Protocol):
    """Tracks connections per room under a display name.

    A name is online in a room while at least one of its connections is; ``join`` and
    ``leave`` say when a name first appears or finally leaves, which is when the room is told.
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
        """Names online in ``room``, sorted case-insensitively."""

    async def counts(self) -> dict[str, int]:
        """Rooms with anyone online -> number of distinct names."""
