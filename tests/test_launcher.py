"""``python -m chatapp.cluster`` starts a working cluster and stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import ClientFactory
from .services import REDIS_URL
from .support import URL_RE


async def test_launcher_starts_processes_that_act_as_one_chat(
    tmp_path: Path, redis_prefix: str, pg_url: str, make_client: ClientFactory
) -> None:
    # The launcher's and its children's stderr (their logs): shown if the test fails.
    log_path = tmp_path / "cluster.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "chatapp.cluster", "--processes", "2", "--base-port", "0"),
            *("--db", pg_url, "--redis-url", REDIS_URL, "--redis-prefix", redis_prefix),
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    try:
        assert proc.stdout is not None
        urls = []
        for _ in range(2):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            match = URL_RE.search(line)
            assert match, repr(line)
            urls.append(match.group(0))
        assert len(set(urls)) == 2
        ann, bob = make_client(), make_client()
        await ann.connect(urls[0], room="team", name="ann")
        assert (await bob.connect(urls[1], room="team", name="bob"))["users"] == ["ann", "bob"]
        await ann.send("hello")
        assert (await bob.wait_for("message"))["text"] == "hello"
        await ann.close()
        await bob.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            # pytest shows what a test printed when it fails.
            print(log_path.read_text(errors="replace"))


async def test_launcher_refuses_to_start_without_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHATAPP_REDIS_URL"}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "chatapp.cluster", "--processes", "2"),
        cwd=tmp_path,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"need a shared Redis: pass --redis-url" in err


def test_the_url_line_is_written_at_once(tmp_path: Path) -> None:
    """The launcher's processes share one stdout, so each writes its URL line with a single
    write: print() writes the text and the newline apart when Python runs unbuffered, and
    two processes starting together then made one line of both URLs and an empty one.

    Each write on a SOCK_SEQPACKET socket arrives as a record of its own.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatapp", "--port", "0", "--db", str(tmp_path / "chat.db")],
            stdout=theirs,
            stderr=log,
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        theirs.close()
        try:
            ours.settimeout(30)
            record = ours.recv(4096).decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    assert URL_RE.search(record) and record.endswith("(Ctrl-C to stop)\n"), record
