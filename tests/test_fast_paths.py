"""Fast paths prove themselves at start-up or step aside (chatapp/fastpaths.py).

Each fast path is on only once its self-check passed on the installed libraries; if the
libraries behave otherwise, the public-API path serves and one log line names the fast
path and why it is off; ``--no-fast-paths`` turns them all off. Either way people chat.
The libraries are changed here the way a release could change them (monkeypatching
aiohttp and engine.io, never chatapp), and the server is the real one, in this process.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engineio
import pytest
import socketio
from aiohttp import web
from engineio import async_socket as eio_socket
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from chatapp.app import create_app
from chatapp.heartbeat import ChatSocket
from chatapp.keys import fanout_key, fast_paths_key, sessions_key, sio_key
from chatapp.settings import load_settings

from .support import ROOT, Client


@dataclass
class Running:
    url: str
    app: web.Application
    runner: web.AppRunner

    def fast(self) -> set[str]:
        paths = self.app[fast_paths_key]
        return {name for name in paths.names if name in paths}

    def aiohttp_connections(self) -> int:
        """The TCP connections aiohttp serves (a detached websocket is not one of them)."""
        server = self.runner.server
        assert server is not None
        return len(server.connections)

    def session_class(self) -> type:
        (socket,) = self.app[sio_key].eio.sockets.values()
        return type(socket)

    def walks_sessions(self) -> str:
        """Whose session walk runs: engine.io's, chatapp's, or none yet."""
        names = {getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks()}
        walks = {"AsyncServer._service_task", "Sessions._watch_sessions"} & names
        assert len(walks) <= 1, walks
        return walks.pop().split(".")[0] if walks else ""

    def sends_directly(self) -> bool:
        """Whether what python-socketio sends to one client takes chatapp's direct path."""
        send_packet = self.app[sio_key]._send_packet
        assert send_packet.__self__ in (self.app[sio_key], self.app[sessions_key])
        return send_packet.__self__ is self.app[sessions_key]


@asynccontextmanager
async def running(tmp_path: Path, *argv: str) -> AsyncIterator[Running]:
    settings = load_settings(["--db", str(tmp_path / "chat.db"), "--port", "0", *argv], environ={})
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield Running(f"http://127.0.0.1:{runner.addresses[0][1]}", app, runner)
    finally:
        await runner.cleanup()


async def chat(url: str) -> Client:
    """A websocket client that joined the lobby and had a message acked and delivered."""
    client = Client(transports=["websocket"])
    await client.connect(url, room="lobby", name="ann")
    ack = await client.send("hello")
    assert ack["ok"] is True
    await client.wait_for("message", lambda m: m["text"] == "hello")
    return client


def library_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the events python-socketio's own event path handles from now on."""
    handled: list[str] = []
    handle_event = socketio.AsyncServer._handle_event

    async def spy(self: Any, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        handled.append(data[0])
        await handle_event(self, eio_sid, namespace, id, data)

    monkeypatch.setattr(socketio.AsyncServer, "_handle_event", spy)
    return handled


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture, packet_json: None) -> None:
    caplog.set_level(logging.INFO, logger="chatapp")


async def test_every_fast_path_is_on_when_its_check_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path) as server:
        assert server.fast() == {"detach", "heartbeat", "direct", "rooms", "events"}
        assert lines(caplog, "fast paths on: ") == [
            "fast paths on: detach, heartbeat, direct, rooms, events"
        ]
        handled = library_events(monkeypatch)
        client = await chat(server.url)
        # The websocket was taken over from aiohttp; engine.io's session pings by timer;
        # acks take chatapp's path; the message event went straight to its handler.
        assert handled == []
        assert server.aiohttp_connections() == 0
        assert server.session_class() is ChatSocket
        assert server.walks_sessions() == "Sessions"
        assert server.sends_directly()
        assert server.app[fanout_key].indexed
        await client.close()
    assert not lines(caplog, "fast path ")


