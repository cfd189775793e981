"""Clients that never read cannot grow the server's memory, and a closed connection's
memory is freed at once (by reference counting, without waiting for the cycle collector).

Each test repeats the attack of a client that stops reading its socket and asks for big
``history`` pages within its event rate, in a room of big messages, and reads the
server's RSS from /proc. Memory is asserted, never time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from chatapp import frames, handlers, heartbeat, sendqueue, websocket
from chatapp.app import create_app
from chatapp.keys import sessions_key, sio_key
from chatapp.settings import load_settings

from .conftest import ServerFactory
from .raw import SlowReader, joined, rss_bytes, served, settle
from .support import Client

MiB = 1 << 20
#: 2000 characters, 8000 bytes of UTF-8: a history page of 100 would be about 800 KB, and is
#: cut to the newest 256 KiB (protocol.MAX_PAGE_BYTES).
BIG_TEXT = "\U0001f600" * 2000
#: Room for bursts of big requests (within the limits: nothing here is rate limited).
ATTACK_LIMITS = (
    "--event-burst",
    "200",
    "--event-rate",
    "100",
    "--message-burst",
    "1000",
    "--message-rate",
    "1000",
)
#: How far the server's RSS may rise above its level before the attacks. One attacker's
#: pages are about 38 MB; what a bounded queue and the buffers below it hold is a few MB.
GROWTH = 48 * MiB
#: How far it may stay above it once they have left: each left about 12 MB queued.
LEFT_GROWTH = 16 * MiB


def history_requests(count: int) -> list[str]:
    return [f'42{n}["history",{{"limit":100}}]' for n in range(count)]


async def fill(sender: Client, receiver: Client, count: int = 100) -> None:
    for _ in range(count // 10):
        acks = await asyncio.gather(*(sender.send(BIG_TEXT) for _ in range(10)))
        assert all(ack["ok"] for ack in acks), acks
    await receiver.wait_for("message", count=count)


def left(client: Client, name: str) -> bool:
    return any(p.get("left") == name for p in client.of("presence"))


async def chat_until_left(
    sender: Client, receiver: Client, name: str, pid: int, baseline: int
) -> tuple[int, int]:
    """Bystanders chat until ``name`` has left the room; the server's RSS must stay within
    :data:`GROWTH` of ``baseline`` all along. Returns (messages sent, peak RSS)."""
    sent = peak = 0
    while not left(receiver, name):
        assert sent < 200, f"{name} was never disconnected"
        ack = await sender.send(f"bystander {sent}")
        assert ack["ok"] is True, ack
        sent += 1
        peak = max(peak, rss_bytes(pid))
        assert peak - baseline < GROWTH, (
            f"server RSS grew by {(peak - baseline) / MiB:.0f} MiB while {name} did not read"
        )
        with contextlib.suppress(TimeoutError):
            await receiver.wait_for("presence", lambda p: p.get("left") == name, timeout=0.2)
    return sent, peak


def in_order(client: Client, count: int) -> None:
    assert client.message_ids() == list(range(1, count + 1))


async def test_clients_that_never_read_cannot_grow_memory(
    start_server: ServerFactory, make_client: Any
) -> None:
    """Four clients in turn, each from its own address, stop reading and ask for 150 pages
    of big messages (about 38 MB): each is disconnected once its queued bytes pass
    --max-queued-bytes, RSS stays flat, and the bystanders get every message in order."""
    server = await start_server(*ATTACK_LIMITS)
    assert server.proc is not None
    pid = server.proc.pid
    a, b = make_client(), make_client()
    await a.connect(server.url, room="big", name="a")
    await b.connect(server.url, room="big", name="b")
    await fill(a, b)
    baseline = rss_bytes(pid)
    total, peaks = 100, []
    for k in range(4):
        name = f"reader{k}"
        reader = await SlowReader.open(server.url, f"127.0.0.{k + 2}", room="big", name=name)
        await b.wait_for("presence", lambda p, name=name: p.get("joined") == name)
        for frame in history_requests(150):
            await reader.send(frame)
        sent, peak = await chat_until_left(a, b, name, pid, baseline)
        total += sent
        peaks.append(peak)
        assert await reader.is_dropped()
        reader.close()
    await b.wait_for("message", count=total)
    in_order(b, total)
    in_order(a, total)
    assert server.log().count("the client is not reading") == 4
    after = await settle(lambda: rss_bytes(pid), baseline + GROWTH)
    assert after - baseline < GROWTH, f"{(after - baseline) / MiB:.0f} MiB held after they left"


async def test_a_closed_connection_frees_its_memory_without_the_collector(
    start_server: ServerFactory, make_client: Any
) -> None:
    """With the cycle collector off, clients that leave with megabytes still queued for
    them (under a per-connection bound raised out of the way) leave nothing behind: six of
    them in turn, each about 5 MB of pages, and RSS comes back each time."""
    server = await start_server(
        *ATTACK_LIMITS, "--max-queued-bytes", str(64 * MiB), cycle_collector=False
    )
    assert server.proc is not None
    pid = server.proc.pid
    a, b = make_client(), make_client()
    await a.connect(server.url, room="big", name="a")
    await b.connect(server.url, room="big", name="b")
    await fill(a, b)
    baseline = rss_bytes(pid)
    total = 100
    for k in range(6):
        name = f"leaver{k}"
        reader = await SlowReader.open(server.url, f"127.0.0.{k + 2}", room="big", name=name)
        await b.wait_for("presence", lambda p, name=name: p.get("joined") == name)
        for frame in history_requests(20):
            await reader.send(frame)
        # Its events are handled in order: once its message is out, its pages are queued.
        await reader.send('42["message",{"text":"' + f"done {k}" + '"}]')
        total += 1
        await b.wait_for("message", lambda m, k=k: m["text"] == f"done {k}")
        reader.close()
        await b.wait_for("presence", lambda p, name=name: p.get("left") == name)
        ack = await a.send(f"after {k}")
        total += 1
        await b.wait_for("message", lambda m, ack=ack: m["id"] == ack["message"]["id"])
        now = await settle(lambda: rss_bytes(pid), baseline + LEFT_GROWTH, timeout=5)
        assert now - baseline < LEFT_GROWTH, (
            f"server RSS {(now - baseline) / MiB:.0f} MiB above its baseline after {k + 1} "
            "clients left with pages queued"
        )
    in_order(b, total)


async def test_over_the_total_the_connection_holding_the_most_is_dropped(
    start_server: ServerFactory, make_client: Any
) -> None:
    """When all send queues together hold more than --max-queued-bytes-total, the
    connection holding the most unsent bytes is dropped, and only it: a smaller backlog
    and the bystanders are untouched."""
    server = await start_server(
        *ATTACK_LIMITS,
        "--max-queued-bytes",
        str(64 * MiB),
        "--max-queued-bytes-total",
        str(4 * MiB),
    )
    a, b = make_client(), make_client()
    await a.connect(server.url, room="big", name="a")
    await b.connect(server.url, room="big", name="b")
    await fill(a, b)
    small = await SlowReader.open(server.url, "127.0.0.2", room="big", name="small")
    for frame in history_requests(4):
        await small.send(frame)
    await small.send('42["message",{"text":"small is done"}]')
    await b.wait_for("message", lambda m: m["text"] == "small is done")
    large = await SlowReader.open(server.url, "127.0.0.3", room="big", name="large")
    await b.wait_for("presence", lambda p: p.get("joined") == "large")
    for frame in history_requests(60):  # pages of 256 KiB: far more than the total allows
        await large.send(frame)
    pid = server.proc.pid if server.proc else 0
    await chat_until_left(a, b, "large", pid, rss_bytes(pid))
    assert await large.is_dropped()
    large.close()
    # The smaller backlog stays connected: it still gets the room's messages.
    ack = await a.send("after the drop")
    await b.wait_for("message", lambda m: m["id"] == ack["message"]["id"])
    assert not left(b, "small")
    in_order(b, ack["message"]["id"])
    log = server.log()
    assert "holds the most unsent data" in log and "--max-queued-bytes-total" in log
    assert log.count("holds the most unsent data") == 1
    small.close()


# -- in one process: what a closed session leaves for the cycle collector ---------------------


async def test_a_closed_session_leaves_nothing_for_the_cycle_collector(tmp_path: Path) -> None:
    """However a session ran and ended (a websocket that reads and closes, one that stops
    reading with pages queued and then drops, long-polling, polling upgraded to a
    websocket), reference counting alone frees its websocket wrapper, engine.io session,
    send queue, queued frames and Connection: with the collector off, none is left once the
    sessions are gone. Neither a reference cycle, nor a timer, nor the walk that checks
    the sessions' heartbeats may keep them."""
    settings = load_settings(
        ["--db", str(tmp_path / "chat.db"), "--port", "0", *ATTACK_LIMITS],
        environ={},
    )
    app = create_app(settings)
    sio, eng = app[sio_key], app[sessions_key]
    kinds = (
        websocket.ChatWebSocket,
        heartbeat.ChatSocket,
        sendqueue.SendQueue,
        frames.FramedPacket,
        handlers.Connection,
        web.WebSocketResponse,
    )

    def alive() -> Counter[str]:
        return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds))

    def winding_down() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if "ChatWebSocket" in repr(t.get_coro())]

    async def until(done: Callable[[], bool], timeout: float) -> None:
        """Step the loop until ``done()`` (session state has no event to wait on)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not done() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def sessions_gone() -> None:
        await until(lambda: not (sio.eio.sockets or eng.websockets or winding_down()), 10)
        assert not sio.eio.sockets and not eng.websockets and not winding_down()

    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await joined(http, url, "free")
        for n in range(30):
            await ws.send_str(f'42{n}["message",{{"text":"{BIG_TEXT}"}}]')
        while not (await ws.receive_str()).startswith("4329"):
            pass
        await ws.close()
        await sessions_gone()
        gc.collect()
        gc.disable()
        try:
            assert not alive()
            # A websocket that reads, and closes.
            ws = await joined(http, url, "free")
            await ws.send_str('421["history",{"limit":100}]')
            while not (await ws.receive_str()).startswith("431"):
                pass
            await ws.close()
            # One that stops reading with about 6 MB of pages for it, and drops.
            reader = await SlowReader.open(url, room="free", name="reader")
            for frame in history_requests(25):
                await reader.send(frame)
            await reader.send('42["message",{"text":"reader is done"}]')
            watcher = await joined(http, url, "free")
            while "reader is done" not in await watcher.receive_str():
                pass
            reader.close()
            await watcher.close()
            # Long-polling, and polling upgraded to a websocket.
            for transports in (["polling"], ["polling", "websocket"]):
                client = Client(transports=transports)
                await client.connect(url, room="free", name="-".join(transports))
                assert (await client.call("history", {"limit": 100}))["ok"] is True
                await client.close()
            await sessions_gone()
            assert not alive()
        finally:
            gc.enable()
