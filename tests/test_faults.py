"""Crashes, graceful stops and slow consumers: nothing acked is lost, nobody else waits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import NO_RATE_LIMITS, ServerFactory
from .raw import SlowReader
from .support import Client
from .test_metrics import figure, figures


async def all_messages(url: str, room: str) -> list[dict[str, Any]]:
    """The room's whole history through the JSON API, oldest first."""
    messages: list[dict[str, Any]] = []
    before = ""
    async with aiohttp.ClientSession(url) as http:
        while True:
            async with http.get(f"/api/rooms/{room}/messages?limit=100{before}") as r:
                page = await r.json()
            messages = page["messages"] + messages
            if not page["has_more"]:
                return messages
            before = f"&before={page['messages'][0]['id']}"


def integrity(db: str) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def send_until_stopped(client: Client, tag: str, acked: list[dict[str, Any]]) -> None:
    """Send numbered messages with client ids until the connection goes; record the acks."""
    n = 0
    while True:
        try:
            ack = await client.send(f"{tag}-{n}", client_id=f"{tag}-{n}")
        except Exception:
            return
        if not ack.get("ok"):
            return
        acked.append(ack["message"])
        n += 1


async def test_sigkill_loses_no_acked_message(
    start_server: ServerFactory, make_client, tmp_path: Path
) -> None:
    server = await start_server(*NO_RATE_LIMITS)
    server.allow_errors = True  # SIGKILL: no clean exit to check
    senders = [make_client() for _ in range(4)]
    for n, sender in enumerate(senders):
        await sender.connect(server.url, room="crash", name=f"s{n}")
    acked: list[dict[str, Any]] = []
    tasks = [
        asyncio.create_task(send_until_stopped(s, f"s{n}", acked)) for n, s in enumerate(senders)
    ]
    while len(acked) < 200:  # kill it in the middle of the stream
        await senders[0].wait_for("message", count=len(acked) + 1)
    assert await server.stop(signal.SIGKILL) == -signal.SIGKILL
    await asyncio.gather(*tasks)
    assert integrity(server.db) == "ok"

    again = await start_server(*NO_RATE_LIMITS, workdir=tmp_path)
    history = await all_messages(again.url, "crash")
    ids = [m["id"] for m in history]
    assert ids == list(range(1, len(ids) + 1)), "in order, no gaps"
    texts = [m["text"] for m in history]
    assert len(set(texts)) == len(texts), "exactly once"
    stored = {m["id"]: m for m in history}
    for message in acked:
        assert stored[message["id"]] == message
    # Each sender's own messages keep their order.
    for n in range(len(senders)):
        mine = [int(t.split("-")[1]) for t in texts if t.startswith(f"s{n}-")]
        assert mine == list(range(len(mine)))
    # A client retrying its last unacknowledged message after the restart gets it once.
    retry = make_client()
    await retry.connect(again.url, room="crash", name="s0")
    last = max((int(t.split("-")[1]) for t in texts if t.startswith("s0-")), default=-1)
    for n in (last, last + 1):
        ack = await retry.send(f"s0-{n}", client_id=f"s0-{n}")
        assert ack["ok"] is True
    texts = [m["text"] for m in await all_messages(again.url, "crash")]
    assert texts.count(f"s0-{last}") == 1 and texts.count(f"s0-{last + 1}") == 1


async def test_sigterm_under_load_finishes_writes_and_tells_clients(
    start_server: ServerFactory, make_client, tmp_path: Path
) -> None:
    server = await start_server(*NO_RATE_LIMITS)
    senders = [make_client() for _ in range(4)]
    for n, sender in enumerate(senders):
        await sender.connect(server.url, room="stop", name=f"s{n}")
    # A websocket that stops reading must not hold the shutdown up.
    stuck = await SlowReader.open(server.url, room="stop", name="stuck")
    acked: list[dict[str, Any]] = []
    tasks = [
        asyncio.create_task(send_until_stopped(s, f"s{n}", acked)) for n, s in enumerate(senders)
    ]
    while len(acked) < 100:
        await senders[0].wait_for("message", count=len(acked) + 1)
    assert await server.stop(signal.SIGTERM) == 0
    await asyncio.gather(*tasks)
    for sender in senders:
        await sender.wait_for("disconnect")  # told, not left hanging
    stuck.close()
    assert integrity(server.db) == "ok"
    log = server.log()
    assert "stopping: finishing in-flight work" in log and "storage closed" in log

    again = await start_server(*NO_RATE_LIMITS, workdir=tmp_path)
    history = await all_messages(again.url, "stop")
    assert [m["id"] for m in history] == list(range(1, len(history) + 1))
    stored = {m["id"]: m for m in history}
    for message in acked:
        assert stored[message["id"]] == message
    assert len({m["text"] for m in history}) == len(history)


async def test_a_client_that_stops_reading_is_dropped_and_catches_up(
    start_server: ServerFactory, make_client
) -> None:
    server = await start_server(*NO_RATE_LIMITS, "--max-queued-packets", "20", "--metrics")
    sender, fast = make_client(), make_client()
    await fast.connect(server.url, room="slow", name="fast")
    slow = await SlowReader.open(server.url, room="slow", name="slowpoke")
    await fast.wait_for("presence", lambda p: p.get("joined") == "slowpoke")
    await sender.connect(server.url, room="slow", name="sender")
    text = "x" * 1990
    sent = 0
    while not fast.of("presence") or not any(
        p.get("left") == "slowpoke" for p in fast.of("presence")
    ):
        assert sent < 20_000, "the slow consumer was never dropped"
        acks = await asyncio.gather(*(sender.send(f"{sent + i} {text}") for i in range(20)))
        assert all(a["ok"] for a in acks)
        sent += 20
    assert await slow.is_dropped()
    slow.close()
    # Everyone else got everything, in order, exactly once.
    await fast.wait_for("message", count=sent)
    assert fast.message_ids() == list(range(1, sent + 1))
    assert (await sender.send("after"))["ok"] is True
    assert "the client is not reading" in server.log()
    dropped = await figures(server)
    assert figure(dropped, "chatapp_send_queue_drops_total", bound="packets") == 1
    # The slow client comes back and catches up with since.
    back = make_client()
    welcome = await back.connect(server.url, room="slow", name="slowpoke", since=0)
    ids = [m["id"] for m in welcome["history"]]
    assert ids == list(range(sent + 2 - len(ids), sent + 2)), "the newest, contiguous"
    assert welcome["has_more"] == (sent + 1 > len(ids))
