"""One suite for every message store: SQLite and PostgreSQL keep the same promises."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from chatapp.search import parse_query
from chatapp.store import Account, MessageStore, Page, RoomView, Store, StoreError, open_store
from chatapp.store.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION

from .services import TcpProxy

OpenStore = Callable[[], Awaitable[MessageStore]]


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


async def test_edits_reactions_and_replies_are_changes_with_the_next_rev(
    store: MessageStore,
) -> None:
    first, _ = await store.add("a", "ann", "draft", user_id="u:ann")
    reply, _ = await store.add("a", "bob", "re", user_id="u:bob", reply_to=first.id)
    assert reply.reply_to == first.id and (await store.get("a", reply.id)) == reply
    edited, done = await store.edit("a", first.id, "final", ("u:bob",), "here") or (None, 0)
    assert done is True and edited is not None
    assert (edited.text, edited.rev, edited.mentions, edited.mention_all) == (
        "final",
        1,
        ("u:bob",),
        "here",
    )
    assert edited.edited is not None and edited.edited >= first.ts
    assert await store.edit("a", first.id, "final") == (edited, False)  # the same text
    assert await store.edit("a", 99, "x") is None
    reacted, _ = await store.react("a", first.id, "👍", "u:bob", None) or (None, 0)
    assert reacted is not None and reacted.reactions == (("👍", ("u:bob",)),)
    assert reacted.rev == 2 and reacted.text == "final"
    assert await store.react("a", first.id, "👍", "u:bob", True) == (reacted, False)
    assert [e.text for e in await store.edits("a", first.id)] == ["draft"]
    assert await store.changes("a", 0, 10, 10) == [reacted]
    gone, _ = await store.delete("a", first.id) or (None, 0)
    assert gone is not None and (gone.text, gone.reactions, gone.rev) == ("", (), 3)
    assert await store.edits("a", first.id) == []
    assert await store.edit("a", first.id, "back") == (gone, False)
    assert await store.react("a", first.id, "👍", "u:bob", None) == (gone, False)
    assert await store.last_rev("a") == 3


async def test_search_sees_every_change_made_before_it_was_indexed(
    store: MessageStore,
) -> None:
    """New messages may be indexed after their commit: a search first indexes what is
    left, so an edit or a deletion made before that is what it finds."""
    kept, _ = await store.add("a", "ann", "alpha original")
    edited, _ = await store.add("a", "ann", "alpha draft")
    gone, _ = await store.add("a", "ann", "alpha secret")
    await store.edit("a", edited.id, "alpha final")
    await store.delete("a", gone.id)
    found = await store.search(parse_query("alpha"), None, 10, 0)
    assert sorted(m.text for m in found) == ["alpha final", "alpha original"]
    assert await store.search(parse_query("draft"), None, 10, 0) == []
    assert await store.search(parse_query("secret"), None, 10, 0) == []
    assert await store.index() == 0  # up to date
    await store.edit("a", kept.id, "beta now")  # indexed already: re-indexed at once
    assert [m.id for m in await store.search(parse_query("beta"), None, 10, 0)] == [kept.id]


async def test_client_id_makes_a_retry_return_the_stored_message(store: MessageStore) -> None:
    first, created = await store.add("a", "ann", "hi", "c-1")
    again, created_again = await store.add("a", "ann", "hi (retried)", "c-1")
    assert created and not created_again
    assert again == first
    # The same client_id from another name or in another room is another message.
    assert (await store.add("a", "bob", "hi", "c-1"))[1]
    assert (await store.add("b", "ann", "hi", "c-1"))[1]
    assert [m.id for m in (await store.recent("a", 10)).messages] == [1, 2]


async def test_a_message_added_with_read_by_is_read_up_to_by_that_account(
    store: Store,
) -> None:
    await store.add("a", "bob", "before")
    mine, _ = await store.add("a", "ann", "mine", "c-1", "acct-ann", "ann", read_by="acct-ann")
    await store.add("a", "bob", "after")
    assert [(s.room, s.last_read, s.last_id) for s in await store.room_states("acct-ann")] == [
        ("a", mine.id, 3)
    ]
    # A retry writes nothing: the read mark stays where it is, never goes back.
    await store.set_read("acct-ann", "a", 3)
    again, created = await store.add(
        "a", "ann", "mine", "c-1", "acct-ann", "ann", read_by="acct-ann"
    )
    assert not created and again == mine
    assert [s.last_read for s in await store.room_states("acct-ann")] == [3]
    # Without read_by nobody's read mark moves.
    await store.add("b", "ann", "elsewhere", None, "acct-ann", "ann")
    assert [s.room for s in await store.room_states("acct-ann")] == ["a"]
    # With mentions (PostgreSQL writes those in a transaction of several statements) too.
    await store.add(
        "c", "ann", "@bo hi", None, "acct-ann", "ann", mentions=("acct-bo",), read_by="acct-ann"
    )
    assert [(s.room, s.last_read) for s in await store.room_states("acct-ann")] == [
        ("a", 3),
        ("c", 1),
    ]


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


async def test_a_room_view_is_the_change_number_the_newest_page_and_the_newest_id(
    store: MessageStore,
) -> None:
    assert await store.view("a", 3) == RoomView(0, Page([], False), 0)
    for i in range(1, 6):
        await store.add("a", "ann", f"m{i}")
    await store.edit("a", 2, "m2, edited")
    view = await store.view("a", 3)
    assert view.rev == 1 and view.last_id == 5
    assert view.page == await store.recent("a", 3) and view.page.has_more
    view = await store.view("a", 10, after=3)
    assert [m.id for m in view.page.messages] == [4, 5] and not view.page.has_more
    # Nothing after ``after``: the room's newest id all the same.
    assert await store.view("a", 10, after=5) == RoomView(1, Page([], False), 5)


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


async def test_active_rooms_come_newest_first_a_page_at_a_time(store: MessageStore) -> None:
    assert await store.active_rooms(10) == []
    await store.add("a", "ann", "one")
    newest_a, _ = await store.add("a", "ann", "two")
    newest_b, _ = await store.add("b", "bob", "hi")
    newest_c, _ = await store.add("c", "cy", "hey")
    rooms = await store.active_rooms(10)
    newest = sorted([newest_a, newest_b, newest_c], key=lambda m: (-m.ts, m.room))
    assert [(r.room, r.last_ts) for r in rooms] == [(m.room, m.ts) for m in newest]
    first = await store.active_rooms(2)
    rest = await store.active_rooms(2, (first[-1].last_ts, first[-1].room))
    assert [r.room for r in first + rest] == [r.room for r in rooms]
    assert await store.active_rooms(2, (rooms[-1].last_ts, rooms[-1].room)) == []
    assert await store.last_message_times(["a", "c", "nowhere"]) == {
        "a": newest_a.ts,
        "c": newest_c.ts,
    }
    assert await store.last_message_times([]) == {}


async def test_active_rooms_of_one_millisecond_are_paged_by_name(store: MessageStore) -> None:
    # Many rooms written in one batch may share a timestamp: the cursor still moves on.
    await asyncio.gather(*(store.add(f"r{i:02d}", "ann", "hi") for i in range(30)))
    seen: list[str] = []
    after = None
    while True:
        page = await store.active_rooms(7, after)
        seen += [r.room for r in page]
        if len(page) < 7:
            break
        after = (page[-1].last_ts, page[-1].room)
    assert sorted(seen) == [f"r{i:02d}" for i in range(30)] and len(seen) == 30


async def test_the_sender_id_is_kept(store: MessageStore) -> None:
    msg, _ = await store.add("a", "ann", "hi", "c-1", "g:0123")
    assert msg.user_id == "g:0123"
    assert (await store.recent("a", 5)).messages[0].user_id == "g:0123"
    assert (await store.add("a", "ann", "no id"))[0].user_id is None


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


# -- upgrades: a database written by an earlier release ---------------------------------

RELEASE_2026_11_25 = Path(__file__).parent / "data" / "release-2026-11-25.db"
#: What the release of 2026-11-25 (commit 2732c56) stored, in tests/data/.
RELEASE_MESSAGES = {
    "lobby": [
        (1, "Ann", "hello 👋"),
        (2, "Ann", "  indented\n  code"),
        (3, "Ann", "<b>not bold</b>"),
        (4, "Bo", "reply from Bo"),
    ],
    "team": [(1, "Bo", "first"), (2, "Bo", "second"), (3, "Bo", "third")],
}


async def check_release_history(store: MessageStore) -> None:
    for room, expected in RELEASE_MESSAGES.items():
        page = await store.recent(room, 50)
        assert [(m.id, m.name, m.text) for m in page.messages] == expected
        assert all(m.user_id is None for m in page.messages)
        assert await store.last_id(room) == expected[-1][0]
    # The room list, the retry check and new ids carry on from what was there.
    assert {r.room for r in await store.active_rooms(10)} == {"lobby", "team"}
    again, created = await store.add("lobby", "Ann", "dup", "Ann-lobby-0")
    assert (again.id, again.text, created) == (1, "hello 👋", False)
    assert (await store.add("team", "Bo", "fourth", None, "g:1"))[0].id == 4


async def test_sqlite_opens_a_database_of_the_2026_11_25_release(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(RELEASE_2026_11_25, path)
    store = open_store(str(path))
    await store.open()
    try:
        await check_release_history(store)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SQLITE_SCHEMA_VERSION


async def test_sqlite_refuses_a_schema_newer_than_it_knows(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = open_store(str(path))
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="version 99"):
        await open_store(str(path)).open()
    assert path.read_bytes() == before


async def test_sqlite_processes_opening_one_file_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(RELEASE_2026_11_25, path)
    stores = [open_store(str(path)) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        await check_release_history(stores[3])
    finally:
        for s in stores:
            await s.close()


#: The PostgreSQL schema of the 2026-11-25 release (version 1), as it created it.
_RELEASE_2026_11_25_POSTGRES = """
CREATE TABLE chatapp_schema (version INTEGER NOT NULL);
INSERT INTO chatapp_schema VALUES (1);
CREATE TABLE rooms (room TEXT PRIMARY KEY, last_id BIGINT NOT NULL);
CREATE TABLE messages (
    room TEXT NOT NULL, id BIGINT NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL,
    ts BIGINT NOT NULL, client_id TEXT, PRIMARY KEY (room, id)
);
CREATE UNIQUE INDEX messages_client_id
    ON messages (room, name, client_id) WHERE client_id IS NOT NULL;
