"""Several real chatapp processes sharing Redis and PostgreSQL behave as one chat."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from redis import asyncio as aioredis

from .conftest import NO_RATE_LIMITS, ClientFactory, ServerFactory, require_service
from .services import REDIS_URL, StartCluster, TcpProxy, eventually, service_port, with_port
from .support import Client, Server


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


def presence_events(client: Client) -> list[dict[str, Any]]:
    return list(client.of("presence"))


async def test_messages_reach_every_process_once_in_id_order(
    cluster: StartCluster, make_client: ClientFactory
) -> None:
    servers = await cluster(3)
    clients = [make_client() for _ in range(6)]
    for i, client in enumerate(clients):
        await client.connect(servers[i % 3].url, room="team", name=f"user{i}")
    elsewhere = make_client()
    await elsewhere.connect(servers[0].url, room="other", name="lurker")

    async def send(client: Client, i: int) -> list[int]:
        acks = [await client.send(f"{i}-{n}", client_id=f"{i}-{n}") for n in range(10)]
        assert all(ack["ok"] for ack in acks)
        return [ack["message"]["id"] for ack in acks]

    sent = await asyncio.gather(*(send(c, i) for i, c in enumerate(clients)))
    assert sorted(i for ids in sent for i in ids) == list(range(1, 61))
    for client in clients:
        await client.wait_for("message", count=60)
        assert client.message_ids() == list(range(1, 61))
        texts = {m["text"] for m in client.of("message")}
        assert texts == {f"{i}-{n}" for i in range(6) for n in range(10)}
    # One more message, after everything else, and the other room still saw nothing.
    await clients[0].send("last")
    await elsewhere.send("mine")
    await clients[5].wait_for("message", lambda m: m["text"] == "last")
    assert [m["text"] for m in elsewhere.of("message")] == ["mine"]


async def test_typing_crosses_processes(cluster: StartCluster, make_client: ClientFactory) -> None:
    one, two = await cluster(2)
    ann, bob = make_client(), make_client()
    await ann.connect(one.url, room="team", name="ann")
    bob_id = (await bob.connect(two.url, room="team", name="bob"))["user_id"]
    assert (await bob.call("typing", {"typing": True}))["ok"]
    guest: dict[str, object] = {}  # a guest's entry says nothing more
    assert await ann.wait_for("typing") == {
        "name": "bob",
        "user_id": bob_id,
        **guest,
        "typing": True,
    }
    await bob.send("done")
    assert await ann.wait_for("typing", lambda t: not t["typing"]) == {
        "name": "bob",
        "user_id": bob_id,
        **guest,
        "typing": False,
    }
    assert bob.of("typing") == []


async def test_presence_and_head_counts_are_cluster_wide(
    cluster: StartCluster, make_client: ClientFactory
) -> None:
    one, two = await cluster(2)
    ann, bob, ann_tab, carl = make_client(), make_client(), make_client(), make_client()
    ann_key = "ann-browser-key-0001"
    ann_id = (await ann.connect(one.url, room="team", name="ann", key=ann_key))["user_id"]
    welcome = await bob.connect(two.url, room="team", name="bob")
    assert welcome["users"] == ["ann", "bob"]
    guest: dict[str, object] = {}  # a guest's entry says nothing more
    people = [
        {"user_id": ann_id, "name": "ann", **guest},
        {"user_id": welcome["user_id"], "name": "bob", **guest},
    ]
    assert welcome["people"] == people
    joined = await ann.wait_for("presence", lambda p: p.get("joined") == "bob")
    assert joined == {"room": "team", "users": ["ann", "bob"], "people": people, "joined": "bob"}

    # A second tab of ann (same browser) on the other process is no news; carl is.
    tab = await ann_tab.connect(two.url, room="team", name="ann", key=ann_key)
    assert tab["users"] == ["ann", "bob"] and tab["user_id"] == ann_id
    await carl.connect(one.url, room="team", name="carl")
    await bob.wait_for("presence", lambda p: p.get("joined") == "carl")
    assert [p.get("joined") for p in presence_events(bob)] == ["carl"]
    for server in (one, two):
        status, rooms = await get_json(f"{server.url}/api/rooms")
        assert status == 200
        assert [(r["room"], r["users"]) for r in rooms] == [("team", 3)]

    # ann leaves only when her last tab, on either process, does.
    await ann.close()
    await carl.close()
    await bob.wait_for("presence", lambda p: p.get("left") == "carl")
    assert [p.get("left") for p in presence_events(bob)] == [None, "carl"]
    await ann_tab.close()
    left = await bob.wait_for("presence", lambda p: p.get("left") == "ann")
    assert left == {"room": "team", "users": ["bob"], "people": people[1:], "left": "ann"}
    _, rooms = await get_json(f"{one.url}/api/rooms")
    assert [(r["room"], r["users"]) for r in rooms] == [("team", 1)]


async def test_catch_up_on_another_process_gets_exactly_what_was_missed(
    cluster: StartCluster, make_client: ClientFactory
) -> None:
    one, two, three = await cluster(3)
    reader, writer = make_client(), make_client()
    await reader.connect(one.url, room="team", name="reader")
    await writer.connect(two.url, room="team", name="writer")
    for n in range(3):
        await writer.send(f"seen {n}")
    await reader.wait_for("message", count=3)
    await reader.close()
    for n in range(5):
        await writer.send(f"missed {n}")

    back = make_client()
    welcome = await back.connect(three.url, room="team", name="reader", since=3)
    assert [m["id"] for m in welcome["history"]] == [4, 5, 6, 7, 8]
    assert [m["text"] for m in welcome["history"]] == [f"missed {n}" for n in range(5)]
    assert welcome["has_more"] is False
    await writer.send("live")
    live = await back.wait_for("message")
    assert (live["id"], live["text"]) == (9, "live")


async def test_a_killed_process_loses_no_acked_message_and_its_users_leave(
    cluster: StartCluster, make_client: ClientFactory
) -> None:
    survivor, doomed = await cluster(2, "--presence-ttl", "2")
    doomed.allow_errors = True  # SIGKILL: no clean exit
    ann, bob = make_client(), make_client()
    await ann.connect(survivor.url, room="team", name="ann")
    await bob.connect(doomed.url, room="team", name="bob")
    await ann.wait_for("presence", lambda p: p.get("joined") == "bob")
    acked = [(await bob.send(f"before the crash {n}"))["message"]["id"] for n in range(5)]
    # Killed once its messages have gone out through Redis: this test is about the store,
    # presence and catching up. (Killed between a commit and its publish, the others see
    # that message only as a gap, filled from the store when the room's next one arrives.)
    await ann.wait_for("message", lambda m: m["id"] == acked[-1])

    await doomed.stop(signal.SIGKILL)

    left = await ann.wait_for("presence", lambda p: p.get("left") == "bob", timeout=30)
    assert left["users"] == ["ann"]
    status, page = await get_json(f"{survivor.url}/api/rooms/team/messages")
    assert status == 200
    assert [m["id"] for m in page["messages"]] == acked == [1, 2, 3, 4, 5]
    # bob's client reconnects to the survivor and catches up from the last id it saw.
    back = make_client()
    welcome = await back.connect(survivor.url, room="team", name="bob", since=2)
    assert [m["id"] for m in welcome["history"]] == [3, 4, 5]
    await ann.wait_for("presence", lambda p: p.get("joined") == "bob")


async def _chatting_through_a_redis_proxy(
    cluster: StartCluster, make_client: ClientFactory, tcp_proxy: type[TcpProxy]
) -> tuple[TcpProxy, Server, Server, Client, Client]:
    """Two processes whose Redis traffic goes through a proxy; ann on the first and bob on
    the second, in room "team", have exchanged one message."""
    proxy = await tcp_proxy(*service_port(REDIS_URL, 6379)).start()
    one, two = await cluster(2, redis_url=with_port(REDIS_URL, proxy.port))
    ann, bob = make_client(), make_client()
    await ann.connect(one.url, room="team", name="ann")
    await bob.connect(two.url, room="team", name="bob")
    await ann.send("before")
    await bob.wait_for("message", lambda m: m["text"] == "before")
    return proxy, one, two, ann, bob


async def test_fan_out_resumes_by_itself_after_redis_was_unreachable(
    cluster: StartCluster,
    make_client: ClientFactory,
    tcp_proxy: type[TcpProxy],
    redis_prefix: str,
) -> None:
    proxy, one, two, ann, bob = await _chatting_through_a_redis_proxy(
        cluster, make_client, tcp_proxy
    )

    proxy.sever()

    async def not_ready() -> bool:
        status, body = await get_json(f"{one.url}/readyz")
        return status == 503 and "redis" in body["problems"]

    await eventually(not_ready, what="/readyz to report Redis")
    # The process keeps serving its own clients: messages are acked, stored and delivered
    # here; they reach the other process's clients once Redis is back.
    acks = [await ann.send(f"during {n}") for n in range(3)]
    assert [a["message"]["id"] for a in acks] == [2, 3, 4]
    await ann.wait_for("message", count=4)
    # Redis comes back as a restart without persistence would leave it: empty.
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        await redis.delete(*[k async for k in redis.scan_iter(match=f"{redis_prefix}:*")])
    finally:
        await redis.aclose()

    proxy.restore()

    # The listener may still be waiting out its reconnect backoff (up to 30 s); the
    # self-check restarts it within about 8 s of Redis being back. Once subscribed, each
    # process catches up from the store: no later message is needed for 2-4 to arrive.
    await bob.wait_for("message", count=4, timeout=30)
    assert bob.message_ids() == [1, 2, 3, 4]

    async def ready() -> bool:
        return all([(await get_json(f"{s.url}/readyz"))[0] == 200 for s in (one, two)])

    await eventually(ready, timeout=30, what="both processes to be ready again")
    await bob.send("after")
    await ann.wait_for("message", lambda m: m["text"] == "after")
    assert ann.message_ids() == [1, 2, 3, 4, 5]
    # Each process registered its users again; clients got the lists refreshed.
    refresh = await bob.wait_for("presence", lambda p: p["users"] == ["ann", "bob"])
    assert set(refresh) == {"room", "users", "people"}  # neither joined nor left
    assert [p["name"] for p in refresh["people"]] == ["ann", "bob"]
    carl = make_client()
    assert (await carl.connect(one.url, room="team", name="carl"))["users"] == [
        "ann",
        "bob",
        "carl",
    ]


async def test_readyz_reports_database_and_redis(
    start_server: ServerFactory,
    cluster: StartCluster,
    pg_url: str,
    tcp_proxy: type[TcpProxy],
) -> None:
    alone = await start_server()
    assert await get_json(f"{alone.url}/readyz") == (200, {"status": "ready"})

    proxy = await tcp_proxy("127.0.0.1", service_port(pg_url, 5432)[1]).start()
    (server,) = await cluster(1, db=with_port(pg_url, proxy.port))
    assert await get_json(f"{server.url}/readyz") == (200, {"status": "ready"})
    assert (await get_json(f"{server.url}/healthz"))[0] == 200
    proxy.sever()
    status, body = await get_json(f"{server.url}/readyz")
    assert (status, body) == (503, {"status": "not ready", "problems": {"database": "unreachable"}})
    proxy.restore()

    async def ready() -> bool:
        return (await get_json(f"{server.url}/readyz"))[0] == 200

    await eventually(ready, what="/readyz to recover with the database")


async def test_redis_over_a_unix_socket(
    cluster: StartCluster, make_client: ClientFactory, tmp_path: Path
) -> None:
    server = shutil.which("redis-server")
    require_service(server is not None, "redis-server is not installed")
    assert server is not None
    sock = tmp_path / "redis.sock"
    redis = await asyncio.create_subprocess_exec(
        *(server, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        await eventually(_exists(sock), what="redis-server to listen")
        one, two = await cluster(2, redis_url=f"unix://{sock}?db=0")
        ann, bob = make_client(), make_client()
        await ann.connect(one.url, room="team", name="ann")
        assert (await bob.connect(two.url, room="team", name="bob"))["users"] == ["ann", "bob"]
        await ann.send("over the socket")
        assert (await bob.wait_for("message"))["text"] == "over the socket"
        for s in (one, two):
            assert await s.stop() == 0
    finally:
        redis.terminate()
        await redis.wait()


def _exists(path: Path) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return path.exists()

    return check


async def test_a_deaf_listener_is_noticed_restarted_and_caught_up(
    cluster: StartCluster, make_client: ClientFactory, tcp_proxy: type[TcpProxy]
) -> None:
    """python-socketio's listener has stopped receiving without a word before (#1581)."""
    proxy, _, two, ann, bob = await _chatting_through_a_redis_proxy(cluster, make_client, tcp_proxy)

    assert proxy.deafen_subscribers() == 2  # both processes' listeners hear nothing now
    ack = await ann.send("while deaf")
    assert ack["message"]["id"] == 2
    # The self-check notices within seconds, restarts the listener, and the process
    # delivers from the store what it missed, with no further message needed.
    received = await bob.wait_for("message", count=2, timeout=30)
    assert received["text"] == "while deaf"
    assert bob.message_ids() == [1, 2]
    assert "missed its self-check; restarting it" in two.log()

    # Both processes restart their listeners (the log is shared: the line above may be
    # either's), and the deaf subscriber connections are closed, not left for Redis to
    # keep sending to.
    async def one_each() -> bool:
        return proxy.deafened() == 0 and proxy.subscribers() == 2

    await eventually(one_each, what="the deaf subscriber connections to close")


