"""Clients that never read their socket and ask for big ``history`` pages within their
event rate: the server's RSS while they do it and after they have left.

    .venv/bin/python benchmarks/slow_readers.py
    .venv/bin/python benchmarks/slow_readers.py --first 40 --readers 4 --each 10 --after 60
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/slow_readers.py

It starts its own ``python -m chatapp`` (default limits, except the message and event
rates, so that the room fills at once; the readers keep to the default event rate) with a fresh SQLite file, fills a room with 100 messages of 2000
emoji (a page of 100 is about 800 KB), then lets one reader attack for ``--first``
seconds, then ``--readers`` more in turn for ``--each`` seconds each, each from its own
127.0.0.x address, and samples the server's RSS once a second until ``--after`` seconds
after the last one left. A reader sends ``history {limit: 100}`` at the event rate (the
burst at once, then ``--rate`` per second) and never reads; it stops when the server drops
it. Prints a summary and writes it as JSON under benchmarks/results/. A measurement, not a
test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WS_PATH = "/socket.io/?EIO=4&transport=websocket"
BIG_TEXT = "\U0001f600" * 2000
MiB = 1 << 20


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ws_frame(text: str) -> bytes:
    """A client-to-server websocket text frame (masked with a zero key)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes([0x81, 0x80 | n])
    elif n < 1 << 16:
        header = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class Reader:
    """A websocket client with a 4 KB receive buffer that joins and never reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0
        self.dropped = False

    @classmethod
    async def open(cls, host: str, port: int, local: str, name: str) -> Reader:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((local, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, port))
        request = (
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        received = b""
        while b'"sid"' not in received.partition(b"\r\n\r\n")[2]:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            received += chunk
        await loop.sock_sendall(sock, ws_frame("40" + json.dumps({"room": "big", "name": name})))
        return cls(sock)

    async def attack(self, seconds: float, burst: int, rate: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not self.dropped and loop.time() - start < seconds:
            due = burst + int((loop.time() - start) * rate)
            while self.sent < due and not self.dropped:
                frame = ws_frame(f'42{self.sent}["history",{{"limit":100}}]')
                try:
                    await asyncio.wait_for(loop.sock_sendall(self.sock, frame), 1.0)
                except OSError:
                    self.dropped = True  # reset by the server
                    break
                except TimeoutError:
                    break  # the server stopped reading us: try again later
                self.sent += 1
            await asyncio.sleep(1 / rate)
            self.dropped = self.dropped or self._closed()

    def _closed(self) -> bool:
        """Whether the server has closed or reset the connection (read without reading)."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        return info[0] != 1  # tcpi_state: 1 is TCP_ESTABLISHED

    def close(self) -> None:
        self.sock.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="chatapp-slow-readers-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        args.python,
        "-m",
        "chatapp",
        "--port",
        "0",
        "--db",
        str(workdir / "chat.db"),
        # The filler sends 100 messages at once; the readers keep to the default event
        # rate (--burst, --rate) by themselves.
        "--message-burst",
        "1000",
        "--message-rate",
        "1000",
        "--event-burst",
        "1000",
        "--event-rate",
        "1000",
        *args.chatapp_arg,
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=open(workdir / "server.log", "wb"),  # noqa: SIM115 - handed to the child
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    if "running at " not in line:
        await proc.wait()
        raise SystemExit((workdir / "server.log").read_text(errors="replace")[-2000:])
    url = line.split("running at ")[1].split()[0].rstrip("/")
    host, port = url.removeprefix("http://").split(":")
    try:
        return await attack(args, url, host, int(port), proc, workdir)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def attack(
    args: argparse.Namespace,
    url: str,
    host: str,
    port: int,
    proc: asyncio.subprocess.Process,
    workdir: Path,
) -> dict[str, Any]:
    samples: list[tuple[float, float, str]] = []
    t0 = time.monotonic()

    def sample(phase: str) -> float:
        value = rss_mib(proc.pid)
        samples.append((round(time.monotonic() - t0, 1), round(value, 1), phase))
        return value

    sender = socketio.AsyncClient(reconnection=False)
    await sender.connect(url, auth={"room": "big", "name": "filler"}, transports=["websocket"])
    for _ in range(10):
        acks = await asyncio.gather(
            *(sender.call("message", {"text": BIG_TEXT}, timeout=30) for _ in range(10))
        )
        assert all(a.get("ok") for a in acks), acks
    baseline = sample("baseline")
    readers: list[dict[str, Any]] = []
    plan = [(args.first, "first")] + [(args.each, f"in turn {k + 1}") for k in range(args.readers)]
    for k, (seconds, phase) in enumerate(plan):
        reader = await Reader.open(host, port, f"127.0.0.{k + 2}", f"reader{k}")
        attack = asyncio.create_task(reader.attack(seconds, args.burst, args.rate))
        peak = 0.0
        while not attack.done():
            peak = max(peak, sample(phase))
            await asyncio.sleep(1)
        await attack
        reader.close()
        readers.append(
            {
                "phase": phase,
                "requests_sent": reader.sent,
                "dropped_by_server": reader.dropped,
                "peak_rss_mib": round(max(peak, sample(phase)), 1),
            }
        )
        print(f"reader {k} ({phase}): {readers[-1]}", flush=True)
    left = time.monotonic()
    after: dict[str, float] = {}
    for mark in sorted({m for m in (1, 10, 30, 60, args.after) if m <= args.after}):
        await asyncio.sleep(max(0.0, left + mark - time.monotonic()))
        after[f"{mark:g}s"] = round(sample(f"after {mark}s"), 1)
    await sender.disconnect()
    proc.terminate()
    await proc.wait()
    log = (workdir / "server.log").read_text(errors="replace")
    return {
        "chatapp": args.python,
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "options": {k: v for k, v in vars(args).items() if k != "python"},
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": max(s[1] for s in samples),
        "rss_after_they_left_mib": after,
        "readers": readers,
        "slow_consumer_drops_logged": log.count("the client is not reading"),
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter of chatapp")
    parser.add_argument("--first", type=float, default=40, help="seconds of the first reader")
    parser.add_argument("--readers", type=int, default=4, help="readers after it, in turn")
    parser.add_argument("--each", type=float, default=10, help="seconds of each of those")
    parser.add_argument("--after", type=float, default=60, help="seconds sampled after")
    parser.add_argument("--burst", type=int, default=40, help="the event burst (chatapp's)")
    parser.add_argument("--rate", type=float, default=20, help="the event rate (chatapp's)")
    parser.add_argument("--chatapp-arg", action="append", default=[], help="extra server flag")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"slow-readers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"baseline {result['baseline_rss_mib']} MiB, peak {result['peak_rss_mib']} MiB, "
        f"after they left {result['rss_after_they_left_mib']} MiB; "
        f"{result['slow_consumer_drops_logged']} slow-consumer drops logged\nresults: {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