"""


async def make_postgres_release_2026_11_25(pg_url: str) -> None:
    """The schema of ``pg_url`` as the 2026-11-25 release left it, with its messages."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{await conn.fetchval("SHOW search_path")}"')
        await conn.execute(_RELEASE_2026_11_25_POSTGRES)
        for room, rows in RELEASE_MESSAGES.items():
            sent: dict[str, int] = {}  # client ids as the page made them: name-room-count
            for msg_id, name, text in rows:
                client_id = f"{name}-{room}-{sent.get(name, 0)}"
                sent[name] = sent.get(name, 0) + 1
                await conn.execute(
                    "INSERT INTO messages VALUES ($1, $2, $3, $4, $5, $6)",
                    *(room, msg_id, name, text, 1_795_598_574_644 + msg_id, client_id),
                )
            await conn.execute("INSERT INTO rooms VALUES ($1, $2)", room, rows[-1][0])
    finally:
        await conn.close()


async def test_postgres_opens_a_database_of_the_2026_11_25_release(pg_url: str) -> None:
    await make_postgres_release_2026_11_25(pg_url)
    store = open_store(pg_url)
    await store.open()
    try:
        await check_release_history(store)
    finally:
        await store.close()


async def test_retries_are_recognised_by_sender_id_whatever_the_name(store: MessageStore) -> None:
    first, created = await store.add("a", "ann", "hi", "c-1", "g:ann")
    assert created
    again, created = await store.add("a", "Annie", "hi", "c-1", "g:ann")  # renamed since
    assert (again, created) == (first, False)
    other, created = await store.add("a", "ann", "hi", "c-1", "g:someone-else")
    assert created and other.id == first.id + 1
    # Messages without a sender id (stored before ids existed) are matched by name.
    old, _ = await store.add("a", "bo", "x", "c-1")
    assert (await store.add("a", "bo", "x", "c-1")) == (old, False)


