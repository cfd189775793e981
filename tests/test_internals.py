"""The modules of ``chatapp.internals.INTERNAL_USERS`` reach into python-socketio,
python-engineio and aiohttp internals.

These tests fail loudly when an upgrade moves what it relies on: update those modules,
TESTED_VERSIONS and the pins in .ci/constraints.txt (the lock, ``bash .ci/lock``) together after
reading the new code. The
last tests drive the direct write path inside one process, stepping the event loop: a
frame is never written past a packet engine.io's writer has taken but not yet sent, and a
connection whose transport buffer backs up is no longer written to directly, so its
packets queue and the queue's bound drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from aiohttp._websocket.writer import WebSocketWriter
from engineio import async_socket
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import async_manager, async_pubsub_manager

from chatapp import (
    fanout,
    frames,
    heartbeat,
    internals,
    jsoncodec,
    managers,
    sendqueue,
    websocket,
)
from chatapp.app import create_app
from chatapp.keys import guard_key, sessions_key, sio_key
from chatapp.settings import load_settings

from .raw import WS_PATH, ws_frame
from .support import ROOT


@pytest.fixture
def packet_json() -> Iterator[None]:
    """``json=`` sets a class attribute of both packet classes; undo it after the test."""
    saved = socketio.packet.Packet.json, engineio.packet.Packet.json
    yield
    socketio.packet.Packet.json, engineio.packet.Packet.json = saved


# -- versions -------------------------------------------------------------------------------


def test_library_versions_are_the_tested_ones() -> None:
    for dist in ("python-socketio", "python-engineio", "aiohttp"):
        assert version(dist) == internals.TESTED_VERSIONS[dist], (
            f"{dist} {version(dist)} is installed but chatapp was written against "
            f"{internals.TESTED_VERSIONS[dist]}: re-check the internals it uses, then update "
            "TESTED_VERSIONS and .ci/constraints.txt"
        )


def test_the_lock_pins_the_tested_versions() -> None:
    pins = (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
    for dist in ("python-socketio", "python-engineio", "aiohttp"):
        assert f"{dist}=={internals.TESTED_VERSIONS[dist]}" in pins, pins


# -- python-engineio --------------------------------------------------------------------------


def test_driver_hooks_and_handlers_are_where_sessions_expect(tmp_path: Path) -> None:
    server = socketio.AsyncServer(async_mode="aiohttp")
    assert server.eio._async["websocket"] is eio_aiohttp.WebSocket
    assert server.eio._async["translate_request"] is eio_aiohttp.translate_request
    assert {"connect", "message", "disconnect"} <= set(server.eio.handlers)
    # engine.io awaits a coroutine translate_request.
    handle = inspect.getsource(engineio.async_server.AsyncServer.handle_request)
    assert "translate_request = self._async['translate_request']" in handle
    assert "await translate_request(" in handle
    app = create_app(load_settings(["--db", str(tmp_path / "x.db")], environ={}))
    sio, eng, guard = app[sio_key], app[sessions_key], app[guard_key]
    assert sio.eio._async["translate_request"] == eng._translate_request
    assert sio.eio._async["websocket"] == eng._websocket
    assert sio.eio.handlers["message"] == guard._message
    assert sio._send_packet == eng._send_packet
    # The driver table is engine.io's module-level dict: it must not have been changed.
    assert eio_aiohttp._async["websocket"] is eio_aiohttp.WebSocket


def test_socket_and_queue_internals() -> None:
    server = socketio.AsyncServer(async_mode="aiohttp")
    assert isinstance(server.eio.sockets, dict)
    socket_init = inspect.signature(async_socket.AsyncSocket.__init__)
    assert list(socket_init.parameters)[:3] == ["self", "server", "sid"]
    close = inspect.signature(async_socket.AsyncSocket.close)
    assert list(close.parameters) == ["self", "wait", "abort", "reason"]
    # The send queue is created through the server (Sessions makes it a SendQueue), written
    # by send() with put(), and read by poll() with get() / get_nowait().
    assert "self.server.create_queue()" in inspect.getsource(engineio.base_socket.BaseSocket)
    assert "self.queue.put(pkt)" in inspect.getsource(async_socket.AsyncSocket.send)
    poll = inspect.getsource(async_socket.AsyncSocket.poll)
    assert "self.queue.get()" in poll and "self.queue.get_nowait()" in poll
    assert "except asyncio.QueueEmpty:" in poll
    # SendQueue has every method engine.io calls on a socket's queue.
    called = set()
    for module in (async_socket, engineio.async_server, engineio.base_socket):
        called |= set(re.findall(r"\.queue\.(\w+)", inspect.getsource(module)))
    assert called == {"get", "get_nowait", "put", "put_nowait", "task_done", "join"}, called
    for method in called:
        assert callable(getattr(sendqueue.SendQueue, method)), method
    sock = async_socket.AsyncSocket(server.eio, "sid")
    assert isinstance(sock.queue, asyncio.Queue)
    for flag in ("connected", "closing", "closed", "upgrading", "upgraded"):
        assert getattr(sock, flag) is False
    # engine.io runs the connect event before it serves a new websocket, so the queue is
    # replaced before any writer reads it.
    connect = inspect.getsource(engineio.async_server.AsyncServer._handle_connect)
    assert connect.index("'connect', sid, environ") < connect.index("s.handle_get_request(")


def test_heartbeat_internals() -> None:
    # ChatSocket repeats engine.io's ping scheduling with a timer instead of a task.
    schedule = inspect.getsource(async_socket.AsyncSocket.schedule_ping)
    for step in (
        "if self.last_ping:",
        "self.last_ping = None",
        "self.server.start_background_task(self._send_ping)",
    ):
        assert step in schedule, step
    send_ping = inspect.getsource(async_socket.AsyncSocket._send_ping)
    for step in (
        "await asyncio.sleep(self.server.ping_interval)",
        "if not self.closing and not self.closed:",
        "self.last_ping = time.time()",
        "await self.send(packet.Packet(packet.PING))",
    ):
        assert step in send_ping, step
    # send() checks the ping timeout first, which a fresh last_ping passes, then queues.
    send = inspect.getsource(async_socket.AsyncSocket.send)
    assert "if not await self.check_ping_timeout():" in send
    assert "time.time() - last_ping > self.server.ping_timeout" in inspect.getsource(
        async_socket.AsyncSocket.check_ping_timeout
    )
    # engine.io makes the session itself; Sessions.adopt (in the connect event) changes its
    # class before engine.io schedules the first ping. Only methods are added.
    connect = inspect.getsource(engineio.async_server.AsyncServer._handle_connect)
    assert "s = async_socket.AsyncSocket(self, sid)" in connect
    assert connect.index("'connect', sid, environ") < connect.index("s.schedule_ping()")
    assert "__slots__" not in vars(async_socket.AsyncSocket)
    assert set(vars(heartbeat.ChatSocket)) - {"__doc__", "__module__", "__annotations__"} == {
        "schedule_ping",
        "_ping",
    }


def test_session_monitor_internals(tmp_path: Path) -> None:
    """engine.io's session monitor is off (``monitor_clients``, a public option) and
    Sessions repeats what it does, holding session ids instead of a copy of the table."""
    server = socketio.AsyncServer(async_mode="aiohttp", monitor_clients=False)
    assert server.eio.start_service_task is False
    connect = inspect.getsource(engineio.async_server.AsyncServer._handle_connect)
    assert "if self.start_service_task:" in connect
    service = inspect.getsource(engineio.async_server.AsyncServer._service_task)
    for step in (
        "sleep_interval = self.ping_timeout / len(self.sockets)",
        "for s in self.sockets.copy().values():",
        "if s.closed:",
        "del self.sockets[s.sid]",
        "elif not s.closing:",
        "await s.check_ping_timeout()",
    ):
        assert step in service, step
    app = create_app(load_settings(["--db", str(tmp_path / "x.db")], environ={}))
    assert app[sio_key].eio.start_service_task is False


def test_decodable_lets_through_only_what_engineio_decodes() -> None:
    accepted = ["4x", "2", "3probe", "6", "1", '42["m",1]', "bAAEC", "4" + "[" * 100, "0{}"]
    for text in accepted:
        assert frames.decodable(text), text
        engineio.packet.Packet(encoded_packet=text)
    # engine.io's decoder raises on these: they must never reach it.
    for text in ["", "x", "4" + "[" * 100_000]:
        assert not frames.decodable(text), text[:20]
        with pytest.raises((ValueError, RecursionError)):
            engineio.packet.Packet(encoded_packet=text)
    # These it decodes into nonsense (an unknown type, base64 it half ignores); refused too.
    for text in ["9", "b!!!"]:
        assert not frames.decodable(text), text


def test_websocket_driver_internals() -> None:
    assert issubclass(websocket.ChatWebSocket, eio_aiohttp.WebSocket)
    assert list(inspect.signature(eio_aiohttp.WebSocket.__init__).parameters) == [
        "self",
        "handler",
        "server",
    ]
    call = inspect.getsource(eio_aiohttp.WebSocket.__call__)
    assert "self._sock = WebSocketResponse(" in call and "await self.handler(self)" in call
    assert "self.environ = environ" in call
    for method in ("send", "wait", "close"):
        assert inspect.iscoroutinefunction(getattr(eio_aiohttp.WebSocket, method))
    # The wrapper gets the socket's bound handler; ChatWebSocket finds the socket there.
    upgrade = inspect.getsource(async_socket.AsyncSocket._upgrade_websocket)
    assert (
        "self.server._async['websocket'](\n            self._websocket_handler, self.server)"
        in upgrade
    )
    # A detached ChatWebSocket repeats engine.io's handler for websocket-only connections
    # (upgrades run the original): flags, writer fed by the queue and stopped by None,
    # receive() per packet, close with TRANSPORT_CLOSE at the end. Its writer waits in
    # queue.get() (through poll()), which write_now relies on to know it is idle.
    handler = inspect.getsource(async_socket.AsyncSocket._websocket_handler)
    for step in (
        "self.connected = True",
        "self.upgraded = True",
        "self.upgrading = True",
        "self.upgrading = False",
        "packets = await self.poll()",
        "await ws.send(pkt.encode())",
        "data = await ws.wait()",
        "self.server.ping_interval + self.server.ping_timeout",
        "pkt = packet.Packet(encoded_packet=p)",
        "await self.receive(pkt)",
        "except exceptions.UnknownPacketError:",
        "except exceptions.SocketIsClosedError:",
        "await self.queue.put(None)",
        "await self.close(wait=False, abort=True,\n                         "
        "reason=self.server.reason.TRANSPORT_CLOSE)",
        # ChatWebSocket.wait() ends an upgraded connection's loop with None, not an
        # exception (which its task would keep in a cycle with the loop's frames).
        "if p is None:\n                # connection closed by client\n                break",
    ):
        assert step in handler, step
    assert issubclass(engineio.exceptions.UnknownPacketError, engineio.exceptions.EngineIOError)
    assert issubclass(engineio.exceptions.SocketIsClosedError, engineio.exceptions.EngineIOError)
    receive = inspect.getsource(async_socket.AsyncSocket.receive)
    assert "self.schedule_ping()" in receive and "'message', self.sid, pkt.data" in receive
    # A FramedPacket keeps only its frame; what engine.io's writer (upgraded connections)
    # and long-polling ask of it, encode() (with b64=True for polling), is made from it.
    pkt = frames.FramedPacket('2["x",1]')
    assert pkt.frame == b'\x81\x0942["x",1]'
    assert pkt.encode() == '42["x",1]' and pkt.encode(b64=True) == '42["x",1]'
    assert pkt.encode().payload == b'42["x",1]' and pkt.data == '2["x",1]'
    assert pkt.packet_type == engineio.packet.MESSAGE and not pkt.binary
    assert "encoded_payload += pkt.encode(b64=True)" in inspect.getsource(
        engineio.payload.Payload.encode
    )
    emoji = frames.FramedPacket('2["x","\U0001f600"]')
    assert emoji.encode() == '42["x","\U0001f600"]' and len(emoji.frame) == 2 + 14
    assert [k for k in vars(emoji) if isinstance(vars(emoji)[k], str | bytes)] == ["frame"]


async def test_a_waiting_queue_reader_shows() -> None:
    queue = sendqueue.SendQueue()
    assert not queue.waiting()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)  # let get() start waiting
    assert queue.waiting()
    queue.put_nowait(1)
    assert not queue.waiting()
    assert await getter == 1


async def test_send_queue_behaves_as_asyncio_queue_for_engineio() -> None:
    queue = sendqueue.SendQueue()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    # A get() under wait_for that times out leaves nothing behind; the next one still works.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    assert not queue.waiting()
    await queue.put("a")
    queue.put_nowait("b")
    assert queue.qsize() == 2 and not queue.empty()
    assert await queue.get() == "a" and queue.get_nowait() == "b"
    # join() waits until every item put was marked done.
    joined = asyncio.ensure_future(queue.join())
    await asyncio.sleep(0)
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    queue.task_done()
    await joined
    with pytest.raises(ValueError):
        queue.task_done()
    # Two readers: each put wakes one, in order.
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert [await first, await second] == [1, 2]
    # A reader cancelled after a put woke it hands the wake-up on to the next reader.
    first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(3)
    first.cancel()
    assert await second == 3


def test_send_queue_bound_drops_everything_once() -> None:
    overflows: list[str] = []
    queue = sendqueue.SendQueue(3, overflows.append)
    for i in range(3):
        queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, str(i)))
    assert queue.qsize() == 3 and not queue.overflowed
    queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, "3"))
    assert queue.overflowed and queue.qsize() == 0 and overflows == [sendqueue.OVER_PACKETS]
    queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, "4"))
    assert queue.qsize() == 0 and overflows == [sendqueue.OVER_PACKETS]
    # CLOSE and the writer's None sentinel are still taken.
    queue.put_nowait(engineio.packet.Packet(engineio.packet.CLOSE))
    queue.put_nowait(None)
    assert queue.qsize() == 2 and overflows == [sendqueue.OVER_PACKETS]


def test_send_queue_bytes_and_the_backlog() -> None:
    """A queue counts the bytes of its packets (a frame's length) and refuses one once it
    holds max_bytes; the backlog counts a packet queued in several queues once, and past
    its limit the queue holding the most gives up."""
    backlog = sendqueue.Backlog(limit=10_000)
    overflows: list[tuple[str, str]] = []
    a = sendqueue.SendQueue(0, lambda why: overflows.append(("a", why)), 3000, backlog)
    b = sendqueue.SendQueue(0, lambda why: overflows.append(("b", why)), 100_000, backlog)
    shared = frames.FramedPacket("2" + "x" * 998)  # a 1004-byte frame
    size = frames.packet_size(shared)
    assert size == len(shared.frame) == 1004
    a.put_nowait(shared)
    b.put_nowait(shared)
    assert a.bytes == b.bytes == size and backlog.bytes == size  # in memory once
    assert a.get_nowait() is shared and a.bytes == 0 and backlog.bytes == size
    assert b.get_nowait() is shared and backlog.bytes == 0 and not backlog.queues
    # Bytes: the packet after the queue reached max_bytes overflows it.
    for _ in range(3):
        a.put_nowait(frames.FramedPacket("2" + "x" * 998))
    assert a.bytes == 3 * size and not a.overflowed
    a.put_nowait(frames.FramedPacket("2" + "x" * 998))
    assert a.overflowed and a.bytes == 0 and overflows == [("a", sendqueue.OVER_BYTES)]
    assert backlog.bytes == 0
    # The backlog: b holds the most when the total passes 10,000 bytes, and goes.
    c = sendqueue.SendQueue(0, lambda why: overflows.append(("c", why)), 100_000, backlog)
    c.put_nowait(frames.FramedPacket("2" + "x" * 998))
    for _ in range(9):
        b.put_nowait(frames.FramedPacket("2" + "x" * 998))
    assert overflows[1:] == [("b", sendqueue.OVER_TOTAL)]  # at 10 packets, 10,040 bytes
    assert b.overflowed and b.bytes == 0 and backlog.bytes == c.bytes == size
    # A queue that goes away with packets in it gives their bytes back.
    del c
    assert backlog.bytes == 0 and not backlog.queues
    # clear() drops what waits, as if it had been sent (join() returns).
    d = sendqueue.SendQueue(backlog=backlog)
    d.put_nowait(shared)
    d.clear()
    assert d.empty() and d.bytes == backlog.bytes == 0 and shared.holders == 0


# -- aiohttp ----------------------------------------------------------------------------------


def test_aiohttp_websocket_internals() -> None:
    # Deflate off per response; a public frame writer; closed before the close frame.
    assert "compress" in inspect.signature(web.WebSocketResponse.__init__).parameters
    assert inspect.iscoroutinefunction(web.WebSocketResponse.send_frame)
    assert "self._set_closed()" in inspect.getsource(web.WebSocketResponse.close)
    # An uncompressed frame is written to the transport before send_frame first awaits,
    # in one synchronous step: a frame written straight to the transport cannot land
    # inside one of aiohttp's, and aiohttp keeps nothing back to write later.
    send = inspect.getsource(WebSocketWriter.send_frame)
    direct = send.index("self._write_websocket_frame(message, opcode, 0)")
    assert direct < send.index("await ")
    write = inspect.getsource(WebSocketWriter._write_websocket_frame)
    assert "await" not in write and "self.transport.write(" in write


async def test_aiohttp_internals_for_detaching_a_websocket() -> None:
    """What ChatWebSocket._detach relies on to take a connection over from aiohttp."""
    from aiohttp import base_protocol, web_protocol
    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

    handler = web_protocol.RequestHandler
    # The response's reader (the parser fed by the protocol) and its queue, made when
    # the handshake is answered; closed before it writes anything, which is how
    # finishing the request after the handover writes nothing.
    post = inspect.getsource(web.WebSocketResponse._post_start)
    assert "self._reader = WebSocketDataQueue(" in post
    assert "self._parser = WebSocketReader(" in post
    assert "request.protocol.set_parser(self._parser" in post
    close = inspect.getsource(web.WebSocketResponse.close)
    assert close.index("if self._closed:\n            return False") < close.index("await ")
    assert "await self.close()" in inspect.getsource(web.WebSocketResponse.write_eof)
    assert "self._closed = True" in inspect.getsource(web.WebSocketResponse._set_closed)
    # connection_lost forgets the connection in the server and touches the transport and
    # the websocket reader only through these attributes (cleared before the call).
    lost = inspect.getsource(handler.connection_lost)
    assert "self._manager.connection_lost(self, exc)" in lost
    assert "if self._payload_parser is not None:" in lost and "feed_eof()" in lost
    force = inspect.getsource(handler.force_close)
    assert "if self.transport is not None:\n            self.transport.close()" in force
    start = inspect.getsource(handler.start)
    assert "if not self._force_close:" in start.split("# remove handler")[-1]
    assert "transport" in base_protocol.BaseProtocol.__slots__
    assert "_payload_parser" in handler.__slots__
    # The data queue: settable protocol (whose flow control it drives), a visible buffer,
    # and read() that returns at once while a message waits.
    queue = WebSocketDataQueue(_Paused(), 2**16, loop=asyncio.get_running_loop())
    reader = WebSocketReader(queue, 0, compress=False, decode_text=True)
    queue._protocol = _Paused()
    reader.feed_data(ws_frame("hello"))
    assert len(queue._buffer) == 1 and queue.exception() is None
    reading = queue.read()
    with pytest.raises(StopIteration) as done:
        reading.send(None)
    assert done.value.value.type == aiohttp.WSMsgType.TEXT
    assert done.value.value.data == "hello"
    reader.feed_data(b"\x83\x80abcd")  # a reserved opcode
    assert getattr(queue.exception(), "code", None) == aiohttp.WSCloseCode.PROTOCOL_ERROR


class _Paused:
    """The flow-control side of a protocol, as aiohttp's websocket queue uses it."""

    _reading_paused = False

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False


# -- python-socketio --------------------------------------------------------------------------


def test_manager_internals(packet_json: None) -> None:
    server = socketio.AsyncServer(async_mode="aiohttp")
    assert server.packet_class is socketio.packet.Packet
    for name in ("eio_sid_from_sid", "sid_from_eio_sid", "is_connected", "basic_enter_room"):
        assert callable(getattr(server.manager, name)), name
    # Sessions.forget: with Redis, ignore_queue keeps the disconnect local.
    assert "kwargs.get('ignore_queue')" in inspect.getsource(
        async_pubsub_manager.AsyncPubSubManager.disconnect
    )
    assert isinstance(server.manager.rooms, dict)
    # LocalManager.emit replaces AsyncManager.emit for events without callback.
    emit = inspect.signature(async_manager.AsyncManager.emit)
    assert list(emit.parameters)[:8] == [
        "self",
        "event",
        "data",
        "namespace",
        "room",
        "skip_sid",
        "callback",
        "to",
    ]
    source = inspect.getsource(async_manager.AsyncManager.emit)
    assert "self.get_participants(namespace, room)" in source
    assert "if namespace not in self.rooms:" in source
    # Sessions replaces the server's _send_packet, through which acks and CONNECT go out.
    assert list(inspect.signature(socketio.AsyncServer._send_packet).parameters) == [
        "self",
        "eio_sid",
        "pkt",
    ]
    handle = inspect.getsource(socketio.AsyncServer._handle_event_internal)
    assert "await server._send_packet(eio_sid, self.packet_class(\n                packet.ACK" in (
        handle
    )
    assert "self._send_packet(eio_sid, self.packet_class(\n                packet.CONNECT" in (
        inspect.getsource(socketio.AsyncServer._handle_connect)
    )
    # The log line library_logger silences (a broadcast racing a disconnect).
    send = inspect.getsource(engineio.async_server.AsyncServer.send_packet)
    assert "self.logger.warning('Cannot send to sid %s', sid)" in send


def test_pubsub_local_delivery_goes_through_super_emit() -> None:
    # RedisManager relies on AsyncPubSubManager delivering locally (its own emits and
    # those from Redis) via super().emit(), which its MRO routes to LocalManager.emit,
    # and FeedRedisManager on FeedManager.route being found before LocalManager's.
    source = inspect.getsource(async_pubsub_manager.AsyncPubSubManager._handle_emit)
    assert "await super().emit(" in source
    source = inspect.getsource(async_pubsub_manager.AsyncPubSubManager.emit)
    assert "await self._handle_emit(message)" in source
    mro = fanout.FeedRedisManager.__mro__
    pubsub = mro.index(async_pubsub_manager.AsyncPubSubManager)
    assert pubsub < mro.index(fanout.FeedManager) < mro.index(managers.LocalManager)
    assert mro.index(managers.LocalManager) < mro.index(socketio.AsyncManager)


def test_redis_manager_internals() -> None:
    # RedisManager implements _publish and _listen; initialize() starts the task that
    # iterates _listen (which close_listener cancels).
    pubsub = async_pubsub_manager.AsyncPubSubManager
    assert "self.thread = self.server.start_background_task(self._thread)" in (
        inspect.getsource(pubsub.initialize)
    )
    assert "await self._publish(message)" in inspect.getsource(pubsub.emit)
    assert "async for message in self._listen()" in inspect.getsource(pubsub._thread)
    assert "self.json = self.server.packet_class.json" in inspect.getsource(
        socketio.base_manager.BaseManager.set_server
    )


def test_json_internals(packet_json: None) -> None:
    # Sessions.encode skips the walk looking for binary data.
    assert "binary" in inspect.signature(socketio.packet.Packet.__init__).parameters
    # json= replaces the module both packet classes use, called with separators=.
    server = socketio.AsyncServer(async_mode="aiohttp", json=jsoncodec.packet_json())
    assert server.packet_class.json is jsoncodec.OrjsonCodec
    assert engineio.packet.Packet.json is jsoncodec.OrjsonCodec
    assert "self.json.dumps(data, separators=(',', ':'))" in inspect.getsource(
        socketio.packet.Packet.encode
    )
    encoded = server.packet_class(socketio.packet.EVENT, data=["m", {"t": "é"}]).encode()
    assert encoded == '2["m",{"t":"é"}]'


def test_codec_accepts_what_the_standard_module_accepts() -> None:
    codec = jsoncodec.OrjsonCodec
    for text in ('{"a":[1,2.5,"x",null,true]}', '"\\ud800"', "NaN", '{"a":1e400}'):
        assert json.dumps(codec.loads(text)) == json.dumps(engineio.json.loads(text))
    assert codec.dumps({"a": [1, "é"], 2: None}, separators=(",", ":")) == '{"a":[1,"é"],"2":null}'
    assert codec.dumps("\ud800", separators=(",", ":")) == '"\\ud800"'


# -- the direct write path, in one process ----------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, packet_json: None) -> web.Application:
    settings = load_settings(
        ["--db", str(tmp_path / "chat.db"), "--port", "0", "--max-queued-packets", "10"],
        environ={},
    )
    return create_app(settings)


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` in this process and event loop (so tests can step the loop); its URL.

    On exit every request handler has finished.
    """
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _joined(
    http: aiohttp.ClientSession, url: str, room: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url + WS_PATH)
    assert (await ws.receive_str()).startswith("0")
    await ws.send_str("40" + json.dumps({"room": room}))
    assert (await ws.receive_str()).startswith("40")
    assert (await ws.receive_str()).startswith('42["welcome"')
    return ws


async def test_direct_writes_never_overtake_what_the_writer_holds(app: web.Application) -> None:
    """Queue a packet as engine.io does, then offer a room frame at every loop step after.

    Whatever step the writer is at (woken, holding the packet, writing, waiting again),
    the frame must reach the client after the packet.
    """
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await _joined(http, url, "steps")
        sio, eng = app[sio_key], app[sessions_key]
        (eio_sid,) = sio.eio.sockets
        sock = sio.eio.sockets[eio_sid]
        assert isinstance(sock.queue, sendqueue.SendQueue)
        link = eng.websocket(eio_sid)
        assert link is not None
        paths = []
        for steps in range(8):
            queued = engineio.packet.Packet(engineio.packet.MESSAGE, f'2["queued",{steps}]')
            sock.queue.put_nowait(queued)
            for _ in range(steps):
                await asyncio.sleep(0)  # one event loop iteration: the writer advances
            frame = eng.packet("framed", steps)
            direct = link.write_now(frame)
            if not direct:
                assert eng.put(eio_sid, frame)
            paths.append(direct)
            received = [await ws.receive_str(), await ws.receive_str()]
            assert received == [f'42["queued",{steps}]', f'42["framed",{steps}]'], steps
        # Both paths were taken: queued while the writer was busy, direct once it waited.
        assert paths[0] is False and paths[-1] is True, paths
        # Idle again: the frame goes straight to the transport.
        assert link.write_now(eng.packet("framed", "idle"))
        assert await ws.receive_str() == '42["framed","idle"]'
        await ws.close()


def _writer_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "ChatWebSocket._write_queued"
    ]


async def test_an_idle_websocket_has_no_writer_task(app: web.Application) -> None:
    """A writer runs only while packets wait in the send queue: queued packets start one,
    it sends them in order, before anything offered meanwhile, and ends when done."""
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await _joined(http, url, "idle")
        sio, eng = app[sio_key], app[sessions_key]
        (eio_sid,) = sio.eio.sockets
        sock = sio.eio.sockets[eio_sid]
        link = eng.websocket(eio_sid)
        assert link is not None
        await asyncio.gather(*_writer_tasks())  # one that sent the welcome ends by itself
        assert _writer_tasks() == [] and link.writer_idle() and sock.queue.empty()
        for i in range(5):
            sock.queue.put_nowait(engineio.packet.Packet(engineio.packet.MESSAGE, f'2["q",{i}]'))
        (writer,) = _writer_tasks()
        assert not link.writer_idle()
        frame = eng.packet("framed", 0)
        assert not link.write_now(frame) and eng.put(eio_sid, frame)
        assert sock.queue.qsize() == 6 and _writer_tasks() == [writer]
        received = [await ws.receive_str() for _ in range(6)]
        assert received == [*(f'42["q",{i}]' for i in range(5)), '42["framed",0]']
        await writer
        assert _writer_tasks() == [] and link.writer_idle() and sock.queue.empty()
        assert link.write_now(eng.packet("framed", 1))
        assert await ws.receive_str() == '42["framed",1]'
        await ws.close()


def _awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The qualified names of the coroutines ``task`` is suspended in, outermost first."""
    names = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        names.append(getattr(awaited, "__qualname__", type(awaited).__qualname__))
        awaited = getattr(awaited, "cr_await", None)
    return names


async def test_an_idle_websocket_is_served_without_aiohttp_and_without_a_task(
    app: web.Application,
) -> None:
    """A connection that starts on the websocket is detached from aiohttp after the
    handshake: aiohttp's request handling finishes, the transport's protocol is the
    ChatWebSocket, the session's environ no longer holds the request or its headers, and
    once idle no task serves the connection; it still chats."""
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await _joined(http, url, "detached")
        sio, eng = app[sio_key], app[sessions_key]
        (eio_sid,) = sio.eio.sockets
        link = eng.websocket(eio_sid)
        assert link is not None and link.transport is not None
        assert link.transport.get_protocol() is link
        environ = sio.get_environ(eng.sid(eio_sid))
        assert "aiohttp.request" not in environ and "REMOTE_ADDR" in environ
        assert [key for key in environ if key.startswith("HTTP_")] == []  # headers dropped

        def serving() -> list[asyncio.Task[Any]]:
            """Tasks of the connection: aiohttp's, or the writer and receiver, which end
            by themselves once the welcome is sent and the connect handled."""
            return [
                t
                for t in asyncio.all_tasks()
                if any(
                    name.startswith(("RequestHandler.", "ChatWebSocket.")) for name in _awaiting(t)
                )
            ]

        await asyncio.wait_for(asyncio.gather(*serving()), timeout=5)
        assert serving() == []
        await ws.send_str('421["message",{"text":"still here"}]')
        ack = await ws.receive_str()
        while not ack.startswith("431"):  # the message itself comes first
            ack = await ws.receive_str()
        assert '"ok":true' in ack, ack
        await ws.close()


async def test_a_backed_up_connection_is_not_written_directly_and_is_dropped_at_the_bound(
    app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    """Direct writes stop once the transport buffer backs up, though the writer is idle;
    then packets queue, and the queue's bound (--max-queued-packets 10) drops the client."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await _backed_up_and_dropped(app, loop, client, caplog)


async def _backed_up_and_dropped(
    app: web.Application,
    loop: asyncio.AbstractEventLoop,
    client: socket.socket,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served(app) as url:
        host, port = url.removeprefix("http://").split(":")
        await loop.sock_connect(client, (host, int(port)))
        await loop.sock_sendall(
            client,
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode(),
        )
        received = b""
        while b'"sid"' not in received:
            received += await loop.sock_recv(client, 4096)
        await loop.sock_sendall(client, ws_frame("40" + json.dumps({"room": "backlog"})))
        while b'"welcome"' not in received:
            received += await loop.sock_recv(client, 4096)
        # From here on the client reads nothing.
        sio, eng = app[sio_key], app[sessions_key]
        (eio_sid,) = sio.eio.sockets
        link = eng.websocket(eio_sid)
        assert link is not None and link.transport is not None
        queue = sio.eio.sockets[eio_sid].queue
        frame = eng.packet("filler", "x" * 8000)
        written = 0
        # The frames of one turn of the loop are written together at its end (uncork); until
        # then they count against the high-water mark as if they were in the buffer.
        while True:
            while link.write_now(frame):
                written += 1
                assert written < 5000, "the transport never backed up"
            link.uncork()
            if link.transport.get_write_buffer_size() > sendqueue.WRITE_HIGH_WATER:
                break
        # Refused only because of the buffer: nothing queued, no writer running.
        assert written > 0
        assert queue.qsize() == 0 and link.writer_idle()
        assert not link.write_now(frame)
        # Now everything queues, and the eleventh packet overflows the bound.
        with caplog.at_level(logging.WARNING, logger="chatapp.transport"):
            for _ in range(11):
                assert not link.write_now(frame)
                eng.put(eio_sid, frame)
            assert queue.overflowed and queue.qsize() == 0
            # The TCP connection is dropped: reading drains what was sent, then ends.
            with contextlib.suppress(ConnectionResetError):
                while await loop.sock_recv(client, 65536):
                    pass
        assert "the client is not reading" in caplog.text
        assert eio_sid not in sio.eio.sockets or sio.eio.sockets[eio_sid].closed


async def test_the_heartbeat_is_a_timer_not_a_task(app: web.Application) -> None:
    """Pings come every ping_interval while the client answers, with no task per ping."""
    sio = app[sio_key]
    sio.eio.ping_interval = 0.05
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await _joined(http, url, "beat")
        (eio_sid,) = sio.eio.sockets
        sock = sio.eio.sockets[eio_sid]
        assert type(sock) is heartbeat.ChatSocket
        for _ in range(3):
            assert await ws.receive_str() == "2"
            assert sock.last_ping is not None
            await ws.send_str("3")
            # Step the loop until the server has read the pong (engine.io's state has no
            # event to wait on).
            while sock.last_ping is not None:  # noqa: ASYNC110
                await asyncio.sleep(0)
            # The next ping is scheduled (engine.io would have a task sleeping now).
            assert not [
                t
                for t in asyncio.all_tasks()
                if getattr(t.get_coro(), "__qualname__", "") == "AsyncSocket._send_ping"
            ]
        assert not sock.closed
        await ws.close()


async def test_a_silent_client_is_disconnected(app: web.Application) -> None:
    """A detached ChatWebSocket closes a websocket that sent nothing for ping_interval +
    ping_timeout, as engine.io's own handler does."""
    sio = app[sio_key]
    sio.eio.ping_interval, sio.eio.ping_timeout = 0.3, 0.3
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await _joined(http, url, "quiet")
        (eio_sid,) = sio.eio.sockets
        # Never answer: pings (and engine.io's CLOSE) arrive, then the websocket closes.
        frames = []
        while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            frames.append(msg.data)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        assert frames and frames[0] == "2", frames
    assert eio_sid not in sio.eio.sockets and app[sessions_key].websocket(eio_sid) is None
