"""Soak test: many clients in many rooms for a while, joining, leaving and reconnecting at
random; at the end every acknowledged message must have reached every member present when
it was sent (live, or through the ``since`` catch-up of its next connection), exactly once
and in order. The server's RSS and open descriptors are sampled all along.

    .venv/bin/python benchmarks/soak.py --clients 300 --rooms 30 --duration 600
    .venv/bin/python benchmarks/soak.py --ci          # the short run of .ci/run

It starts its own ``python -m chatapp`` on 127.0.0.1 (or uses ``--url``, which must be a
loopback address), prints a summary, writes it as JSON under benchmarks/results/, and exits
non-zero on any lost, duplicated or reordered message, a server ERROR line, or a server
that died. Not part of the pytest run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BAD_LOG = re.compile(r" (ERROR|CRITICAL) |Traceback \(most recent call last\)")
TIMEOUT = 30.0


@dataclass
class Stream:
    """What one client identity received in one room, over all its connections there."""

    ids: list[int] = field(default_factory=list)
    last: int | None = None  # the `since` of its next connection


@dataclass
class Stats:
    acked: dict[str, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    sessions: int = 0
    drops: int = 0
    connect_errors: int = 0
    send_errors: int = 0
    rate_limited: int = 0
    connected: int = 0
    samples: list[dict[str, float]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


class Session:
    """One Socket.IO connection of one identity to one room."""

    def __init__(self, url: str, name: str, room: str, stream: Stream, polling: bool) -> None:
        self.url, self.name, self.room, self.stream = url, name, room, stream
        self.transports = ["polling"] if polling else ["websocket"]
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("message", self._on_message)
        self.received: list[int] = []

    async def _on_message(self, data: Any) -> None:
        # Live messages may be handled before open() resumes after the welcome; they
        # still come after it on the wire, so they go after its history.
        if isinstance(data, dict) and data.get("room") == self.room:
            self.received.append(data["id"])

    async def open(self) -> None:
        welcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sio.on("welcome", lambda data: welcome.done() or welcome.set_result(data))
        auth: dict[str, Any] = {"room": self.room, "name": self.name}
        since = self.stream.last
        if since is not None:
            auth["since"] = since
        await self.sio.connect(
            self.url, auth=auth, transports=self.transports, wait_timeout=TIMEOUT
        )
        data = await asyncio.wait_for(welcome, TIMEOUT)
        history = [m["id"] for m in data["history"]]
        if since is not None and data["has_more"]:
            history = await self._page_back(since, history)
        # The welcome precedes any live message on the wire, so nothing is lost between.
        self.received = history + self.received

    async def _page_back(self, since: int, history: list[int]) -> list[int]:
        """More was missed than a welcome carries: fetch the rest with ``history``."""
        while history and history[0] > since + 1:
            ack = await self.sio.call(
                "history", {"before": history[0], "limit": 100}, timeout=TIMEOUT
            )
            if not ack.get("ok"):
                await asyncio.sleep(ack.get("retry_after", 1))
                continue
            older = [m["id"] for m in ack["messages"] if m["id"] > since]
            if not older:
                break
            history = older + history
        return history

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 10)
        self.stream.ids.extend(self.received)
        if self.received:
            self.stream.last = self.received[-1]


class Soak:
    def __init__(self, args: argparse.Namespace, url: str) -> None:
        self.args = args
        self.url = url
        self.stats = Stats()
        self.streams: dict[tuple[str, str], Stream] = defaultdict(Stream)
        self.rooms = [f"soak{n}" for n in range(args.rooms)]
        self.stop = asyncio.Event()
        self.rng = random.Random(args.seed)

    async def client(self, n: int) -> None:
        name = f"user{n}"
        room = self.rng.choice(self.rooms)
        polling = n % 10 == 9  # some clients on long-polling
        await asyncio.sleep(self.rng.uniform(0, 3))
        while not self.stop.is_set():
            stream = self.streams[(name, room)]
            session = Session(self.url, name, room, stream, polling)
            try:
                await session.open()
            except Exception:
                self.stats.connect_errors += 1
                await session.close()
                await asyncio.sleep(self.rng.uniform(0.5, 2))
                continue
            self.stats.sessions += 1
            self.stats.connected += 1
            try:
                await self.chat(session, name)
            finally:
                self.stats.connected -= 1
                await session.close()
            roll = self.rng.random()
            if roll < 0.5:
                room = self.rng.choice(self.rooms)  # leave for another room (or the same)
            elif roll < 0.8:
                self.stats.drops += 1  # a dropped connection: straight back with since
                continue
            await asyncio.sleep(self.rng.uniform(0, 2))

    async def chat(self, session: Session, name: str) -> None:
        until = time.monotonic() + self.rng.uniform(3, self.args.session)
        counter = 0
        while time.monotonic() < until and not self.stop.is_set():
            await asyncio.sleep(self.rng.expovariate(1 / self.args.interval))
            if self.stop.is_set():
                return
            text = f"{name} {session.room} {counter} {self.rng.random():.6f}"
            counter += 1
            try:
                ack = await session.sio.call("message", {"text": text}, timeout=TIMEOUT)
            except Exception:
                self.stats.send_errors += 1
                return
            if ack.get("ok"):
                self.stats.acked[session.room][ack["message"]["id"]] = text
            elif ack.get("error") == "rate limited":
                self.stats.rate_limited += 1
            else:
                self.stats.violations.append(f"{name}: message refused: {ack}")

    async def sample(self, pid: int | None) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            row: dict[str, float] = {
                "t": round(time.monotonic() - start, 1),
                "clients": self.stats.connected,
                "acked": sum(len(v) for v in self.stats.acked.values()),
            }
            if pid is not None:
                with contextlib.suppress(OSError):
                    row["rss_mib"] = round(_rss(pid) / 2**20, 1)
                    row["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
            self.stats.samples.append(row)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.sample_every)

    async def run(self, pid: int | None) -> None:
        sampler = asyncio.create_task(self.sample(pid))
        clients = [asyncio.create_task(self.client(n)) for n in range(self.args.clients)]
        await asyncio.sleep(self.args.duration)
        self.stop.set()
        await asyncio.gather(*clients)
        await sampler
        await self.final_catch_up()
        await self.verify()

    async def final_catch_up(self) -> None:
        """Every identity catches up once more in each room it visited, as an app would."""
        sem = asyncio.Semaphore(50)

        async def catch_up(name: str, room: str, stream: Stream) -> None:
            async with sem:
                for attempt in range(5):
                    session = Session(self.url, name, room, stream, polling=False)
                    try:
                        await session.open()
                    except Exception:
                        await session.close()
                        await asyncio.sleep(1 + attempt)
                        continue
                    await session.close()
                    return
                self.stats.violations.append(f"{name} could not catch up in {room}")

        await asyncio.gather(*(catch_up(name, room, s) for (name, room), s in self.streams.items()))

    async def verify(self) -> None:
        v = self.stats.violations
        heads: dict[str, int] = {}
        async with aiohttp.ClientSession(self.url) as http:
            for room in self.rooms:
                stored = await _history(http, room)
                ids = [m["id"] for m in stored]
                if ids != list(range(1, len(ids) + 1)):
                    v.append(f"{room}: stored ids are not 1..{len(ids)}")
                texts = {m["id"]: m["text"] for m in stored}
                for msg_id, text in self.stats.acked[room].items():
                    if texts.get(msg_id) != text:
                        v.append(f"{room}: acked message {msg_id} is not stored as sent")
                if len(set(texts.values())) != len(texts):
                    v.append(f"{room}: a message is stored twice")
                heads[room] = len(ids)
        for (name, room), stream in self.streams.items():
            ids = stream.ids
            if not ids:
                if heads[room]:
                    v.append(f"{name} in {room}: received nothing of {heads[room]}")
                continue
            expected = list(range(ids[0], heads[room] + 1))
            if ids != expected:
                missing = sorted(set(expected) - set(ids))
                dups = len(ids) - len(set(ids))
                v.append(
                    f"{name} in {room}: {len(missing)} missing (first {missing[:5]}), "
                    f"{dups} duplicated, in order: {ids == sorted(ids)}"
                )


async def _history(http: aiohttp.ClientSession, room: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    before = ""
    while True:
        async with http.get(f"/api/rooms/{room}/messages?limit=100{before}") as r:
            page = await r.json()
        messages = page["messages"] + messages
        if not page["has_more"]:
            return messages
        before = f"&before={page['messages'][0]['id']}"


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def start_server(workdir: Path) -> tuple[asyncio.subprocess.Process, str, Path]:
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatapp",
            "--port",
            "0",
            "--db",
            str(workdir / "soak.db"),
            # Hundreds of clients from one address, and a bot-like pace for all of them.
            "--max-connections-per-ip",
            "0",
            "--max-tcp-connections-per-ip",
            "0",
            "--ip-burst",
            "1000000",
            "--ip-rate",
            "1000000",
            cwd=workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    match = re.search(r"http://[^\s/]+", line)
    if match is None:
        raise SystemExit(f"the server did not start: {line!r}\n{log_path.read_text()}")
    return proc, match.group(0), log_path


def summary(args: argparse.Namespace, stats: Stats, elapsed: float) -> dict[str, Any]:
    rss = [s["rss_mib"] for s in stats.samples if "rss_mib" in s]
    fds = [s["fds"] for s in stats.samples if "fds" in s]
    return {
        "clients": args.clients,
        "rooms": args.rooms,
        "duration_s": args.duration,
        "elapsed_s": round(elapsed, 1),
        "sessions": stats.sessions,
        "reconnects_with_since": stats.drops,
        "acked_messages": sum(len(v) for v in stats.acked.values()),
        "connect_errors": stats.connect_errors,
        "send_errors": stats.send_errors,
        "rate_limited": stats.rate_limited,
        "rss_mib_first_max_last": [rss[0], max(rss), rss[-1]] if rss else None,
        "fds_first_max_last": [fds[0], max(fds), fds[-1]] if fds else None,
        "violations": len(stats.violations),
        "samples": stats.samples,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--duration", type=float, default=120, help="seconds of chatting")
    parser.add_argument("--session", type=float, default=20, help="longest connection, s")
    parser.add_argument("--interval", type=float, default=3, help="mean s between messages")
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="a running server on a loopback address")
    parser.add_argument("--ci", action="store_true", help="the short run: 60 clients, 20 s")
    args = parser.parse_args()
    if args.ci:
        args.clients, args.rooms, args.duration, args.session = 60, 6, 20, 8
    proc = None
    log_path = None
    with tempfile.TemporaryDirectory(prefix="chatapp-soak-") as tmp:
        if args.url:
            host = urlsplit(args.url).hostname or ""
            if not (host.startswith("127.") or host in ("localhost", "::1")):
                raise SystemExit("--url must be a loopback address")
            url = args.url.rstrip("/")
        else:
            proc, url, log_path = await start_server(Path(tmp))
        print(f"soak: {args.clients} clients, {args.rooms} rooms, {args.duration:g} s on {url}")
        soak = Soak(args, url)
        started = time.monotonic()
        try:
            await soak.run(proc.pid if proc else None)
        finally:
            if proc is not None and proc.returncode is None:
                proc.terminate()
                rc = await asyncio.wait_for(proc.wait(), 30)
                if rc != 0:
                    soak.stats.violations.append(f"the server exited {rc} on SIGTERM")
        if log_path is not None:
            bad = [line for line in log_path.read_text().splitlines() if BAD_LOG.search(line)]
            soak.stats.violations.extend(f"server log: {line}" for line in bad[:20])
        result = summary(args, soak.stats, time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    shown = {k: v for k, v in result.items() if k != "samples"}
    for key, value in shown.items():
        print(f"  {key}: {value}")
    for line in soak.stats.violations[:30]:
        print(f"  VIOLATION {line}")
    print(f"soak: {'ok' if not soak.stats.violations else 'FAILED'} (details in {out})")
    return 1 if soak.stats.violations else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