async def test_the_switch_turns_them_all_off_and_people_still_chat(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, "--fast-paths", "off") as server:
        assert server.fast() == set()
        assert lines(caplog, "fast paths off") == [
            "fast paths off (--fast-paths): detach, heartbeat, direct, rooms, events use the"
            " libraries' public API"
        ]
        assert not lines(caplog, "fast paths on")
        handled = library_events(monkeypatch)
        client = await chat(server.url)
        assert handled == ["message"]
        # aiohttp, engine.io and python-socketio serve the connection themselves.
        assert server.aiohttp_connections() == 1
        assert server.session_class() is eio_socket.AsyncSocket
        assert server.walks_sessions() == "AsyncServer"
        assert not server.sends_directly()
        assert not server.app[fanout_key].indexed
        await client.close()


def _without_set_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release of aiohttp without the method the detach relies on.
    monkeypatch.delattr(web.WebSocketResponse, "_set_closed")


def _pinging_from_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release of engine.io that pings from a task of its own, bypassing schedule_ping.
    receive = eio_socket.AsyncSocket.receive

    async def changed(self: Any, pkt: Any) -> None:
        if pkt.packet_type == eio_packet.PONG:
            self.last_ping = None
            self.server.start_background_task(self._send_ping)
            return
        await receive(self, pkt)

    monkeypatch.setattr(eio_socket.AsyncSocket, "receive", changed)


async def test_naming_fast_paths_runs_only_those(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, "--fast-paths", "heartbeat") as server:
        assert server.fast() == {"heartbeat"}
        assert lines(caplog, "fast paths off") == [
            "fast paths off (--fast-paths): detach, direct, rooms, events use the libraries'"
            " public API"
        ]
        client = await chat(server.url)
        assert server.aiohttp_connections() == 1
        assert server.session_class() is ChatSocket
        assert not server.sends_directly()
        await client.close()


