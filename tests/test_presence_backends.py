"""One suite for presence in memory and in Redis, plus what only a cluster needs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from chatapp.presence import MemoryPresence, Presence, member, people
from chatapp.presence.redis import RedisPresence

from .services import REDIS_URL, TcpProxy, eventually, service_port, with_port

OpenPresence = Callable[..., Awaitable[Presence]]
Change = tuple[str, str | None, str | None]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_prefix")
    return str(request.param)


@pytest.fixture
async def open_presence(
    backend: str, request: pytest.FixtureRequest, tcp_proxy: type[TcpProxy]
) -> AsyncIterator[OpenPresence]:
    """Opens presence instances; with Redis, instances sharing a prefix are processes.

    (They close before any proxy of the test does, so that they clean up after themselves.)
    """
    opened: list[Presence] = []

    async def open_one(url: str = REDIS_URL, ttl: float = 20.0) -> Presence:
        presence: Presence
        if backend == "memory":
            presence = MemoryPresence()
        else:
            presence = RedisPresence(url, request.getfixturevalue("redis_prefix"), ttl)
        await presence.start()
        opened.append(presence)
        return presence

    yield open_one
    for presence in opened:
        await presence.close()


@pytest.fixture
async def presence(open_presence: OpenPresence) -> Presence:
    return await open_presence()


async def test_a_name_is_online_while_any_of_its_tabs_is(presence: Presence) -> None:
    assert await presence.join("a", "c1", "ann") is True
    assert await presence.join("a", "c2", "ann") is False
    assert sorted(await presence.users("a")) == ["ann"]
    assert await presence.leave("a", "c1", "ann") is False
    assert sorted(await presence.users("a")) == ["ann"]
    assert await presence.leave("a", "c2", "ann") is True
    assert sorted(await presence.users("a")) == []


async def test_people_are_listed_by_name_case_insensitively() -> None:
    keys = [member("u1", "bob"), member("u2", "Ann"), "carl", member("u4", "Émile")]
    keys += [member("u5", "ann", "ann", bot=True), member("u0", "ann")]
    listed = people(keys)
    assert [p["name"] for p in listed] == ["Ann", "ann", "ann", "bob", "carl", "Émile"]
    # Same names: by user id; a bare name (an earlier release's) has none.
    assert [p["user_id"] for p in listed] == ["u2", "u0", "u5", "u1", None, "u4"]
    assert listed[2] == {"user_id": "u5", "name": "ann", "handle": "ann", "bot": True}


async def test_rooms_are_separate_and_counted_by_name(presence: Presence) -> None:
    await presence.join("a", "c1", "ann")
    await presence.join("a", "c2", "ann")
    await presence.join("a", "c3", "bob")
    await presence.join("b", "c4", "ann")
    assert sorted(await presence.users("b")) == ["ann"]
    assert await presence.counts() == {"a": 2, "b": 1}
    await presence.leave("b", "c4", "ann")
    assert await presence.counts() == {"a": 2}


async def test_leaving_twice_or_unknown_changes_nothing(presence: Presence) -> None:
    await presence.join("a", "c1", "ann")
    assert await presence.leave("a", "c1", "ann") is True
    assert await presence.leave("a", "c1", "ann") is False
    assert await presence.leave("a", "nobody", "zed") is False
    assert await presence.counts() == {}


async def test_rename_is_a_leave_and_a_join(presence: Presence) -> None:
    await presence.join("a", "c1", "ann")
    await presence.join("a", "c2", "ann")
    assert await presence.leave("a", "c1", "ann") is False
    assert await presence.join("a", "c1", "anne") is True
    assert sorted(await presence.users("a")) == ["ann", "anne"]


# -- Redis only: several processes --------------------------------------------------------


def recorder(presence: Presence) -> list[Change]:
    changes: list[Change] = []

    async def record(room: str, joined: str | None, left: str | None) -> None:
        changes.append((room, joined, left))

    presence.on_change(record)
    return changes


@pytest.fixture
async def proxied_redis(tcp_proxy: type[TcpProxy]) -> tuple[TcpProxy, str]:
    proxy = await tcp_proxy(*service_port(REDIS_URL, 6379)).start()
    return proxy, with_port(REDIS_URL, proxy.port)


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_tabs_are_merged_across_processes(open_presence: OpenPresence) -> None:
    one, two = await open_presence(), await open_presence()
    assert await one.join("a", "c1", "ann") is True
    assert await two.join("a", "c2", "ann") is False
    assert await two.join("a", "c3", "bob") is True
    assert sorted(await one.users("a")) == ["ann", "bob"]
    assert await one.counts() == {"a": 2}
    assert await one.leave("a", "c1", "ann") is False
    assert await two.leave("a", "c2", "ann") is True
    assert sorted(await one.users("a")) == ["bob"]


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_silent_process_is_reaped_and_announced_once(
    open_presence: OpenPresence, proxied_redis: tuple[TcpProxy, str]
) -> None:
    proxy, url = proxied_redis
    one, two = await open_presence(ttl=1.0), await open_presence(ttl=1.0)
    lost = await open_presence(url=url, ttl=1.0)
    changes = recorder(one)
    seen_by_two = recorder(two)
    await one.join("a", "c1", "ann")
    await lost.join("a", "c2", "ann")
    await lost.join("a", "c3", "cat")
    await lost.join("b", "c4", "dan")
    assert sorted(await one.users("a")) == ["ann", "cat"]

    proxy.sever()  # the process can no longer renew its heartbeat

    async def reaped() -> bool:
        return await one.counts() == {"a": 1}

    await eventually(reaped, what="the silent process's users to leave")
    assert sorted(await one.users("a")) == ["ann"]
    await eventually(lambda: _settled(changes, seen_by_two, 2))
    # Whoever reaped announced each departed name once; "ann" is still on another tab.
    assert sorted(changes + seen_by_two) == [("a", None, "cat"), ("b", None, "dan")]
    # Cut off, the process answers from its own connections.
    assert sorted(await lost.users("a")) == ["ann", "cat"]

    restored = recorder(lost)
    proxy.restore()

    async def back() -> bool:
        in_a, in_b = await one.users("a"), await one.users("b")
        return sorted(in_a) == ["ann", "cat"] and in_b == ["dan"]

    await eventually(back, what="the process to re-register its users")
    # Its return refreshes the rooms' lists, without "joined" notices.
    await eventually(lambda: _settled(restored, [], 2))
    assert sorted(restored) == [("a", None, None), ("b", None, None)]


async def _settled(first: list[Change], second: list[Change], count: int) -> bool:
    return len(first) + len(second) >= count


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_presence_is_rebuilt_after_redis_loses_its_data(
    open_presence: OpenPresence, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    from redis import asyncio as aioredis

    caplog.set_level(logging.INFO, logger="chatapp.presence.redis")

    one, two = await open_presence(ttl=1.0), await open_presence(ttl=1.0)
    await one.join("a", "c1", "ann")
    await two.join("a", "c2", "bob")
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}:presence:*")]
        await client.delete(*keys)  # what a restart without persistence leaves
    finally:
        await client.aclose()

    async def rebuilt() -> bool:
        return sorted(await one.users("a")) == ["ann", "bob"]

    await eventually(rebuilt, what="presence to be re-registered")
    assert await two.leave("a", "c2", "bob") is True
    assert await one.counts() == {"a": 1}

    # No call failed, so only the heartbeats can tell the operator what happened.
    async def both_said_so() -> bool:
        lost = "Redis had lost this process's entries"
        return sum(lost in r.getMessage() for r in caplog.records) >= 2

    await eventually(both_said_so, what="both processes to log that Redis lost their entries")


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_changes_made_while_redis_was_unreachable_reach_it_later(
    open_presence: OpenPresence, proxied_redis: tuple[TcpProxy, str]
) -> None:
    proxy, url = proxied_redis
    one = await open_presence()
    cut_off = await open_presence(url=url, ttl=2.0)
    await cut_off.join("a", "c1", "ann")
    proxy.sever()
    assert await cut_off.join("a", "c2", "bob") is True  # its own view: bob is new
    assert await cut_off.leave("a", "c1", "ann") is True
    assert sorted(await cut_off.users("a")) == ["bob"]
    assert await cut_off.counts() == {"a": 1}
    proxy.restore()

    async def caught_up() -> bool:
        return sorted(await one.users("a")) == ["bob"]

    await eventually(caught_up, what="Redis to learn what changed meanwhile")
