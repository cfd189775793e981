"""Clients that never read cannot grow the server's memory.

Each test repeats the attack of a client that stops reading its socket and asks for big
``history`` pages within its event rate, in a room of big messages, and reads the
server's RSS from /proc. Memory is asserted, never time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .conftest import ServerFactory
from .raw import SlowReader, rss_bytes, settle
from .support import Client

MiB = 1 << 20
#: 2000 characters, 8000 bytes of UTF-8: a history page of 100 is about 800 KB.
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
#: pages are about 120 MB; what a bounded queue and the buffers below it hold is a few MB.
GROWTH = 48 * MiB


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
    of 100 big messages (about 120 MB): each is disconnected once its queued bytes pass
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
        str(16 * MiB),
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
    for frame in history_requests(60):  # about 48 MB
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
