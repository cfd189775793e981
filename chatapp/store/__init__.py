"""Message storage: pick the backend from the ``--db`` setting."""

from __future__ import annotations

from .base import Message, MessageStore, Page, StoreError


def open_store(db: str) -> MessageStore:
    """A store for ``db``: a ``postgresql://`` URL, ``sqlite:///path``, or a plain file path."""
    if db.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(db)
    from .sqlite import SQLiteStore

    path = db.removeprefix("sqlite:///") if db.startswith("sqlite:///") else db
    return SQLiteStore(path)


__all__ = ["Message", "MessageStore", "Page", "StoreError", "open_store"]
