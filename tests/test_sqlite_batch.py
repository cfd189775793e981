"""SQLite group commit: messages arriving together share a transaction, nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatapp.store import StoreError
from chatapp.store.sqlite import SQLiteStore


async def test_concurrent_adds_get_consecutive_ids_per_room(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    try:
        results = await asyncio.gather(
            *(store.add(f"room{i % 3}", "ann", f"m{i}") for i in range(150))
        )
        assert all(created for _, created in results)
        for r in range(3):
            room = f"room{r}"
            ids = [m.id for m, _ in results if m.room == room]
            assert ids == list(range(1, 51)), "ids in call order, consecutive, per room"
            stored = await store.range(room, 0, 100)
            assert [m.id for m in stored] == ids
            assert [m.text for m in stored] == [m.text for m, _ in results if m.room == room]
    finally:
        await store.close()


async def test_a_retry_in_the_same_batch_is_recognised(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    try:
        first, *rest = await asyncio.gather(
            store.add("r", "ann", "warm-up"),
            *(store.add("r", "ann", "hello", client_id="c1") for _ in range(3)),
        )
        (msg, created), *retries = rest
        assert created and first[0].id == 1 and msg.id == 2
        assert retries == [(msg, False), (msg, False)]
        assert await store.last_id("r") == 2
    finally:
        await store.close()


async def test_one_bad_message_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    try:
        # A lone surrogate cannot be stored as UTF-8; it lands in a batch with good ones.
        outcomes = await asyncio.gather(
            *(store.add("r", "ann", "\ud800" if i == 5 else f"m{i}") for i in range(10)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[5], UnicodeEncodeError)
        good = [o for i, o in enumerate(outcomes) if i != 5]
        assert [m.id for m, _ in good] == list(range(1, 10))
        assert [m.text for m in await store.range("r", 0, 100)] == [
            f"m{i}" for i in range(10) if i != 5
        ]
    finally:
        await store.close()


async def test_close_waits_for_queued_adds(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    store = SQLiteStore(path)
    await store.open()
    adds = [asyncio.ensure_future(store.add("r", "ann", f"m{i}")) for i in range(20)]
    await asyncio.sleep(0)  # the adds are queued (one batch written, the rest waiting)
    await store.close()
    assert [m.id for m, _ in await asyncio.gather(*adds)] == list(range(1, 21))
    with pytest.raises(StoreError):
        await store.add("r", "ann", "after close")
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        assert await reopened.last_id("r") == 20
    finally:
        await reopened.close()
