"""engine.io's heartbeat as one timer per session instead of a task per ping, and its
session walk replaced by one that holds session ids (the ``heartbeat`` fast path, on once
:func:`check_heartbeat` passed; the walk is ``Sessions._watch_sessions``)."""

from __future__ import annotations

import asyncio
import time
import weakref

import aiohttp
import engineio
from aiohttp import web
from engineio import async_socket as eio_socket
from engineio import packet as eio_packet

from .fastpaths import SelfCheckFailed, StartedTasks

#: engine.io's session walk (``monitor_clients``), as the task it starts is named.
SERVICE_TASK = "_service_task"


class ChatSocket(eio_socket.AsyncSocket):  # type: ignore[misc]
    """engine.io's session, whose heartbeat is a timer instead of a task.

    engine.io starts a task per ping (``schedule_ping`` -> ``_send_ping``, which sleeps
    ``ping_interval``), so every idle connection keeps one suspended. Here the same wait is
    one ``call_later`` handle; what it then does is what ``_send_ping`` does: unless the
    session is closing or closed, stamp ``last_ping`` and queue a PING (``send()`` would
    first check the ping timeout, which the fresh stamp passes). The timer holds the
    session weakly: a session that ended is freed at once, with whatever its queue held,
    not up to ``ping_interval`` later. engine.io creates its sessions itself, so
    ``Sessions.adopt`` turns each into this class.
    """

    last_ping: float | None  # set by engine.io: when the last ping was sent

    def schedule_ping(self) -> None:
        # As engine.io: only after the previous ping was answered (or for the first one).
        if self.last_ping:
            self.last_ping = None
            asyncio.get_running_loop().call_later(
                self.server.ping_interval, _ping_if_alive, weakref.ref(self)
            )

    def _ping(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.queue.put_nowait(eio_packet.Packet(eio_packet.PING))


def _ping_if_alive(session: weakref.ref[ChatSocket]) -> None:
    socket = session()
    if socket is not None:
        socket._ping()


async def check_heartbeat() -> None:
    """The ``heartbeat`` fast path's self-check: a session of the installed engine.io, made
    a :class:`ChatSocket`, pings after a pong as engine.io's own session does, through the
    methods :class:`ChatSocket` replaces, and with no task; and engine.io's own session
    walk starts with the first request unless ``start_service_task`` is false."""
    await _check_session_walk()
    server = engineio.AsyncServer(async_mode="aiohttp", ping_interval=0.01, ping_timeout=5)
    for chat in (False, True):
        socket = eio_socket.AsyncSocket(server, f"heartbeat-check-{chat}")
        if chat:
            socket.__class__ = ChatSocket
        socket.connected = True
        before = len(asyncio.all_tasks())
        await socket.receive(eio_packet.Packet(eio_packet.PONG))  # schedules the next ping
        tasks = len(asyncio.all_tasks()) - before
        if chat and tasks:
            raise SelfCheckFailed(f"engine.io started {tasks} task(s) for the ping")
        pkt = await asyncio.wait_for(socket.queue.get(), 2.0)
        if pkt.packet_type != eio_packet.PING or not socket.last_ping:
            raise SelfCheckFailed(f"a pong was followed by packet type {pkt.packet_type}")
        if not await socket.check_ping_timeout():
            raise SelfCheckFailed("a session that was just pinged timed out")


async def _check_session_walk() -> None:
    if not await _walks_sessions(replaced=False):
        raise SelfCheckFailed(f"engine.io's session walk is not {SERVICE_TASK}")
    if await _walks_sessions(replaced=True):
        raise SelfCheckFailed("engine.io walked its sessions with start_service_task off")


async def _walks_sessions(*, replaced: bool) -> bool:
    """Whether an engine.io server starts its session walk when it opens a session, with
    ``start_service_task`` left as it is or set false."""
    server = engineio.AsyncServer(async_mode="aiohttp")
    if replaced:
        server.start_service_task = False
    tasks = StartedTasks(server)
    app = web.Application()
    server.attach(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/engine.io/?EIO=4&transport=polling"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            if response.status != 200 or not (await response.text()).startswith("0"):
                raise SelfCheckFailed("engine.io did not open a long-polling session")
        return SERVICE_TASK in tasks.names()
    finally:
        await server.shutdown()
        await runner.cleanup()
        await tasks.cancel()
