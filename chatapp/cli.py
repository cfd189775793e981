"""``python -m chatapp``: parse settings, serve until Ctrl-C or SIGTERM, exit cleanly;
``python -m chatapp migrate``: bring the database's schema up to date and exit;
``python -m chatapp users``: manage accounts (:mod:`chatapp.users_cli`);
``python -m chatapp bots``: bot accounts and their tokens (:mod:`chatapp.bots_cli`);
``python -m chatapp backup PATH``: a consistent copy of a SQLite database (:mod:`.backup`);
``python -m chatapp export``/``import``: history as JSON Lines (:mod:`chatapp.export`)."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .app import create_app
from .connections import BACKLOG, raise_open_file_limit, runner_options
from .handles import ConfusablesMismatch, check_confusables
from .keys import connections_key, invites_key
from .sessions import LibraryMismatch
from .settings import Settings, load_settings, redacted
from .store import StoreError, migrate
from .tasks import still_waiting

log = logging.getLogger("chatapp")

EXIT_STARTUP_ERROR = 2
#: The stop did not finish within --stop-timeout. Past it the process logs what it still
#: waits on and exits, rather than wait for the service manager's SIGKILL, which says
#: nothing.
EXIT_STOP_TIMEOUT = 3
#: Allocations between collections of the youngest generation (CPython: 700).
GC_THRESHOLD = 10_000


class StartupError(Exception):
    """The server could not start; the message is the one line shown to the operator."""


class _ClientHttpErrors(logging.Filter):
    """aiohttp logs a client's malformed HTTP (a request line too long, a broken header) as
    an ERROR with a traceback. It is the client's mistake: one WARNING line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {exc.code} {exc.message.splitlines()[0]:.200}"
            record.args = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def configure_logging(level: str) -> None:
    # A record need not carry what the format never shows: the thread, the process and
    # the caller's file and line (the logging HOWTO's "Optimization"). Finding the caller
    # alone walked the stack for a tenth of a line's cost, and a crowd reconnecting writes
    # two lines a connection.
    for flag in ("logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks"):
        setattr(logging, flag, False)  # logAsyncioTasks: Python 3.12 and later
    if hasattr(logging, "_srcfile"):
        logging._srcfile = None
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.server").addFilter(_ClientHttpErrors())


async def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to, as asyncio's create_server
    opens them (SO_REUSEADDR; IPv6 sockets IPv6-only); StartupError if one cannot be bound."""
    loop = asyncio.get_running_loop()
    sockets: list[socket.socket] = []
    try:
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, _, _, _, address in dict.fromkeys(infos):
            sockets.append(socket.create_server(address, family=family, backlog=BACKLOG))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use "
                "(choose another with --port or CHATAPP_PORT)"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sockets


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run the server until SIGINT/SIGTERM; raise StartupError if it cannot start."""
    # Signals are handled from the start, so a stop request during start-up is not lost.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The port first: if it is taken, nothing else (the database) has been opened or
    # created, and the operator gets one line.
    sockets = await listen(settings.host, settings.port)
    try:
        check_confusables()
        app = create_app(settings)
    except (LibraryMismatch, ConfusablesMismatch) as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(str(exc)) from None
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=10, **runner_options(settings)
    )
    try:
        await runner.setup()
    except StoreError as exc:
        for sock in sockets:
            sock.close()
        raise StartupError(str(exc)) from None
    listeners: list[asyncio.Server] = []
    try:
        # Once start-up can no longer fail (its errors are one line), before connections come.
        raise_open_file_limit()
        assert runner.server is not None
        # Not a TCPSite: aiohttp's protocol behind the per-address connection count.
        listeners = await app[connections_key].listen(runner.server, sockets)
        host, port = sockets[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        # Before the URL, which tells the operator (and the tests) that start-up is over.
        if settings.access_token:
            log.info("private server: pages, the JSON API and Socket.IO need the access token")
        else:
            log.info(
                "open server: anyone who can reach it can read and post "
                "(set CHATAPP_ACCESS_TOKEN to make it private)"
            )
        # Before the URL, like every start-up line.
        claim = app[invites_key].claim_path
        if claim is not None:
            log.warning(
                "no admin yet: whoever opens http://%s:%s%s first creates the admin account "
                "(or run: python -m chatapp users add HANDLE --admin)",
                shown,
                port,
                claim,
            )
        # The URL on stdout is the operator's (and the test harness's) cue that we are up. One
        # write: processes of `python -m chatapp.cluster` share a stdout, and print() writes
        # the newline apart when Python runs unbuffered, so two lines could interleave.
        sys.stdout.write(f"chatapp is running at http://{shown}:{port}/ (Ctrl-C to stop)\n")
        sys.stdout.flush()
        log.info("serving http://%s:%s/ with history in %s", shown, port, redacted(settings.db))
        # What start-up built lives as long as the process: out of the collector's way. Chat
        # traffic makes many short-lived objects and few cycles, so the youngest generation is
        # collected less often than CPython's default (every 700 allocations).
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: finishing in-flight work and disconnecting clients")
    finally:
        for listener in listeners:
            listener.close()  # no new connections; the open ones are aiohttp's to close
        await _cleanup_within(runner, settings.stop_timeout)
    log.info("stopped")


async def _cleanup_within(runner: web.AppRunner, limit: float) -> None:
    """``runner.cleanup()``; past ``limit`` seconds, log what is still waited on and exit
    with status :data:`EXIT_STOP_TIMEOUT` (``asyncio.run`` would wait for those tasks
    again)."""
    cleanup = asyncio.ensure_future(runner.cleanup())
    done, _ = await asyncio.wait([cleanup], timeout=limit)
    if done:
        cleanup.result()
        return
    log.error(
        "stopping took over %g s; exiting without finishing. Still waiting: %s",
        limit,
        still_waiting(),
    )
    logging.shutdown()
    os._exit(EXIT_STOP_TIMEOUT)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop  # a faster event loop, used when installed
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def run_migrate(argv: Sequence[str], prog: str) -> int:
    """``migrate``: the schema of ``--db`` (or ``CHATAPP_DB``) brought up to date, one line."""
    settings = load_settings(
        argv,
        prog=prog,
        only=("db",),
        description="Create the database's tables, or migrate them to this version's "
        "schema, and exit (the server does the same at start). A database of a newer "
        "version is refused and left untouched (exit status 2).",
    )
    try:
        before, after = asyncio.run(migrate(settings.db))
    except StoreError as exc:
        print(f"chatapp: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    where = redacted(settings.db)
    if before == after:
        print(f"{where}: schema version {after}, up to date")
    else:
        print(f"{where}: schema version {before} -> {after}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The ``chatapp`` console script; ``prog`` names the command in usage and errors
    (default: as invoked, e.g. ``chatapp``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0])
    if args[:1] == ["migrate"]:
        return run_migrate(args[1:], f"{prog} migrate")
    if args[:1] == ["users"]:
        from . import users_cli

        return users_cli.main(args[1:], f"{prog} users")
    if args[:1] in (["export"], ["import"]):
        from . import export

        return export.main(args[1:], f"{prog} {args[0]}", args[0])
    if args[:1] == ["backup"]:
        from . import backup

        return backup.main(args[1:], f"{prog} backup")
    if args[:1] == ["bots"]:
        from . import bots_cli

        return bots_cli.main(args[1:], f"{prog} bots")
    settings = load_settings(args, prog=prog)
    configure_logging(settings.log_level)
    try:
        _run(serve(settings))
    except StartupError as exc:
        print(f"chatapp: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    return 0
