"""Where a message's time goes on the server, stage by stage, at a calm rate.

A diagnostic, not part of chatapp: with this directory on ``PYTHONPATH`` and
``CHATAPP_STAGES`` naming a file, a chatapp process started by that Python wraps a few of
its functions with clocks and writes, every 500 messages, the median microseconds of each
stage of a message's path (the first 100 messages are left out)::

    CHATAPP_STAGES=/tmp/stages.txt PYTHONPATH=benchmarks/stages \\
        .venv/bin/python benchmarks/run.py --scenario rooms --rate 2 --runs 1 \\
        --targets chatapp --python .venv/bin/python

It follows one message at a time, so it is meant for a calm rate, where messages rarely
overlap; the clocks add a few microseconds. Without ``CHATAPP_STAGES`` it does nothing.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

OUT = os.environ.get("CHATAPP_STAGES")
EVERY = 500
SKIP = 100

#: (stage, from mark, to mark), in path order.
STAGES = (
    ("frame read, engine.io packet queued", "received", "queued"),
    ("to the Socket.IO layer (a task, engine.io)", "queued", "guard"),
    ("Socket.IO decode and dispatch", "guard", "handler"),
    ("validation (limits, payload, mentions)", "handler", "store"),
    ("to the SQLite transaction (a turn of the loop)", "store", "tx0"),
    ("the SQLite transaction", "tx0", "tx1"),
    ("back to the handler (a turn of the loop)", "tx1", "committed"),
    ("feed: one frame for each member, written at once if calm", "committed", "published"),
    ("the rest of the handler (the ack is written after it)", "published", "handled"),
    ("writes corked to the end of the turn, if any", "handled", "written"),
    ("total", "received", "written"),
)


def _install(out: str) -> None:
    from chatapp import fanout, handlers, sessions, transport, websocket
    from chatapp.store import sqlite

    clock = time.perf_counter
    marks: dict[str, float] = {}
    state: dict[str, Any] = {"current": None, "published": None}
    done: list[dict[str, float]] = []

    def mark(name: str) -> None:
        current = state["current"]
        if current is not None:
            current[name] = clock()

    data_received = websocket.ChatWebSocket.data_received
    on_message = websocket.ChatWebSocket._on_message

    def timed_data_received(self: Any, data: bytes) -> None:
        marks["received"] = clock()
        data_received(self, data)

    def timed_on_message(self: Any, msg: Any) -> None:
        on_message(self, msg)
        marks["queued"] = clock()

    guard_message = transport.TransportGuard._message

    async def timed_guard(self: Any, eio_sid: str, data: Any) -> None:
        marks["guard"] = clock()
        await guard_message(self, eio_sid, data)

    handler = handlers.ChatHandlers.on_message

    async def timed_handler(self: Any, conn: Any, data: Any) -> Any:
        current = state["current"] = {**marks, "handler": clock()}
        try:
            return await handler(self, conn, data)
        finally:
            # Done, unless frames were corked: then when the end of the turn writes them.
            current["handled"] = current["written"] = clock()
            if all(name in current for _, a, b in STAGES for name in (a, b)):
                done.append(current)
                if len(done) % EVERY == 0:
                    _write(out, done[SKIP:])

    add = sqlite.SQLiteStore.add

    async def timed_add(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("store")
        result = await add(self, *args, **kwargs)
        mark("committed")
        return result

    transaction = sqlite._transaction

    def timed_transaction(conn: Any, batch: Any) -> Any:
        mark("tx0")
        try:
            return transaction(conn, batch)
        finally:
            mark("tx1")

    sqlite._transaction = timed_transaction

    publish = fanout.FeedManager.publish

    async def timed_publish(self: Any, *args: Any, **kwargs: Any) -> None:
        await publish(self, *args, **kwargs)
        mark("published")
        state["published"] = state["current"]

    uncork_all = sessions.Sessions._uncork_all

    def timed_uncork_all(self: Any) -> None:
        uncork_all(self)
        current = state["published"]
        if current is not None and "handled" in current:
            current["written"] = clock()
        state["published"] = None

    websocket.ChatWebSocket.data_received = timed_data_received  # type: ignore[method-assign]
    websocket.ChatWebSocket._on_message = timed_on_message  # type: ignore[method-assign]
    transport.TransportGuard._message = timed_guard  # type: ignore[method-assign]
    handlers.ChatHandlers.on_message = timed_handler  # type: ignore[method-assign]
    sqlite.SQLiteStore.add = timed_add  # type: ignore[method-assign]
    fanout.FeedManager.publish = timed_publish  # type: ignore[method-assign]
    sessions.Sessions._uncork_all = timed_uncork_all  # type: ignore[method-assign]


def _write(out: str, rows: list[dict[str, float]]) -> None:
    with open(out, "w", encoding="utf-8") as f:
        f.write(f"messages {len(rows)}, median microseconds per stage\n")
        for stage, a, b in STAGES:
            f.write(f"{statistics.median(r[b] - r[a] for r in rows) * 1e6:8.1f}  {stage}\n")


if OUT:
    _install(OUT)
