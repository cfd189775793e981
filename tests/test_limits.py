"""Every limit holds, and its offender gets a clear error while everyone else is served."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from .conftest import ServerFactory
from .raw import POLL_PATH, WS_PATH, RawSocket


async def test_every_kind_of_event_is_rate_limited(
    start_server: ServerFactory, make_client
) -> None:
    server = await start_server("--event-burst", "4", "--event-rate", "0.5")
    a = make_client()
    await a.connect(server.url)
    assert (await a.call("typing", {"typing": True}))["ok"] is True
    assert (await a.call("history", {}))["ok"] is True
    assert (await a.call("rename", {"name": "ann"}))["ok"] is True
    assert (await a.send("hello"))["ok"] is True
    for event, payload in [
        ("typing", {"typing": False}),
        ("history", {}),
        ("rename", {"name": "bo"}),
        ("message", {"text": "again"}),
        ("no-such-event", {}),
    ]:
        ack = await a.call(event, payload)
        assert ack["ok"] is False and ack["error"] == "rate limited", event
        assert 0 < ack["retry_after"] <= 2.0
    # Another connection has its own bucket.
    b = make_client()
    await b.connect(server.url)
    assert (await b.call("history", {}))["ok"] is True
    assert "hit the event rate limit" in server.log()


async def test_a_client_that_ignores_the_rate_limit_is_disconnected(
    start_server: ServerFactory, make_client
) -> None:
    server = await start_server("--event-burst", "5", "--event-rate", "1")
    flooder, bystander = make_client(), make_client()
    await flooder.connect(server.url, name="flood")
    await bystander.connect(server.url, name="calm")
    for _ in range(200):
        if not flooder.sio.connected:
            break
        await flooder.sio.emit("typing", {"typing": True})
    await flooder.wait_for("disconnect")
    left = await bystander.wait_for("presence", lambda p: p.get("left") == "flood")
    assert left["users"] == ["calm"]
    assert (await bystander.send("still here"))["ok"] is True
    assert "kept sending after being rate limited" in server.log()


async def test_the_budget_per_address_is_shared_by_its_connections_and_the_api(
    start_server: ServerFactory, make_client
) -> None:
    """One address's connections and API requests spend one budget, where a history page
    of 100 costs 11 and a typing notice 1; another address has its own."""
    server = await start_server(
        *("--event-burst", "1000", "--event-rate", "1000"),
        # 45 units, refilled too slowly to matter during the test.
        *("--ip-burst", "45", "--ip-rate", "0.001"),
    )
    a, b, c = make_client(), make_client(), make_client()
    for client in (a, b, c):
        await client.connect(server.url, room="budget")
    page = {"limit": 100}
    for client in (a, a, b, b):  # 4 x 11 = 44
        assert (await client.call("history", page))["ok"] is True
    refused = await c.call("history", page)
    assert refused["ok"] is False and refused["error"] == "rate limited"
    assert refused["retry_after"] > 1000  # 10 units missing, at 0.001 per second
    assert (await c.call("typing", {"typing": True}))["ok"] is True  # the last unit
    for client, event, payload in ((a, "typing", {"typing": False}), (b, "history", {})):
        assert (await client.call(event, payload))["error"] == "rate limited"
    async with aiohttp.ClientSession(server.url) as http:
        for path in ("/api/rooms/budget/messages?limit=5", "/api/rooms"):
            async with http.get(path) as r:
                assert r.status == 429
                assert int(r.headers["Retry-After"]) >= 999
                body = await r.json()
                assert body["error"] == "rate limited" and body["retry_after"] > 900
    # Another address is not affected, on Socket.IO or the API.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        d = make_client(http_session=other)
        await d.connect(server.url, room="budget")
        for _ in range(4):
            assert (await d.call("history", page))["ok"] is True
        async with other.get(server.url + "/api/rooms/budget/messages?limit=5") as r:
            assert r.status == 200
        await d.close()
    assert "127.0.0.1 is over its budget of requests (history costs 11" in server.log()


def test_the_budget_forgets_addresses() -> None:
    """An address whose bucket has filled up again is forgotten, and the table never holds
    more than its maximum, however many addresses come and go."""
    from chatapp.budget import AddressBudget, page_cost_of

    refills_at_once = AddressBudget(burst=20, rate=1e12)
    for n in range(1000):
        assert refills_at_once.spend(f"10.0.{n // 256}.{n % 256}", 11) == 0.0
    assert len(refills_at_once) <= 2
    slow = AddressBudget(burst=20, rate=1e-9, max_addresses=100)
    for n in range(1000):
        slow.spend(f"10.1.{n // 256}.{n % 256}", 11)
    assert len(slow) == 100
    assert slow.spend("10.1.3.231", 11) > 0  # the newest are kept, in debt
    # What a page costs, whatever a client sends as its limit.
    assert [page_cost_of(v) for v in (1, 9, 10, 100, "100", None, 0, 101, True, "x")] == [
        1,
        1,
        2,
        11,
        11,
        6,
        6,
        6,
        6,
        6,
    ]


async def test_connections_per_address(start_server: ServerFactory, make_client) -> None:
    server = await start_server("--max-connections-per-ip", "3")
    clients = [make_client() for _ in range(3)]
    for n, client in enumerate(clients):
        await client.connect(server.url, name=f"tab{n}")
    reason = await make_client().connect_refused(server.url)
    assert reason == "too many connections from your address (the limit is 3)"
    await clients[0].close()
    await clients[1].wait_for("presence", lambda p: p.get("left") == "tab0")
    await make_client().connect(server.url)
    assert "refused a connection from 127.0.0.1: 3 already open" in server.log()


async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    start_server: ServerFactory, make_client
) -> None:
    behind = await start_server("--max-connections-per-ip", "1", "--trust-proxy")
    for n in range(3):
        client = make_client(headers={"X-Forwarded-For": f"203.0.113.9, 10.0.0.{n}"})
        await client.connect(behind.url)
    same = make_client(headers={"X-Forwarded-For": "10.0.0.1"})
    assert (await same.connect_refused(behind.url)).startswith("too many connections")
    # Without --trust-proxy the header is the client's word, and is ignored.
    plain = await start_server("--max-connections-per-ip", "1")
    await make_client(headers={"X-Forwarded-For": "10.0.0.1"}).connect(plain.url)
    other = make_client(headers={"X-Forwarded-For": "10.0.0.2"})
    assert (await other.connect_refused(plain.url)).startswith("too many connections")


async def test_idle_transports_per_address_are_capped_and_expire(
    start_server: ServerFactory,
) -> None:
    # Engine.IO sessions that never connect to Socket.IO: at most twice the limit, each
    # closed after --connect-timeout.
    server = await start_server("--max-connections-per-ip", "2", "--connect-timeout", "0.5")
    async with aiohttp.ClientSession(server.url) as http:
        for _ in range(4):
            async with http.get(POLL_PATH) as r:
                assert r.status == 200
        async with http.get(POLL_PATH) as r:
            assert r.status == 401
        for _ in range(100):  # they expire; then a new one is welcome again
            async with http.get(POLL_PATH) as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.1)  # the expiry is time-based: nothing to wait on
        else:
            raise AssertionError("idle transports were never closed")
    log = server.log()
    assert "refused a transport from 127.0.0.1: 4 open" in log
    assert "no Socket.IO connect within 0.5 s" in log


async def test_a_transport_that_never_connects_is_closed(start_server: ServerFactory) -> None:
    server = await start_server("--connect-timeout", "0.3")
    async with aiohttp.ClientSession() as http:
        silent = await RawSocket(http).start(server.url)
        assert await silent.closed_by_server()


async def test_a_client_that_never_answers_pings_is_dropped(
    start_server: ServerFactory, make_client
) -> None:
    server = await start_server("--ping-interval", "1", "--ping-timeout", "1")
    watcher = make_client()
    await watcher.connect(server.url, name="watcher")
    async with aiohttp.ClientSession() as http:
        mute = RawSocket(http, pong=False)
        await mute.connect(server.url, {"name": "mute"})
        assert await mute.closed_by_server()
    await watcher.wait_for("presence", lambda p: p.get("left") == "mute")
    assert (await watcher.send("alive"))["ok"] is True


@pytest.mark.parametrize("interval", ["2", "1.5", "0.3"])
async def test_the_advertised_ping_interval_is_the_one_used(
    start_server: ServerFactory, interval: str
) -> None:
    # Engine.IO's handshake tells clients the interval in whole seconds, and a client gives
    # up on a server whose pings come later than pingInterval + pingTimeout. An interval
    # the handshake cannot express is refused at start.
    from chatapp.settings import load_settings

    try:
        load_settings(["--ping-interval", interval], {})
    except SystemExit as exc:
        assert exc.code == 2 and float(interval) % 1
        return
    server = await start_server("--ping-interval", interval)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url + WS_PATH)
        opened = json.loads((await ws.receive_str())[1:])
        assert opened["pingInterval"] == float(interval) * 1000
        advertised = opened["pingInterval"] / 1000
        deadline = advertised + opened["pingTimeout"] / 1000
        await ws.send_str("40")

        async def next_ping() -> None:
            while await ws.receive_str(timeout=deadline + 5) != "2":
                pass  # the Socket.IO connect, the welcome

        await next_ping()
        for _ in range(2):
            answered = loop.time()
            await ws.send_str("3")
            # The next ping: not sooner than advertised, well before the client's deadline.
            await next_ping()
            gap = loop.time() - answered
            assert advertised - 0.05 <= gap < deadline, gap
        await ws.close()


async def test_a_polling_client_that_stops_polling_is_dropped(
    start_server: ServerFactory, make_client
) -> None:
    """Its pings wait unread, so it never answers: the walk over the sessions' heartbeats
    (engine.io's, which chatapp runs itself) closes the session."""
    server = await start_server("--ping-interval", "1", "--ping-timeout", "1")
    watcher = make_client()
    await watcher.connect(server.url, name="watcher")
    async with aiohttp.ClientSession(server.url) as http:
        async with http.get(POLL_PATH) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        async with http.post(f"{POLL_PATH}&sid={sid}", data='40{"name":"gone"}') as r:
            assert r.status == 200
        await watcher.wait_for("presence", lambda p: p.get("joined") == "gone")
        # From here on it never polls again.
    await watcher.wait_for("presence", lambda p: p.get("left") == "gone")
    assert (await watcher.send("alive"))["ok"] is True


async def test_frame_size_limit(start_server: ServerFactory, make_client) -> None:
    server = await start_server("--max-frame-bytes", "65536")
    a, bystander = make_client(), make_client()
    await a.connect(server.url, name="big")
    await bystander.connect(server.url, name="small")
    # Far over the text limit but under the frame limit: a clear error, still connected.
    ack = await a.send("x" * 30_000)
    assert ack == {"ok": False, "error": "invalid text: must be 1-2000 characters"}
    assert (await a.send("fine"))["ok"] is True
    # Over the frame limit: the connection is dropped, the server goes on.
    await a.sio.emit("message", {"text": "x" * 70_000})
    await a.wait_for("disconnect")
    await bystander.wait_for("presence", lambda p: p.get("left") == "big")
    assert (await bystander.send("still fine"))["ok"] is True
    assert "is over --max-frame-bytes (65536)" in server.log()


async def test_http_body_limit(start_server: ServerFactory) -> None:
    server = await start_server("--max-body-bytes", "2048", env={"CHATAPP_ACCESS_TOKEN": "t"})
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post("/login", data={"token": "x" * 10_000}) as r:
            assert r.status == 413
        async with http.post("/login", data={"token": "t"}, allow_redirects=False) as r:
            assert r.status == 303


async def test_limits_refuse_nonsense_values(start_server: ServerFactory) -> None:
    from chatapp.settings import load_settings

    for argv in (
        ["--max-frame-bytes", "1000"],
        ["--event-burst", "0"],
        ["--max-queued-packets", "1"],
        ["--max-queued-bytes", "65535"],
        ["--max-queued-bytes-total", "1000000"],
        ["--connect-timeout", "0"],
        ["--max-connections-per-ip", "-1"],
        ["--ping-interval", "0"],
        ["--max-tcp-connections-per-ip", "-1"],
        ["--header-timeout", "0"],
        ["--body-timeout", "0"],
    ):
        try:
            load_settings(argv, {})
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    defaults = load_settings([], {})
    assert (defaults.max_connections_per_ip, defaults.event_burst, defaults.event_rate) == (
        20,
        40,
        20,
    )
    assert defaults.max_frame_bytes == 65_536 and defaults.max_queued_packets == 1000
    assert (defaults.max_queued_bytes, defaults.max_queued_bytes_total) == (4 << 20, 256 << 20)
    env = load_settings(
        [],
        {
            "CHATAPP_MAX_QUEUED_PACKETS": "50",
            "CHATAPP_MAX_QUEUED_BYTES": "100000",
            "CHATAPP_MAX_QUEUED_BYTES_TOTAL": "2000000",
            "CHATAPP_TRUST_PROXY": "1",
        },
    )
    assert env.max_queued_packets == 50 and env.trust_proxy is True
    assert (env.max_queued_bytes, env.max_queued_bytes_total) == (100_000, 2_000_000)
