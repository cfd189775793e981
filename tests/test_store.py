"""One suite for every message store: SQLite and PostgreSQL keep the same promises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from chatapp.store import MessageStore, StoreError, open_store

from .services import TcpProxy

OpenStore = Callable[[], Awaitable[MessageStore]]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``--db`` value of each backend: a SQLite file, a PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "chat.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def open_db(db: str) -> AsyncIterator[OpenStore]:
    """Opens stores on one database (as separate processes would); closes them after."""
    stores: list[MessageStore] = []

    async def open_one() -> MessageStore:
        store = open_store(db)
        await store.open()
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()


@pytest.fixture
async def store(open_db: OpenStore) -> MessageStore:
    return await open_db()


async def test_ids_count_up_per_room(store: MessageStore) -> None:
    ids = [(await store.add("a", "ann", f"m{i}"))[0].id for i in range(3)]
    other, created = await store.add("b", "bob", "hello")
    assert ids == [1, 2, 3]
    assert (other.id, other.room, other.name, other.text, created) == (1, "b", "bob", "hello", True)
    assert await store.last_id("a") == 3
    assert await store.last_id("nowhere") == 0


async def test_message_fields_round_trip(store: MessageStore) -> None:
    text = "héllo 👋 \"quotes\" 'single' -- ; DROP TABLE messages; \\ \n second line"
    msg, _ = await store.add("a", "Zoë", text)
    (stored,) = (await store.recent("a", 10)).messages
    assert stored == msg
    assert stored.text == text and stored.name == "Zoë"
    assert stored.ts > 1_600_000_000_000  # epoch milliseconds


async def test_client_id_makes_a_retry_return_the_stored_message(store: MessageStore) -> None:
    first, created = await store.add("a", "ann", "hi", "c-1")
    again, created_again = await store.add("a", "ann", "hi (retried)", "c-1")
    assert created and not created_again
    assert again == first
    # The same client_id from another name or in another room is another message.
    assert (await store.add("a", "bob", "hi", "c-1"))[1]
    assert (await store.add("b", "ann", "hi", "c-1"))[1]
    assert [m.id for m in (await store.recent("a", 10)).messages] == [1, 2]


async def test_recent_pages_and_catch_up(store: MessageStore) -> None:
    for i in range(1, 8):
        await store.add("a", "ann", f"m{i}")
    page = await store.recent("a", 3)
    assert [m.id for m in page.messages] == [5, 6, 7] and page.has_more
    page = await store.recent("a", 10)
    assert [m.id for m in page.messages] == list(range(1, 8)) and not page.has_more
    page = await store.recent("a", 10, after=4)
    assert [m.id for m in page.messages] == [5, 6, 7] and not page.has_more
    page = await store.recent("a", 2, after=4)
    assert [m.id for m in page.messages] == [6, 7] and page.has_more
    page = await store.recent("a", 5, after=7)
    assert page.messages == [] and not page.has_more


async def test_before_pages_back_through_history(store: MessageStore) -> None:
    for i in range(1, 8):
        await store.add("a", "ann", f"m{i}")
    page = await store.before("a", None, 3)
    assert [m.id for m in page.messages] == [5, 6, 7] and page.has_more
    page = await store.before("a", 5, 3)
    assert [m.id for m in page.messages] == [2, 3, 4] and page.has_more
    page = await store.before("a", 2, 3)
    assert [m.id for m in page.messages] == [1] and not page.has_more
    page = await store.before("a", 1, 3)
    assert page.messages == [] and not page.has_more
    assert (await store.before("empty", None, 3)).messages == []


async def test_range_is_exclusive_inclusive(store: MessageStore) -> None:
    for i in range(1, 6):
        await store.add("a", "ann", f"m{i}")
    assert [m.id for m in await store.range("a", 1, 4)] == [2, 3, 4]
    assert await store.range("a", 5, 9) == []


async def test_rooms_lists_each_room_with_its_newest_timestamp(store: MessageStore) -> None:
    assert await store.rooms() == {}
    await store.add("a", "ann", "one")
    newest_a, _ = await store.add("a", "ann", "two")
    newest_b, _ = await store.add("b", "bob", "hi")
    assert await store.rooms() == {"a": newest_a.ts, "b": newest_b.ts}


async def test_history_survives_reopening(open_db: OpenStore) -> None:
    first = await open_db()
    await first.add("a", "ann", "kept", "c-1")
    await first.close()
    second = await open_db()
    assert [m.text for m in (await second.recent("a", 10)).messages] == ["kept"]
    assert (await second.add("a", "ann", "x", "c-1"))[1] is False
    assert (await second.add("a", "ann", "next"))[0].id == 2


async def test_concurrent_writers_get_consecutive_ids(open_db: OpenStore) -> None:
    # Two stores on one database stand for two processes.
    writers = [await open_db(), await open_db()]
    results = await asyncio.gather(
        *(writers[i % 2].add("a", f"user{i % 5}", f"m{i}") for i in range(60))
    )
    assert sorted(m.id for m, _ in results) == list(range(1, 61))
    stored = (await writers[0].recent("a", 100)).messages
    assert [m.id for m in stored] == list(range(1, 61))
    assert {m.text for m in stored} == {f"m{i}" for i in range(60)}


async def test_readers_never_see_a_later_id_before_an_earlier_one(open_db: OpenStore) -> None:
    """Ids commit in order: whoever sees id n can read every id below it (the feed's rule)."""
    writers = [await open_db(), await open_db()]
    reader = await open_db()
    done = asyncio.Event()

    async def write(store: MessageStore, n: int) -> None:
        for i in range(n):
            await store.add("a", "ann", f"m{i}")

    async def read() -> int:
        checks = 0
        while not done.is_set() or checks == 0:
            last = await reader.last_id("a")
            ids = [m.id for m in await reader.range("a", 0, last)]
            assert ids == list(range(1, last + 1))
            checks += 1
            await asyncio.sleep(0)
        return checks

    reading = asyncio.create_task(read())
    await asyncio.gather(*(write(writers[i % 2], 15) for i in range(4)))
    done.set()
    assert await reading > 0
    assert await reader.last_id("a") == 60


async def test_a_racing_retry_creates_one_message_and_no_gap(open_db: OpenStore) -> None:
    writers = [await open_db(), await open_db()]
    for round_ in range(10):
        results = await asyncio.gather(
            *(writers[i % 2].add("a", "ann", "hi", f"c-{round_}") for i in range(4))
        )
        assert sum(created for _, created in results) == 1
        assert len({m for m, _ in results}) == 1
    assert [m.id for m in (await writers[0].recent("a", 100)).messages] == list(range(1, 11))
    assert (await writers[1].add("a", "ann", "after"))[0].id == 11


async def test_ping_answers(store: MessageStore) -> None:
    await store.ping()


# -- PostgreSQL only: schema set-up ----------------------------------------------------------


async def test_postgres_schema_set_up_is_safe_when_processes_start_together(
    pg_url: str,
) -> None:
    stores = [open_store(pg_url) for _ in range(5)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        await stores[0].add("a", "ann", "hi")
        assert [m.text for m in (await stores[4].recent("a", 5)).messages] == ["hi"]
    finally:
        for s in stores:
            await s.close()


async def test_postgres_refuses_a_schema_newer_than_it_knows(pg_url: str) -> None:
    store = open_store(pg_url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("UPDATE chatapp_schema SET version = 99")
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="version 99"):
        await open_store(pg_url).open()


async def test_postgres_unreachable_is_a_clear_store_error(tcp_proxy: type[TcpProxy]) -> None:
    proxy = await tcp_proxy("127.0.0.1", 1).start()
    proxy.sever()
    url = f"postgresql://ann:s3cret@127.0.0.1:{proxy.port}/chat"
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as raised:
        await open_store(url).open()
    assert "s3cret" not in str(raised.value)