async def test_a_stop_held_up_past_stop_timeout_says_where_and_exits(
    cluster: StartCluster, make_client: ClientFactory, tcp_proxy: type[TcpProxy]
) -> None:
    """A stop ends within --stop-timeout even when what it waits for does not answer;
    the log says what it was waiting on, for the operator who has to find out why."""
    proxy = await tcp_proxy(*service_port(REDIS_URL, 6379)).start()
    (server,) = await cluster(
        1, "--stop-timeout", "0.5", redis_url=with_port(REDIS_URL, proxy.port)
    )
    ann = make_client()
    await ann.connect(server.url, room="team", name="ann")
    await ann.send("hello")
    await ann.close()
    # Redis stops answering: saying goodbye to it (the publisher's last events, presence's
    # entries) would take its timeouts, several seconds.
    proxy.stall()
    server.allow_errors = True
    assert await server.stop() == 3
    log = server.log()
    assert "stopping took over 0.5 s; exiting without finishing. Still waiting: " in log
    (line,) = [line for line in log.splitlines() if "Still waiting:" in line]
    assert "chatapp/" in line  # where in chatapp's own code the stop was held up
    assert " stopped" not in log.split("Still waiting:")[1]


async def test_what_a_listener_missed_while_it_reconnected_is_caught_up(
    cluster: StartCluster, make_client: ClientFactory, tcp_proxy: type[TcpProxy]
) -> None:
    """A subscriber connection that drops while Redis is up is replaced and subscribed
    again within milliseconds, too fast for the self-check to notice; what was published
    on the channel in between never reaches that process through Redis."""
    proxy, one, two, ann, bob = await _chatting_through_a_redis_proxy(
        cluster, make_client, tcp_proxy
    )

    assert proxy.deafen_subscribers() == 2
    assert (await ann.send("published while unheard"))["message"]["id"] == 2

    async def published() -> bool:
        # Publishing is queued after the ack: wait until both listeners missed it.
        return proxy.withheld(b"published while unheard") == 2

    await eventually(published, what="the message to be published and withheld")
    assert proxy.reset_subscribers() == 2
    # No further message, and no self-check failure: the re-subscription alone must make
    # the process read from the store what it may have missed.
    received = await bob.wait_for("message", count=2)
    assert received["text"] == "published while unheard"
    assert bob.message_ids() == [1, 2]
    for server in (one, two):
        assert "missed its self-check" not in server.log()

    # The replaced subscriber connections are closed, not left for Redis to keep sending
    # to.
    async def one_each() -> bool:
        return proxy.subscribers() == 2

    await eventually(one_each, what="the replaced subscriber connections to close")


async def test_a_crowd_coming_and_going_at_once_keeps_presence_in_redis(
    cluster: StartCluster, make_client: ClientFactory
) -> None:
    """Hundreds of connections arriving or leaving at once each update presence in Redis:
    they wait their turn for one of a bounded set of Redis connections rather than find
    the pool spent and take Redis for unreachable (which would show each process only its
    own users until it recovered)."""
    one, two = await cluster(
        2, *NO_RATE_LIMITS[4:], "--max-connections-per-ip", "0", "--max-tcp-connections-per-ip", "0"
    )
    watcher = make_client()
    await watcher.connect(two.url, room="hall", name="watcher")
    crowd = [make_client() for _ in range(240)]
    names = [f"p{n:03}" for n in range(240)]
    await asyncio.gather(
        *(c.connect(one.url, room="hall", name=n) for c, n in zip(crowd, names, strict=True))
    )
    await watcher.wait_for("presence", lambda p: len(p["users"]) == 241, timeout=30)
    await asyncio.gather(*(c.close() for c in crowd))
    await watcher.wait_for("presence", lambda p: p["users"] == ["watcher"], timeout=30)
    assert "Redis is unreachable" not in one.log()
