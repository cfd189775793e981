"""Fast paths: speed-ups that rely on a library's private internals, each proven at start-up.

A fast path runs only once its self-check has exercised, on the installed versions of the
libraries, the behaviour it relies on (a real loopback connection, not a look at source
text). If the check fails, the stock path, built on the libraries' public API, runs instead
and one log line names the fast path and why it is off. ``--fast-paths off``
(``CHATAPP_FAST_PATHS=off``) turns them all off; naming some (``--fast-paths heartbeat``)
runs only those. Either way the protocol, the order and
exactly-once guarantees, the limits and the security behaviour are the same; only speed and
memory differ (docs/benchmarks.md has the figures of each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web

log = logging.getLogger(__name__)

#: How long a self-check may take before its fast path is given up.
CHECK_TIMEOUT = 10.0


@dataclass(frozen=True)
class FastPath:
    """One optimisation below the libraries' public API."""

    name: str
    #: What it buys, for the log line.
    gain: str
    #: Exercises the internals the fast path relies on; raises if they behave otherwise
    #: (:class:`SelfCheckFailed` says how).
    check: Callable[[], Awaitable[None]]


class SelfCheckFailed(Exception):
    """A library does not behave the way a fast path relies on."""


class FastPaths:
    """Which fast paths this process runs: settled by :meth:`start`, before any request.

    Until then (and when they are off) every fast path is off, so a server that is never
    started, as in some tests, runs the stock paths.
    """

    def __init__(self, paths: Sequence[FastPath], *, wanted: Collection[str]) -> None:
        self._paths = tuple(paths)
        self._wanted = frozenset(wanted)
        self._on: frozenset[str] = frozenset()

    def __contains__(self, name: object) -> bool:
        return name in self._on

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(path.name for path in self._paths)

    async def start(self) -> None:
        """Run each fast path's self-check; turn on those that pass."""
        unwanted = [name for name in self.names if name not in self._wanted]
        if unwanted:
            log.info(
                "fast paths off (--fast-paths): %s use the libraries' public API",
                ", ".join(unwanted),
            )
        on: set[str] = set()
        for path in self._paths:
            if path.name not in self._wanted:
                continue
            try:
                await asyncio.wait_for(path.check(), CHECK_TIMEOUT)
            except Exception as exc:
                log.warning(
                    "fast path %s off (%s): its self-check failed on the installed "
                    "libraries: %s: %s; using the public API",
                    path.name,
                    path.gain,
                    type(exc).__name__,
                    exc,
                )
            else:
                on.add(path.name)
        self._on = frozenset(on)
        if on:
            log.info("fast paths on: %s", ", ".join(n for n in self.names if n in on))


class StartedTasks:
    """The background tasks an engine.io server starts while a self-check runs it.

    A check's loopback server must not leave tasks behind (a session's ping task sleeps
    ``ping_interval``), and some checks ask which tasks it started.
    """

    def __init__(self, server: Any) -> None:
        self.started: list[tuple[str, asyncio.Future[Any]]] = []
        self._start = server.start_background_task
        server.start_background_task = self._record

    def _record(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        task = self._start(target, *args, **kwargs)
        self.started.append((getattr(target, "__name__", ""), task))
        return task

    def names(self) -> list[str]:
        """The names of the functions the started tasks run, in order."""
        return [name for name, _ in self.started]

    async def cancel(self) -> None:
        """Cancel every started task and wait for them to end."""
        tasks = [task for _, task in self.started]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def loopback(sio: Any, app: web.Application) -> AsyncIterator[tuple[str, Any]]:
    """Serve ``app``, to which ``sio`` is attached, on a free loopback port for a
    self-check: yields its URL and a python-socketio client, not yet connected. After, the
    client is disconnected, the server shut down and the tasks its engine.io server
    started cancelled."""
    tasks = StartedTasks(sio.eio)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    # handle_sigint=False: engine.io's client would put its own SIGINT handler (cancel every
    # task) on the loop, in place of the server's clean stop.
    client = socketio.AsyncClient(handle_sigint=False)
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", client
    finally:
        await client.disconnect()
        await sio.shutdown()
        await runner.cleanup()
        await tasks.cancel()
