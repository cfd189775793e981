"""The cost of a change event next to a new message: one chatapp process (SQLite), one
room with ``--listeners`` connections, and one sender doing ``--ops`` of each, one after
another (closed loop): ``message``, ``edit`` (of its last message), ``react`` (toggling
one emoji on it), ``delete``. For each: acknowledgement latency (median, p99), the server
CPU time per operation, and the time until every listener had the event.

    .venv/bin/python benchmarks/changes.py [--listeners 50] [--ops 2000]

Server on CPU 0, clients on CPU 1 (when there are two), as run.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Listener:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.seen: dict[str, int] = {"message": 0, "changed": 0}
        self.waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        self.sio.on("message", lambda data: self._got("message"))
        self.sio.on("changed", lambda data: self._got("changed"))

    def _got(self, event: str) -> None:
        self.seen[event] += 1
        for w in list(self.waiters):
            if w[0] == event and self.seen[event] >= w[1] and not w[2].done():
                w[2].set_result(None)
                self.waiters.remove(w)

    def until(self, event: str, count: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.seen[event] >= count:
            fut.set_result(None)
        else:
            self.waiters.append((event, count, fut))
        return fut


async def run(url: str, pid: int, listeners: int, ops: int) -> dict[str, Any]:
    crowd = [Listener() for _ in range(listeners)]
    for i, c in enumerate(crowd):
        await c.sio.connect(url, auth={"room": "bench", "name": f"l{i}"}, transports=["websocket"])
    sender = socketio.AsyncClient(reconnection=False)
    await sender.connect(
        url,
        auth={"room": "bench", "name": "sender", "key": "bench-key-0123456789"},
        transports=["websocket"],
    )
    results: dict[str, Any] = {}
    last_id = 0

    async def phase(name: str, event: str, payload: Any, counts: str) -> None:
        nonlocal last_id
        acks, spread = [], []
        cpu0 = cpu_seconds(pid)
        started = time.perf_counter()
        for i in range(ops):
            target = {k: c.seen[counts] + 1 for k, c in enumerate(crowd)}
            t0 = time.perf_counter()
            answer = await sender.call(event, payload(i), timeout=30)
            acks.append((time.perf_counter() - t0) * 1000)
            assert answer.get("ok"), answer
            if name == "message":
                last_id = answer["message"]["id"]
            await asyncio.gather(*(c.until(counts, target[k]) for k, c in enumerate(crowd)))
            spread.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu0
        acks.sort()
        spread.sort()
        results[name] = {
            "ack_p50_ms": round(statistics.median(acks), 3),
            "ack_p99_ms": round(acks[int(len(acks) * 0.99) - 1], 3),
            "all_listeners_p50_ms": round(statistics.median(spread), 3),
            "server_cpu_ms_per_op": round(cpu * 1000 / ops, 3),
            "ops_per_s": round(ops / wall, 1),
        }
        print(f"{name:8} {results[name]}", flush=True)

    await phase(
        "message", "message", lambda i: {"text": f"message number {i} for the bench"}, "message"
    )
    await phase("edit", "edit", lambda i: {"id": last_id, "text": f"edited {i} times"}, "changed")
    await phase("react", "react", lambda i: {"id": last_id, "emoji": "👍"}, "changed")
    ids = list(range(last_id - ops + 1, last_id + 1))
    await phase("delete", "delete", lambda i: {"id": ids[i]}, "changed")
    for c in crowd:
        await c.sio.disconnect()
    await sender.disconnect()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    db = os.path.join(tempfile.mkdtemp(prefix="chatapp-changes-"), "chat.db")
    two = (os.cpu_count() or 1) > 1
    cmd = [sys.executable, "-m", "chatapp", "--port", str(port), "--db", db]
    cmd += ["--message-burst", "1000000", "--message-rate", "1000000"]
    cmd += ["--event-burst", "1000000", "--event-rate", "1000000"]
    cmd += ["--ip-burst", "1000000", "--ip-rate", "1000000", "--log-level", "warning"]
    cmd += ["--max-connections-per-ip", "10000"]
    server = subprocess.Popen(
        (["taskset", "-c", "0"] if two else []) + cmd, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    if two:
        os.sched_setaffinity(0, {1})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        results = asyncio.run(run(url, server.pid, args.listeners, args.ops))
        print(json.dumps({"listeners": args.listeners, "ops": args.ops, **results}))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
