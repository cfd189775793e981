"""Storage (history and accounts): pick the backend from the ``--db`` setting."""

from __future__ import annotations

import asyncio

from .base import (
    ROLES,
    Account,
    AccountStore,
    Attachment,
    Ban,
    Edit,
    HandleTaken,
    Invite,
    InviteInvalid,
    LogEntry,
    Message,
    MessageStore,
    Page,
    RoomState,
    RoomView,
    SignIn,
    Store,
    StoreError,
)


def _is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def _sqlite_path(db: str) -> str:
    return db.removeprefix("sqlite:///")


def open_store(db: str) -> Store:
    """A store for ``db``: a ``postgresql://`` URL, ``sqlite:///path``, or a plain file path."""
    if _is_postgres(db):
        from .postgres import PostgresStore

        return PostgresStore(db)
    from .sqlite import SQLiteStore

    return SQLiteStore(_sqlite_path(db))


async def migrate(db: str) -> tuple[int, int]:
    """Create or migrate the schema of ``db`` (as :func:`open_store` takes it) and let go of
    it: (the schema version it had, 0 for a new database; the version it has now).

    StoreError if it cannot be opened, or is at a version newer than this code (then it
    is left untouched). Processes migrating one database at once migrate it once.
    """
    if _is_postgres(db):
        from . import postgres

        return await postgres.migrate(db)
    from . import sqlite

    return await asyncio.to_thread(sqlite.migrate, _sqlite_path(db))


__all__ = [
    "ROLES",
    "Account",
    "AccountStore",
    "Attachment",
    "Ban",
    "Edit",
    "HandleTaken",
    "Invite",
    "InviteInvalid",
    "LogEntry",
    "Message",
    "MessageStore",
    "Page",
    "RoomState",
    "RoomView",
    "SignIn",
    "Store",
    "StoreError",
    "migrate",
    "open_store",
]
