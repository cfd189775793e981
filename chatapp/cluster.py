"""``python -m chatapp.cluster``: several chatapp processes on one machine, for a try-out.

Starts N ``python -m chatapp`` processes on consecutive ports with the same other flags
(which must name a Redis; see docs/deploy.md), stops them all on Ctrl-C or SIGTERM, and
stops the rest if one of them exits. For production, run the processes under a service
manager instead, one unit per port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from .settings import load_settings

EXIT_USAGE = 2


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m chatapp.cluster",
        description="Start several chatapp processes sharing one Redis (and one database) "
        "on consecutive ports. Every other flag, and every CHATAPP_* variable, is passed to "
        "each process; --redis-url (or CHATAPP_REDIS_URL) is required.",
    )
    parser.add_argument("--processes", type=int, default=2, help="how many processes (default 2)")
    parser.add_argument(
        "--base-port",
        type=int,
        default=8081,
        help="port of the first process; the others count up from it "
        "(default 8081; 0 gives each a free port)",
    )
    ns, rest = parser.parse_known_args(argv)
    if not 1 <= ns.processes <= 64:
        parser.error("--processes must be between 1 and 64")
    if not 0 <= ns.base_port <= 65535 - ns.processes:
        parser.error("--base-port leaves no room for that many ports")
    if any(a == "--port" or a.startswith("--port=") for a in rest):
        parser.error("use --base-port, not --port")
    settings = load_settings(rest)  # the processes' own flags, checked once here
    if not settings.redis_url:
        parser.error(
            "several processes need a shared Redis: pass --redis-url or set CHATAPP_REDIS_URL"
        )
    return ns, rest


async def run(processes: int, base_port: int, flags: list[str]) -> int:
    children: list[asyncio.subprocess.Process] = []
    for i in range(processes):
        port = base_port + i if base_port else 0
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chatapp", "--port", str(port), *flags
            )
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(child.wait()) for child in children]
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
    failed = not stopping.done()
    if failed:
        print("chatapp.cluster: a process exited; stopping the others", file=sys.stderr)
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*waits)
    stopping.cancel()
    return 1 if failed or any(codes) else 0


def main(argv: Sequence[str] | None = None) -> int:
    ns, flags = parse(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(run(ns.processes, ns.base_port, flags))


if __name__ == "__main__":
    sys.exit(main())