RELEASE_2026_12_03 = Path(__file__).parent / "data" / "release-2026-12-03.db"
#: What the release of 2026-12-03 (commit 867aa46, schema version 2) stored, in tests/data/:
#: (room, id, name, text, client_id, user_id).
RELEASE_2026_12_03_MESSAGES = [
    ("lobby", 1, "Ann", "hello 👋", "c1", "g:aaaa"),
    ("lobby", 2, "Bo", "hi Ann", "c1", "g:bbbb"),
    ("lobby", 3, "Ann", "<b>not bold</b>", None, "g:aaaa"),
    ("team", 1, "Bo", "first", "c2", "g:bbbb"),
    ("team", 2, "n-guest", "keyless", None, "n:cccc"),
]


async def check_release_2026_12_03(store: Store) -> None:
    for room in ("lobby", "team"):
        expected = [
            (i, name, text, user)
            for r, i, name, text, _, user in RELEASE_2026_12_03_MESSAGES
            if r == room
        ]
        page = await store.recent(room, 50)
        assert [(m.id, m.name, m.text, m.user_id) for m in page.messages] == expected
        assert await store.last_id(room) == expected[-1][0]
    again, created = await store.add("lobby", "Annie", "retry", "c1", "g:aaaa")
    assert (again.id, created) == (1, False)
    assert (await store.add("team", "Bo", "third", None, "g:bbbb"))[0].id == 3
    # The schema change of this version: accounts.
    account = Account("u:1", "ann", "Ann", "admin", 1)
    await store.add_account(account, ["ann"], None)
    assert await store.find_account("ann") == (account, None)


