"""Test support: a real chatapp process on a free port, and recording Socket.IO clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import socketio

ROOT = Path(__file__).resolve().parent.parent
URL_RE = re.compile(r"http://[^\s/]+")
EVENT_TIMEOUT = 10.0
#: Log lines that mean the server hit something it did not handle.
BAD_LOG = re.compile(r" (ERROR|CRITICAL) |Traceback \(most recent call last\)")
#: ``python -m chatapp`` with the cycle collector disabled from the start.
_WITHOUT_COLLECTOR = (
    "import gc, runpy; gc.disable(); "
    "runpy.run_module('chatapp', run_name='__main__', alter_sys=True)"
)


class Server:
    """``python -m chatapp`` in a subprocess, with its log kept in a file."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
        cycle_collector: bool = True,
    ) -> None:
        self.workdir = workdir
        self.preexec_fn = preexec_fn  # runs in the child before it starts (e.g. setrlimit)
        # Off: the server frees only what reference counting frees (to show that a closed
        # connection's memory does not wait for a collection).
        self.cycle_collector = cycle_collector
        self.db = str(workdir / "chat.db")
        self.args = list(args)
        self.env = env or {}
        self.log_path = workdir / "server.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.allow_errors = False

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def command(self) -> list[str]:
        args = self.args
        if not any(a.startswith("--db") for a in args):
            args = ["--db", self.db, *args]
        if not any(a.startswith("--port") for a in args):
            args = ["--port", "0", *args]
        if self.cycle_collector:
            python = [sys.executable, "-m", "chatapp"]
        else:
            python = [sys.executable, "-c", _WITHOUT_COLLECTOR]
        return [*python, "--log-level", "debug", *args]

    async def start(self) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(),
                cwd=self.workdir,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                preexec_fn=self.preexec_fn,
            )
        finally:
            log.close()
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        match = URL_RE.search(line.decode())
        if match is None:
            await self.proc.wait()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log()}")
        self.url = match.group(0)
        return self

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the server and wait for it to exit; return its exit status."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else 0
        proc.send_signal(sig)
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            # Killed and reaped here, so that nothing of it is left to the next test.
            proc.kill()
            await proc.wait()
            raise AssertionError(
                f"the server did not exit within {timeout:g} s of signal {sig}; killed. "
                f"Its log:\n{self.log()[-30_000:]}"
            ) from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def bad_log_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if BAD_LOG.search(line)]


class Client:
    """A python-socketio AsyncClient that records every event the server sends it."""

    def __init__(
        self,
        transports: list[str] | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        # options go to socketio.AsyncClient (e.g. http_session, to pick a source address)
        self.sio = socketio.AsyncClient(reconnection=False, **options)
        self.transports = transports or ["websocket"]
        self.headers = headers or {}
        self.events: list[tuple[str, Any]] = []
        self.connect_error: Any = None
        self._changed = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)

    async def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if len(args) == 1 else args))
        self._changed.set()

    async def _on_connect_error(self, data: Any) -> None:
        self.connect_error = data
        self._changed.set()

    async def _on_disconnect(self, *args: Any) -> None:
        self.events.append(("disconnect", args))
        self._changed.set()

    async def connect(self, url: str, **auth: Any) -> dict[str, Any]:
        """Connect with ``auth`` and return the welcome."""
        await self.sio.connect(
            url, auth=auth, headers=self.headers, transports=self.transports, wait_timeout=10
        )
        return await self.wait_for("welcome")

    async def connect_refused(self, url: str, **auth: Any) -> str:
        """Connect expecting a refusal; return the server's reason (``err.message``)."""
        try:
            await self.sio.connect(
                url, auth=auth, headers=self.headers, transports=self.transports, wait_timeout=10
            )
        except socketio.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError("the connection was accepted")
        data = self.connect_error
        return data.get("message") if isinstance(data, dict) else str(data)

    def of(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(
        self,
        event: str,
        predicate: Callable[[Any], bool] = lambda data: True,
        timeout: float = EVENT_TIMEOUT,
        count: int = 1,
    ) -> Any:
        """Wait until ``count`` events named ``event`` satisfying ``predicate`` arrived."""

        async def wait() -> Any:
            while True:
                matching = [d for d in self.of(event) if predicate(d)]
                if len(matching) >= count:
                    return matching[count - 1]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def call(self, event: str, *data: Any, timeout: float = EVENT_TIMEOUT) -> Any:
        return await self.sio.call(event, data[0] if len(data) == 1 else data, timeout=timeout)

    async def send(self, text: str, **extra: Any) -> dict[str, Any]:
        """Send a message and return the ack."""
        ack = await self.call("message", {"text": text, **extra})
        assert isinstance(ack, dict)
        return ack

    def message_ids(self) -> list[int]:
        return [m["id"] for m in self.of("message")]

    async def close(self) -> None:
        if self.sio.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sio.disconnect(), 5)
