"""Accounts on every store: a handle is one person's, passwords are kept only as argon2id
hashes, and the same holds for processes sharing one database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from chatapp.accounts import AccountError, Accounts
from chatapp.passwords import MAX_PASSWORD_BYTES, PasswordError, Passwords, check_password
from chatapp.store import Ban, LogEntry, SignIn, Store, open_store
from chatapp.store.base import now_ms

OpenAccounts = Callable[[], Awaitable[Accounts]]

#: One hasher for the module: argon2id at its real cost is what is tested.
PASSWORDS = Passwords()


@pytest.fixture
async def open_accounts(db: str) -> AsyncIterator[OpenAccounts]:
    """Opens the accounts of one database, each through its own store (as separate
    processes would)."""
    stores: list[Store] = []

    async def open_one() -> Accounts:
        store = open_store(db)
        await store.open()
        stores.append(store)
        return Accounts(store, PASSWORDS)

    yield open_one
    for store in stores:
        await store.close()


@pytest.fixture
async def accounts(open_accounts: OpenAccounts) -> Accounts:
    return await open_accounts()


async def test_an_account_is_found_by_its_handle_in_any_case(accounts: Accounts) -> None:
    ann = await accounts.add("Ann", None, role="admin")
    assert ann.id.startswith("u:") and ann.handle == "Ann" and ann.display_name == "Ann"
    assert ann.role == "admin"
    for written in ("Ann", "ann", "ANN"):
        assert await accounts.get(written) == ann
    bob = await accounts.add("bob", None, display_name="Bob Builder")
    assert (bob.role, bob.display_name) == ("member", "Bob Builder")
    assert [a.handle for a in await accounts.all()] == ["Ann", "bob"]


async def test_a_look_alike_of_a_handle_neither_registers_nor_names_the_account(
    accounts: Accounts,
) -> None:
    await accounts.add("ann", None)
    await accounts.add("bill", None)
    for impostor in ("ANN", "\u0430nn", "\uff41nn", "biII", "bi11", "BILL"):
        with pytest.raises(AccountError, match="is taken"):
            await accounts.add(impostor, None)
        with pytest.raises(AccountError, match="is taken"):
            await accounts.check_available(impostor)
    assert await accounts.find("\u0430nn") is None  # not a way to log in as ann either
    assert [a.handle for a in await accounts.all()] == ["ann", "bill"]
    assert (await accounts.add("anne", None)).handle == "anne"


async def test_invalid_handles_names_and_roles_are_refused(accounts: Accounts) -> None:
    with pytest.raises(AccountError, match="must not contain spaces or @"):
        await accounts.add("ann b", None)
    with pytest.raises(AccountError, match="invalid name"):
        await accounts.add("ann", None, display_name="\u202e")
    with pytest.raises(AccountError, match="invalid role"):
        await accounts.add("ann", None, role="owner")
    assert await accounts.all() == []


async def test_two_processes_registering_look_alikes_at_once_make_one_account(
    open_accounts: OpenAccounts,
) -> None:
    first, second = await open_accounts(), await open_accounts()
    for round_ in range(5):
        outcomes = await asyncio.gather(
            first.add(f"race{round_}", None),
            second.add(f"RACE{round_}", None),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["Account", "AccountError"]
    assert len(await first.all()) == 5


async def test_handles_are_named_from_memory_and_a_new_account_at_once(
    open_accounts: OpenAccounts,
) -> None:
    """What mentions resolve against: the accounts of the last refresh, and one another
    process (or the ``users`` command) made since, found in the database."""
    server, other = await open_accounts(), await open_accounts()
    ann = await other.add("Ann", None)
    await server.refresh()
    carol = await other.add("Carol", None)  # after the refresh: not in memory yet
    await other.add("bill", None)
    named = await server.named(["ann", "carol", "\u0430nn", "biii", "nobody", "bill"])
    assert named == {"ann": ann, "carol": carol, "bill": await other.get("bill")}
    await other.remove("carol")
    await server.refresh()
    assert await server.named(["carol"]) == {}


async def test_a_handle_is_found_however_its_letters_are_composed(accounts: Accounts) -> None:
    zoe = await accounts.add("Zo\u00eb", None)
    assert await accounts.get(" zoe\u0308 ") == zoe  # decomposed, lower case, spaces around


async def test_only_the_password_logs_in(accounts: Accounts) -> None:
    ann = await accounts.add("ann", await PASSWORDS.hash("correct horse"))
    assert await accounts.authenticate("ann", "correct horse") == ann
    assert await accounts.authenticate("ANN", "correct horse") == ann
    assert await accounts.authenticate("ann", "correct horsE") is None
    assert await accounts.authenticate("ann", "") is None
    assert await accounts.authenticate("\u0430nn", "correct horse") is None
    assert await accounts.authenticate("nobody", "correct horse") is None
    await accounts.add("nopassword", None)  # e.g. a bot, or signed in by the proxy
    assert await accounts.authenticate("nopassword", "") is None


async def test_a_new_password_replaces_the_old(accounts: Accounts) -> None:
    await accounts.add("ann", await PASSWORDS.hash("first password"))
    await accounts.set_password("Ann", await PASSWORDS.hash("second password"))
    assert await accounts.authenticate("ann", "first password") is None
    assert await accounts.authenticate("ann", "second password") is not None
    with pytest.raises(AccountError, match="no account with the handle 'bob'"):
        await accounts.set_password("bob", None)


async def test_roles_change_and_a_removed_account_frees_its_handle(accounts: Accounts) -> None:
    ann = await accounts.add("ann", await PASSWORDS.hash("ann's password"))
    assert (await accounts.set_role("ann", "admin")).id == ann.id
    assert (await accounts.get("ann")).role == "admin"
    with pytest.raises(AccountError, match="invalid role"):
        await accounts.set_role("ann", "root")
    assert (await accounts.remove("ANN")).id == ann.id
    assert await accounts.find("ann") is None
    assert await accounts.authenticate("ann", "ann's password") is None
    with pytest.raises(AccountError, match="no account"):
        await accounts.remove("ann")
    again = await accounts.add("\u0430nn", None)  # the handle and its look-alikes are free
    assert again.id != ann.id


async def test_the_database_holds_an_argon2id_hash_and_never_the_password(
    db: str, accounts: Accounts
) -> None:
    await accounts.add("ann", await PASSWORDS.hash("a secret phrase"))
    if db.startswith("postgresql"):
        conn = await asyncpg.connect(db)
        try:
            stored = await conn.fetchval("SELECT password FROM accounts")
        finally:
            await conn.close()
    else:
        with sqlite3.connect(db) as conn:
            (stored,) = conn.execute("SELECT password FROM accounts").fetchone()
    assert stored.startswith("$argon2id$") and "a secret phrase" not in stored


def test_a_password_is_8_characters_to_1024_bytes() -> None:
    assert check_password("12345678") == "12345678"
    assert check_password("\U0001f600" * 256) == "\U0001f600" * 256  # 1024 bytes
    for bad in ["1234567", "\U0001f600" * 257, "x" * (MAX_PASSWORD_BYTES + 1), "\ud800" * 9]:
        with pytest.raises(PasswordError):
            check_password(bad)


def test_a_hash_verifies_its_password_only() -> None:
    stored = PASSWORDS.hash_now("a secret phrase")
    assert PASSWORDS.verify_now(stored, "a secret phrase")
    assert not PASSWORDS.verify_now(stored, "a secret phrasE")
    assert not PASSWORDS.verify_now("not a hash", "a secret phrase")
    assert not PASSWORDS.verify_now(stored, "x" * 2000)  # not hashed at all
    assert not PASSWORDS.needs_rehash(stored)
    assert PASSWORDS.needs_rehash("not a hash")


async def test_sign_ins_bans_private_rooms_and_the_log_on_every_store(db: str) -> None:
    """The store side of sign-ins, bans, private rooms and the moderation log, the same
    on SQLite and PostgreSQL."""
    store = open_store(db)
    await store.open()
    try:
        accounts = Accounts(store, PASSWORDS)
        ann = await accounts.add("ann", None)
        now = now_ms()
        one = SignIn("s1", ann.id, now, now + 1000, "10.0.0.1", "browser")
        two = SignIn("s2", ann.id, now + 1, now + 5000, "10.0.0.2", "phone")
        await store.add_sign_in(one, "hash-1")
        await store.add_sign_in(two, "hash-2")
        assert await store.find_sign_in("hash-1", now) == (one, ann)
        assert await store.find_sign_in("hash-1", now + 1000) is None  # expired
        assert await store.list_sign_ins(ann.id, now) == [two, one]
        assert await store.live_sign_ins(["s1", "s2", "nope"], now + 2000) == {"s2"}
        assert await store.remove_sign_ins(ann.id, ["s2"], now) == 1
        assert await store.live_sign_ins(["s1", "s2"], now) == {"s1"}

        entry = LogEntry(now, "boss", "ban", "ann", "")
        forever = Ban("b1", "account", ann.id, 0, "spam", now, "u:boss")
        brief = Ban("b2", "address", "10.0.0.9", now + 10, "", now + 1, "u:boss")
        await store.add_ban(forever, entry)
        await store.add_ban(brief, LogEntry(now + 1, "boss", "ban", "10.0.0.9", "1 minutes"))
        assert await store.bans(now) == [brief, forever]
        assert await store.bans(now + 10) == [forever]  # the brief one is over
        assert await store.remove_ban("b1", LogEntry(now + 2, "boss", "unban", "b1", ""))
        assert not await store.remove_ban("b1", LogEntry(now + 3, "boss", "unban", "b1", ""))
        assert [e.action for e in await store.mod_log(10)] == ["unban", "ban", "ban"]
        assert [e.action for e in await store.mod_log(1, before=now + 2)] == ["ban"]

        assert await store.set_private(
            "secret", True, LogEntry(now, "boss", "private", "secret", "")
        )
        assert not await store.set_private("secret", True, entry)
        assert await store.set_member("secret", ann.id, True, entry)
        assert not await store.set_member("secret", ann.id, True, entry)
        assert await store.private_rooms() == {"secret": {ann.id}}
        assert await store.set_private("secret", False, entry)
        assert await store.private_rooms() == {}
        # Made private with its first members at once (each logged).
        assert await store.set_private("team", True, entry, [(ann.id, entry), ("a-2", entry)])
        assert await store.private_rooms() == {"team": {ann.id, "a-2"}}
        assert len(await store.mod_log(100)) == 9

        # Removing the account ends its sign-ins with it.
        await accounts.remove("ann")
        assert await store.find_sign_in("hash-1", now) is None
    finally:
        await store.close()
