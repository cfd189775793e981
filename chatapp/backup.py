"""``python -m chatapp backup PATH``: a consistent copy of the SQLite database, taken while
the server runs (SQLite's online backup: every page as of one moment, WAL included), and
restored by copying it back while the server is stopped.

PostgreSQL has its own tools for this (``pg_dump``); the command says so.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from .settings import add_flags, settings_from
from .store import StoreError

EXIT_ERROR = 2


def backup(db: str, target: Path) -> tuple[int, int]:
    """Copy the SQLite database ``db`` to ``target`` (which must not exist): (the messages
    copied, the schema version). StoreError if it cannot."""
    if db.startswith(("postgresql://", "postgres://")):
        raise StoreError("backup copies a SQLite database; for PostgreSQL use pg_dump")
    path = db.removeprefix("sqlite:///")
    if not Path(path).is_file():
        raise StoreError(f"there is no SQLite database at {path!r}")
    if target.exists():
        raise StoreError(f"{str(target)!r} exists already: choose a new file")
    partial = target.with_name(target.name + ".partial")
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    try:
        source = sqlite3.connect(uri, uri=True)
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)
                (count,) = copy.execute("SELECT count(*) FROM messages").fetchone()
                (version,) = copy.execute("PRAGMA user_version").fetchone()
            finally:
                copy.close()
        finally:
            source.close()
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot back up {path!r}: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return int(count), int(version)


def main(argv: Sequence[str], prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        argument_default=argparse.SUPPRESS,
        description="Copy the SQLite database of --db (or CHATAPP_DB) to PATH, consistently, "
        "whether the server is running or not. PATH must not exist.",
    )
    add_flags(parser, ("db",))
    parser.add_argument("path", metavar="PATH", help="the new file")
    args = parser.parse_args(argv)
    settings = settings_from(parser, args, only=("db",))
    target = Path(args.path)
    try:
        count, version = backup(settings.db, target)
    except StoreError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{target}: {count} messages, schema version {version}")
    return 0
