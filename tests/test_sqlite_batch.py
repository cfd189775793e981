"""SQLite writes: messages arriving together share a transaction (in the store's thread), a
lone message is committed at once, and the thread checkpoints what that commits."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from chatapp.store import StoreError
from chatapp.store import sqlite as sqlite_store
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


async def test_a_taken_id_is_refused_not_taken_for_a_retry(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.add("r", "ann", "one", client_id="c1")
        # Another writer put message 2 in without moving the room's newest id on: the next
        # add is given id 2, which the file holds. It fails; it is not answered as a retry.
        with sqlite3.connect(path) as other:
            other.execute(
                "INSERT INTO messages (room, id, name, text, ts) VALUES ('r', 2, 'x', 'x', 1)"
            )
        with pytest.raises(StoreError, match="refused"):
            await store.add("r", "ann", "two", client_id="c2")
        again, created = await store.add("r", "ann", "one, retried", client_id="c1")
        assert not created and again.text == "one"
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


async def test_a_cancelled_wait_leaves_no_half_seen_write(tmp_path: Path) -> None:
    """A handler cancelled while its message is queued (its client gone, the server
    stopping) cancels only its own wait: the message is written all the same, ids stay
    consecutive, and nothing is left unretrieved for asyncio to complain of."""
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        # Alone, on its way to the event loop's own commit.
        lone = asyncio.ensure_future(store.add("r", "ann", "lone"))
        await asyncio.sleep(0)
        lone.cancel()
        # Several, on their way to the thread: cancel some and a bad one among them.
        batch = [
            asyncio.ensure_future(store.add("r", "ann", "\ud800" if i == 2 else f"m{i}"))
            for i in range(6)
        ]
        await asyncio.sleep(0)
        for i in (1, 2, 4):
            batch[i].cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(lone, *batch, return_exceptions=True), 10)
        assert isinstance(outcomes[0], asyncio.CancelledError)
        kept = [o for o in outcomes[1:] if not isinstance(o, BaseException)]
        assert [(m.text, m.id) for m, _ in kept] == [("m0", 2), ("m3", 4), ("m5", 6)]
        stored = await store.range("r", 0, 10)
        assert [(m.text, m.id) for m in stored] == [
            ("lone", 1),
            ("m0", 2),
            ("m1", 3),
            ("m3", 4),
            ("m4", 5),
            ("m5", 6),
        ]
        assert (await asyncio.wait_for(store.add("r", "ann", "next"), 10))[0].id == 7
        # A cancelled read is dropped in the same way.
        read = asyncio.ensure_future(store.last_id("r"))
        await asyncio.sleep(0)
        read.cancel()
        assert await asyncio.wait_for(store.last_id("r"), 10) == 7
        del lone, batch, outcomes, read
        gc.collect()
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)
        await store.close()


async def test_a_lone_message_is_committed_without_waiting_for_the_thread(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    gate = threading.Event()
    try:
        # The store's thread is busy (a slow read, say): a lone message does not wait for it.
        busy = asyncio.ensure_future(store._run(lambda conn: gate.wait(30)))
        msg, created = await asyncio.wait_for(store.add("r", "ann", "at once"), 10)
        assert created and msg.id == 1
        # Several at once still make one batch for the thread, after the slow read.
        batch = asyncio.gather(*(store.add("r", "ann", f"m{i}") for i in range(5)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not batch.done()
        gate.set()
        assert [m.id for m, _ in await batch] == [2, 3, 4, 5, 6]
        await busy
        assert [m.text for m in await store.range("r", 0, 10)][:2] == ["at once", "m0"]
    finally:
        gate.set()
        await store.close()


async def test_the_thread_checkpoints_what_the_event_loop_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_EVERY", 20)
    path = tmp_path / "chat.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        for i in range(600):  # one at a time: every one committed on the event loop
            await store.add("r", "ann", f"message {i} " + "x" * 200)
        # Without checkpoints the WAL would hold every page written: 600 commits.
        wal = Path(str(path) + "-wal").stat().st_size
        assert wal < 600 * 4096 / 4, f"WAL of {wal} bytes"
        assert await store.last_id("r") == 600
    finally:
        await store.close()


async def test_the_threads_commits_checkpoint_every_so_many_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "AUTOCHECKPOINT_PAGES", 50)
    path = tmp_path / "chat.db"
    store = SQLiteStore(str(path))
    await store.open()
    try:
        for batch in range(20):  # batches of 40 messages to 40 rooms: the thread's commits
            await asyncio.gather(
                *(store.add(f"r{i}", "ann", f"{batch} " + "x" * 300) for i in range(40))
            )
        # The WAL is written from its start again after each checkpoint: it holds at most
        # the pages between two, plus one batch's.
        wal = Path(str(path) + "-wal").stat().st_size
        assert wal < 150 * 4096, f"WAL of {wal} bytes"
        assert await store.last_id("r0") == 20
    finally:
        await store.close()


async def test_reads_of_one_turn_go_to_the_thread_together_and_fail_alone(
    tmp_path: Path,
) -> None:
    """The reads asked for in one turn of the event loop cost one hand-off to the thread,
    in order, each with its own outcome."""
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    try:
        for r in range(3):
            await store.add(f"r{r}", "ann", f"in r{r}")
        submit = store._executor.submit
        handed: list[object] = []

        def counted(fn: Any, *args: Any) -> Any:
            handed.append(fn)
            return submit(fn, *args)

        store._executor.submit = counted  # type: ignore[method-assign]
        got = await asyncio.gather(
            store.recent("r0", 5),
            store._run(lambda conn: conn.execute("SELECT no_such_column FROM messages")),
            store.recent("r1", 5),
            store.recent("r2", 5),
            return_exceptions=True,
        )
        assert len(handed) == 1
        first, failed, middle, last = got
        assert isinstance(failed, sqlite3.OperationalError)
        assert [m.text for m in first.messages] == ["in r0"]  # type: ignore[union-attr]
        assert [m.text for m in middle.messages] == ["in r1"]  # type: ignore[union-attr]
        assert [m.text for m in last.messages] == ["in r2"]  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_welcomes_reads_do_not_wait_for_the_thread(tmp_path: Path) -> None:
    """A connecting client's reads (the room's view, whether its name is an account's) are
    done on the event loop: a crowd reconnecting does not pay a hand-off each, nor wait
    behind the thread's writes. They see every message committed, by either path."""
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    gate = threading.Event()
    try:
        await asyncio.gather(*(store.add("r", "ann", f"m{i}") for i in range(3)))  # thread
        await store.add("r", "ann", "lone")  # on the event loop
        busy = asyncio.ensure_future(store._run(lambda conn: gate.wait(30)))
        view = await asyncio.wait_for(store.view("r", 10), 10)
        assert [m.text for m in view.page.messages] == ["m0", "m1", "m2", "lone"]
        assert view.last_id == 4 and view.rev == 0
        caught_up = await asyncio.wait_for(store.view("r", 10, after=4), 10)
        assert caught_up.page.messages == [] and caught_up.last_id == 4
        assert await asyncio.wait_for(store.find_account("ann"), 10) is None
        assert not busy.done()
        gate.set()
        await busy
    finally:
        gate.set()
        await store.close()


async def test_a_read_that_finds_the_file_busy_goes_to_the_thread(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "chat.db"))
    await store.open()
    try:
        await store.add("r", "ann", "hello")
        tries: list[str] = []

        def read(conn: sqlite3.Connection) -> int:
            tries.append(threading.current_thread().name)
            if len(tries) == 1:  # as SQLite says it while another process resets the WAL
                busy = sqlite3.OperationalError("database is locked")
                busy.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
                raise busy
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])

        read_inline = store._read_inline(read)
        assert read_inline is None
        assert await store._run(read) == 1
        assert tries[0] == threading.current_thread().name
        assert tries[1].startswith("chatapp-sqlite")
        # As view() and find_account() read: tried on the event loop, then in the thread.
        tries.clear()
        assert await store._read_at_once(read) == 1
        assert tries[0] == threading.current_thread().name
        assert tries[1].startswith("chatapp-sqlite")
    finally:
        await store.close()