def _walking_sessions_regardless(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release of engine.io that starts its session walk whatever start_service_task says.
    handle_request = engineio.AsyncServer.handle_request

    async def changed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.service_task_handle is None:
            self.service_task_handle = self.start_background_task(self._service_task)
        return await handle_request(self, *args, **kwargs)

    monkeypatch.setattr(engineio.AsyncServer, "handle_request", changed)


def _send_frame_suspending_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release of aiohttp whose websocket writer hands frames to a task of its own.
    send_frame = web.WebSocketResponse.send_frame

    async def changed(self: Any, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        await send_frame(self, *args, **kwargs)

    monkeypatch.setattr(web.WebSocketResponse, "send_frame", changed)


def _acks_sent_another_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release of python-socketio that sends acks without AsyncServer._send_packet.
    async def ack(self: Any, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        pkt = self.packet_class(sio_packet.ACK, namespace=namespace, id=id, data=data)
        encoded = pkt.encode()  # a list for a binary ack: the header, then attachments
        for part in encoded if isinstance(encoded, list) else [encoded]:
            await self.eio.send(eio_sid, part)

    async def handle_event(self: Any, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        r = await self._trigger_event(data[0], namespace, sid, *data[1:])
        if id is not None:
            data = list(r) if isinstance(r, tuple) else [] if r is None else [r]
            await ack(self, eio_sid, namespace, id, data)

    monkeypatch.setattr(socketio.AsyncServer, "_handle_event", handle_event)


def _default_namespace_decoded_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release of python-socketio whose decoder names the default namespace.
    decode = sio_packet.Packet.decode

    def changed(self: Any, encoded_packet: Any) -> Any:
        attachments = decode(self, encoded_packet)
        self.namespace = self.namespace or "/"
        return attachments

    monkeypatch.setattr(sio_packet.Packet, "decode", changed)


def _disconnect_forgetting_more(monkeypatch: pytest.MonkeyPatch) -> None:
    # A release of python-socketio whose disconnection also forgets what a client was sent.
    basic_disconnect = socketio.base_manager.BaseManager.basic_disconnect

    def changed(self: Any, sid: str, namespace: str, **kwargs: Any) -> None:
        basic_disconnect(self, sid, namespace, **kwargs)
        self.callbacks.clear()

    monkeypatch.setattr(socketio.base_manager.BaseManager, "basic_disconnect", changed)


@pytest.mark.parametrize(
    ("name", "change", "why"),
    [
        ("detach", _without_set_closed, "AttributeError"),
        ("heartbeat", _pinging_from_a_task, "SelfCheckFailed: engine.io started 1 task(s)"),
        ("heartbeat", _walking_sessions_regardless, "SelfCheckFailed: engine.io walked"),
        ("direct", _send_frame_suspending_first, "SelfCheckFailed: aiohttp's send_frame"),
        ("direct", _acks_sent_another_way, "SelfCheckFailed: AsyncServer._send_packet was"),
        ("rooms", _disconnect_forgetting_more, "SelfCheckFailed: disconnecting left"),
        ("events", _default_namespace_decoded_by_name, "SelfCheckFailed: python-socketio decodes"),
    ],
)
async def test_a_fast_path_steps_aside_when_the_library_differs(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    change: Callable[[pytest.MonkeyPatch], None],
    why: str,
) -> None:
    change(monkeypatch)
    async with running(tmp_path) as server:
        assert server.fast() == {"detach", "heartbeat", "direct", "rooms", "events"} - {name}
        (line,) = lines(caplog, "fast path ")
        assert line.startswith(f"fast path {name} off") and why in line, line
        assert "using the public API" in line
        handled = library_events(monkeypatch)
        client = await chat(server.url)
        assert handled == (["message"] if name == "events" else [])
        if name == "detach":
            assert server.aiohttp_connections() == 1
        elif name == "heartbeat":
            assert server.session_class() is eio_socket.AsyncSocket
            assert server.walks_sessions() == "AsyncServer"
        elif name == "rooms":
            assert not server.app[fanout_key].indexed
        elif name == "direct":
            assert not server.sends_directly()
        await client.close()


def test_the_self_checks_leave_the_servers_signal_handling_alone() -> None:
    """A self-check's loopback client must not take SIGINT over: python-engineio's client
    puts a handler of its own on the loop, which cancels every task, so Ctrl-C would kill
    the server instead of stopping it cleanly. A fresh interpreter (the library does it
    once per process) sets a handler, runs the checks, and sends itself SIGINT."""
    script = (
        "import asyncio, os, signal\n"
        "from chatapp.heartbeat import check_heartbeat\n"
        "from chatapp.managers import check_rooms\n"
        "from chatapp.sessions import check_direct\n"
        "from chatapp.websocket import check_detach\n"
        "async def main():\n"
        "    stop = asyncio.Event()\n"
        "    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)\n"
        "    for check in (check_detach, check_heartbeat, check_direct, check_rooms):\n"
        "        await check()\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    await asyncio.wait_for(stop.wait(), 10)\n"
        "    print('stopped')\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stopped"


@pytest.mark.parametrize("fast_paths", ["on", "off"])
async def test_a_disconnection_leaves_every_room_it_was_in(tmp_path: Path, fast_paths: str) -> None:
    """With the ``rooms`` index or python-socketio's scan, nothing of a connection stays in
    the manager's rooms once it is gone."""
    async with running(tmp_path, "--fast-paths", fast_paths) as server:
        manager = server.app[fanout_key]
        assert manager.indexed is (fast_paths == "on")
        stays, goes = await chat(server.url), await chat(server.url)
        assert (await goes.call("subscribe", {"room": "other"}))["ok"]
        sid = goes.sio.get_sid()
        assert [room for room, sids in manager.rooms["/"].items() if sid in sids]
        await goes.close()
        deadline = asyncio.get_running_loop().time() + 5
        while any(sid in sids for sids in manager.rooms["/"].values()):
            assert asyncio.get_running_loop().time() < deadline, manager.rooms
            await asyncio.sleep(0.01)
        assert sid not in manager.rooms["/"] and "other" not in manager.rooms["/"]
        assert {s for _, s in manager._rooms_of} == {stays.sio.get_sid()}
        await stays.close()