async def test_sqlite_opens_a_database_of_the_2026_12_03_release(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(RELEASE_2026_12_03, path)
    store = open_store(str(path))
    await store.open()
    try:
        await check_release_2026_12_03(store)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SQLITE_SCHEMA_VERSION


#: The PostgreSQL schema version 2 migration, as the 2026-12-03 release ran it.
_RELEASE_2026_12_03_POSTGRES_V2 = """
ALTER TABLE messages ADD COLUMN user_id TEXT;
DROP INDEX messages_client_id;
CREATE UNIQUE INDEX messages_client_id
    ON messages (room, name, client_id) WHERE client_id IS NOT NULL AND user_id IS NULL;
CREATE UNIQUE INDEX messages_retry
    ON messages (room, user_id, client_id) WHERE client_id IS NOT NULL AND user_id IS NOT NULL;
ALTER TABLE rooms ADD COLUMN last_ts BIGINT NOT NULL DEFAULT 0;
UPDATE rooms r SET last_ts = m.ts FROM messages m WHERE m.room = r.room AND m.id = r.last_id;
CREATE INDEX rooms_recent ON rooms (last_ts DESC, room);
UPDATE chatapp_schema SET version = 2;
"""


async def test_postgres_opens_a_database_of_the_2026_12_03_release(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{await conn.fetchval("SHOW search_path")}"')
        await conn.execute(_RELEASE_2026_11_25_POSTGRES)
        await conn.execute("DELETE FROM chatapp_schema")
        await conn.execute("INSERT INTO chatapp_schema VALUES (1)")
        await conn.execute(_RELEASE_2026_12_03_POSTGRES_V2)
        for room, msg_id, name, text, client_id, user_id in RELEASE_2026_12_03_MESSAGES:
            await conn.execute(
                "INSERT INTO messages VALUES ($1, $2, $3, $4, $5, $6, $7)",
                *(room, msg_id, name, text, 1_796_298_704_589, client_id, user_id),
            )
            await conn.execute(
                "INSERT INTO rooms VALUES ($1, $2, $3) ON CONFLICT (room) DO UPDATE "
                "SET last_id = EXCLUDED.last_id",
                room,
                msg_id,
                1_796_298_704_589,
            )
    finally:
        await conn.close()
    store = open_store(pg_url)
    await store.open()
    try:
        await check_release_2026_12_03(store)
    finally:
        await store.close()


async def test_who_sent_a_message_is_kept(store: MessageStore) -> None:
    """An account's handle and whether it is a bot come back as they were stored."""
    guest, _ = await store.add("a", "Bo", "hi", None, "g:bo")
    member, _ = await store.add("a", "Ann A", "hello", None, "u:ann", "ann", False)
    bot, _ = await store.add("a", "CI", "built", "c-1", "u:ci", "ci", True)
    page = await store.recent("a", 10)
    assert page.messages == [guest, member, bot]
    assert [(m.handle, m.bot) for m in page.messages] == [
        (None, False),
        ("ann", False),
        ("ci", True),
    ]
    assert [m.to_dict().get("handle") for m in page.messages] == [None, "ann", "ci"]
    assert [m.to_dict().get("bot") for m in page.messages] == [None, None, True]
    assert (await store.add("a", "CI", "built", "c-1", "u:ci", "ci", True)) == (bot, False)
