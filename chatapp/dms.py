"""Direct messages: a private conversation of two, or a few, accounts.

A direct conversation is a private room (:mod:`chatapp.private_rooms`) whose name comes
from its members (``dm-`` and a digest of their account ids), so the same people always
meet in the same one, with the history, catch-up and read state of any room. Its members
are fixed; nobody else joins, reads or lists it (an admin neither: it is not on the admin
page nor in the moderation log); no room is ever made with that prefix any other way.
"""

from __future__ import annotations

import hashlib

from .accounts import AccountError, Accounts
from .private_rooms import DM_PREFIX, PrivateRooms
from .store import Account, AccountStore

#: What every direct conversation's name starts with (and no other room's).
PREFIX = DM_PREFIX
#: The most people one direct conversation holds, its starter included.
MAX_PEOPLE = 8


def dm_room(account_ids: set[str]) -> str:
    """The room of the conversation of exactly these accounts."""
    digest = hashlib.sha256(b"chatapp dm\0" + "\0".join(sorted(account_ids)).encode())
    return PREFIX + digest.hexdigest()[:24]


class DirectMessages:
    def __init__(self, store: AccountStore, accounts: Accounts, rooms: PrivateRooms) -> None:
        self._store = store
        self._accounts = accounts
        self._rooms = rooms

    async def open(self, starter: Account, handles: list[str]) -> tuple[str, list[Account]]:
        """The conversation of ``starter`` with the accounts ``handles`` (made if new):
        its room and its people; AccountError if a handle is no account's."""
        people = {starter.id: starter}
        for handle in handles:
            account = await self._accounts.get(handle)
            people[account.id] = account
        if len(people) < 2:
            raise AccountError("name someone else to talk to")
        if len(people) > MAX_PEOPLE:
            raise AccountError(f"a direct conversation holds at most {MAX_PEOPLE} people")
        room = dm_room(set(people))
        if await self._store.add_dm(room, sorted(people)):
            await self._rooms.refresh()
        return room, sorted(people.values(), key=lambda a: a.handle.casefold())
