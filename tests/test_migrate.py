"""``python -m chatapp migrate``: the schema brought up to date, history kept, a newer
database refused and left exactly as it was, several at once migrating once."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from chatapp.store import open_store
from chatapp.store.sqlite import SCHEMA_VERSION

from .services import eventually
from .test_store import (
    RELEASE_2026_11_25,
    check_release_history,
    make_postgres_release_2026_11_25,
)

CONSOLE_SCRIPT = Path(sys.executable).with_name("chatapp")


def migrate(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.Popen(
        [sys.executable, "-m", "chatapp", "migrate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )


def run_migrate(*args: str, **kwargs) -> tuple[int, str, str]:
    process = migrate(*args, **kwargs)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


async def make_release_2026_11_25(db: str) -> None:
    if db.startswith("postgresql://"):
        await make_postgres_release_2026_11_25(db)
    else:
        shutil.copyfile(RELEASE_2026_11_25, db)


async def test_migrate_creates_a_fresh_database(db: str) -> None:
    assert run_migrate("--db", db) == (0, f"{db}: schema version 0 -> {SCHEMA_VERSION}\n", "")
    store = open_store(db)
    await store.open()
    try:
        assert (await store.add("lobby", "ann", "hi"))[0].id == 1
    finally:
        await store.close()


async def test_migrate_upgrades_the_2026_11_25_release_keeping_every_message(db: str) -> None:
    await make_release_2026_11_25(db)
    assert run_migrate("--db", db) == (0, f"{db}: schema version 1 -> {SCHEMA_VERSION}\n", "")
    store = open_store(db)
    await store.open()
    try:
        await check_release_history(store)
    finally:
        await store.close()


async def test_migrate_says_an_up_to_date_database_is(db: str) -> None:
    assert run_migrate("--db", db)[0] == 0
    up_to_date = f"{db}: schema version {SCHEMA_VERSION}, up to date\n"
    assert run_migrate("--db", db) == (0, up_to_date, "")
    # Named by its variable, and by the console script.
    environ = {**os.environ, "CHATAPP_DB": db}
    assert run_migrate(env=environ) == (0, up_to_date, "")
    script = subprocess.run(
        [str(CONSOLE_SCRIPT), "migrate"], capture_output=True, text=True, env=environ, timeout=60
    )
    assert (script.returncode, script.stdout) == (0, up_to_date)


async def test_processes_migrating_at_once_migrate_once(db: str) -> None:
    await make_release_2026_11_25(db)
    processes = [migrate("--db", db) for _ in range(4)]
    outcomes = sorted(
        (p.communicate(timeout=60), p.returncode)
        for p in processes  # type: ignore[misc]
    )
    assert [out for (out, err), code in outcomes] == [
        f"{db}: schema version 1 -> {SCHEMA_VERSION}\n",
        *[f"{db}: schema version {SCHEMA_VERSION}, up to date\n"] * 3,
    ]
    assert all(code == 0 and err == "" for (_, err), code in outcomes)
    store = open_store(db)
    await store.open()
    try:
        await check_release_history(store)
    finally:
        await store.close()


async def test_postgres_processes_waiting_together_migrate_once(pg_url: str) -> None:
    """The processes are held at the schema's version table until all four are waiting
    (PostgreSQL shows who waits for a lock), then let go at once."""
    await make_postgres_release_2026_11_25(pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        holding = conn.transaction()
        await holding.start()
        await conn.execute("LOCK TABLE chatapp_schema IN ACCESS EXCLUSIVE MODE")
        processes = [migrate("--db", pg_url) for _ in range(4)]

        async def all_waiting() -> bool:
            waiting = await conn.fetchval(
                "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND pid <> $1",
                conn.get_server_pid(),
            )
            return bool(waiting == len(processes))

        await eventually(all_waiting, what="four migrations waiting")
        await holding.rollback()
    finally:
        await conn.close()
    outcomes = sorted((*p.communicate(timeout=60), p.returncode) for p in processes)
    assert outcomes == [
        (f"{pg_url}: schema version 1 -> {SCHEMA_VERSION}\n", "", 0),
        *[(f"{pg_url}: schema version {SCHEMA_VERSION}, up to date\n", "", 0)] * 3,
    ]


def test_migrate_uses_chatapp_db_in_the_working_directory(tmp_path: Path) -> None:
    assert run_migrate(cwd=tmp_path) == (
        0,
        f"chatapp.db: schema version 0 -> {SCHEMA_VERSION}\n",
        "",
    )
    assert (tmp_path / "chatapp.db").exists()


def test_migrate_takes_no_server_flags(tmp_path: Path) -> None:
    code, _, err = run_migrate("--port", "1", cwd=tmp_path)
    assert code == 2 and "unrecognized arguments: --port 1" in err
    assert list(tmp_path.iterdir()) == []


# -- a database of a newer chatapp: refused, untouched ------------------------------------


def _sqlite_newer(path: Path, journal_mode: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
        conn.execute("CREATE TABLE from_the_future (x)")
        conn.execute("PRAGMA user_version=99")
    conn.close()


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
async def test_a_newer_sqlite_file_is_refused_byte_for_byte_unchanged(
    tmp_path: Path, journal_mode: str
) -> None:
    path = tmp_path / "chat.db"
    _sqlite_newer(path, journal_mode)
    before = _files(tmp_path)
    assert list(before) == ["chat.db"]
    code, out, err = run_migrate("--db", str(path))
    assert (code, out) == (2, "")
    assert err == (
        f"chatapp: error: the SQLite database '{path}' is at schema version 99, newer than "
        f"this chatapp understands ({SCHEMA_VERSION}); upgrade chatapp\n"
    )
    # Nothing written, not even the header, and no -wal or -shm file left beside it.
    assert _files(tmp_path) == before
    # Nor by the server starting on it.
    with pytest.raises(Exception, match="schema version 99"):
        await open_store(str(path)).open()
    assert _files(tmp_path) == before


async def test_a_newer_sqlite_file_with_its_wal_is_refused(tmp_path: Path) -> None:
    # A newer chatapp still running (or killed): the version may be in the -wal file only.
    path = tmp_path / "chat.db"
    assert run_migrate("--db", str(path))[0] == 0
    newer = sqlite3.connect(path)
    try:
        newer.execute("PRAGMA wal_autocheckpoint=0")
        newer.execute("PRAGMA user_version=99")
        newer.commit()
        main_file = path.read_bytes()
        assert int.from_bytes(main_file[60:64], "big") == SCHEMA_VERSION  # 99 in the -wal only
        code, _, err = run_migrate("--db", str(path))
        assert code == 2 and "is at schema version 99" in err
        assert path.read_bytes() == main_file
    finally:
        newer.close()


async def test_a_newer_postgres_schema_is_refused_untouched(pg_url: str) -> None:
    assert run_migrate("--db", pg_url)[0] == 0
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("UPDATE chatapp_schema SET version = 99")
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        )
        code, out, err = run_migrate("--db", pg_url)
        assert (code, out) == (2, "")
        schema = await conn.fetchval("SELECT current_schema()")
        assert err == (
            f"chatapp: error: the database schema {schema} is at version 99, newer than this "
            f"chatapp understands ({SCHEMA_VERSION}); upgrade chatapp\n"
        )
        assert await conn.fetchval("SELECT version FROM chatapp_schema") == 99
        assert (
            await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
            )
            == tables
        )
    finally:
        await conn.close()


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing-dir" / "chat.db"
    assert run_migrate("--db", str(missing)) == (
        2,
        "",
        f"chatapp: error: cannot open SQLite database '{missing}': unable to open database file\n",
    )
