"""Two attacks on connections, measured on the server process (figures for docs/reliability.md).

    .venv/bin/python benchmarks/connection_attacks.py --scenario idle
    .venv/bin/python benchmarks/connection_attacks.py --scenario trickle [--addresses 50]

``idle``: the server is started with the common soft limit of 1024 open descriptors;
1100 TCP connections from 127.0.0.2 send nothing; then a page, the API and a Socket.IO
connect are tried from 127.0.0.1. Prints the descriptor limits and counts, and what the
probes got.

``trickle``: 300 polling POSTs to one session, each announcing 1 MB and sending all but
the last 16,960 bytes of it in 64 KiB pieces, from the session's own address (or, with
``--addresses N``, spread over N addresses, which the session's address check refuses).
Prints the server's RSS growth.

Extra arguments after ``--`` go to the server (``-- --max-tcp-connections-per-ip 0``).
PYTHONPATH picks which chatapp runs. Only 127.0.0.0/8 is used. Not part of the pytest run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

import aiohttp
import socketio


def common_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def nofile_limits(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return "/".join(line.split()[3:5])
    return "?"


async def start_server(
    python: str, workdir: Path, extra: list[str], soft_limit: bool
) -> tuple[asyncio.subprocess.Process, str]:
    with open(workdir / "server.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            python,
            "-m",
            "chatapp",
            "--port",
            "0",
            "--db",
            str(workdir / "chat.db"),
            *extra,
            cwd=workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            preexec_fn=common_soft_limit if soft_limit else None,
        )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    url = next(word for word in line.split() if word.startswith("http://")).rstrip("/")
    return proc, url


async def idle(python: str, workdir: Path, extra: list[str]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc, url = await start_server(python, workdir, extra, soft_limit=True)
    port = int(url.rsplit(":", 1)[1])
    before = fd_count(proc.pid)
    conns: list[asyncio.StreamWriter] = []

    async def one() -> None:
        with contextlib.suppress(OSError, TimeoutError):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0)), 5
            )
            conns.append(writer)

    for _ in range(11):
        await asyncio.gather(*(one() for _ in range(100)))
    await asyncio.sleep(1)  # let the server refuse what it refuses
    during = fd_count(proc.pid)
    probes: dict[str, object] = {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for path in ("/", "/api/rooms"):
            try:
                async with http.get(url + path) as r:
                    probes[path] = r.status
            except Exception as exc:
                probes[path] = type(exc).__name__
    sio = socketio.AsyncClient(reconnection=False)
    try:
        await asyncio.wait_for(sio.connect(url, transports=["websocket"], wait_timeout=5), 8)
        probes["socket.io"] = "connected"
        await sio.disconnect()
    except Exception as exc:
        probes["socket.io"] = type(exc).__name__
    print(f"descriptor limit (soft/hard): {nofile_limits(proc.pid)}")
    print(f"server descriptors: {before} before, {during} with the attack")
    print(f"attacker connections accepted by the kernel: {len(conns)} of 1100")
    print(f"from 127.0.0.1: {probes}")
    for writer in conns:
        writer.transport.abort()
    proc.terminate()
    await proc.wait()


async def trickle(python: str, workdir: Path, extra: list[str], addresses: int) -> None:
    proc, url = await start_server(python, workdir, extra, soft_limit=False)
    port = int(url.rsplit(":", 1)[1])
    own = "127.0.0.2"
    connector = aiohttp.TCPConnector(local_addr=(own, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(url + "/socket.io/?EIO=4&transport=polling") as r,
    ):
        sid = json.loads((await r.text())[1:])["sid"]
    await asyncio.sleep(0.5)
    base = rss_mib(proc.pid)
    head = (
        f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    writers = []
    for n in range(300):
        source = own if addresses <= 1 else f"127.0.0.{3 + n % addresses}"
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writers.append(writer)
    for writer in writers:  # all at once, bodies right behind the heads
        writer.write(head)
    peak = base
    piece = b"4" * 65536
    for _ in range(15):  # 983,040 of the 1,000,000 bytes announced
        for writer in writers:
            if not writer.is_closing():
                writer.write(piece)
        for writer in writers:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 5)
        peak = max(peak, rss_mib(proc.pid))
    await asyncio.sleep(1)  # what the server still reads from the kernel's buffers
    peak = max(peak, rss_mib(proc.pid))
    print(f"server RSS: {base:.1f} MiB before, +{peak - base:.1f} MiB at the peak")
    for writer in writers:
        writer.transport.abort()
    proc.terminate()
    await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("idle", "trickle"), required=True)
    parser.add_argument("--python", default=sys.executable, help="the interpreter for chatapp")
    parser.add_argument("--addresses", type=int, default=1, help="trickle: source addresses")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.scenario == "idle":
            asyncio.run(idle(args.python, Path(tmp), extra))
        else:
            asyncio.run(trickle(args.python, Path(tmp), extra, args.addresses))


if __name__ == "__main__":
    main()
