"""chatapp/fanout.py reaches into python-socketio, python-engineio and aiohttp internals.

These tests fail loudly when an upgrade moves what it relies on: update fanout.py and
TESTED_VERSIONS together after checking the new code. The last test drives the direct
write path inside one process, stepping the event loop, to show that a frame is never
written past a packet engine.io's writer has taken but not yet sent.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from engineio import async_socket
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import async_manager, async_pubsub_manager

from chatapp import fanout, jsoncodec
from chatapp.app import create_app
from chatapp.keys import outbox_key, sio_key
from chatapp.settings import load_settings


@pytest.fixture
def packet_json() -> Iterator[None]:
    """``json=`` sets a class attribute of both packet classes; undo it after the test."""
    saved = socketio.packet.Packet.json, engineio.packet.Packet.json
    yield
    socketio.packet.Packet.json, engineio.packet.Packet.json = saved


def _major_minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


def test_library_versions_are_the_tested_ones() -> None:
    for dist, tested in fanout.TESTED_VERSIONS.items():
        assert _major_minor(version(dist)) == tested, (
            f"{dist} {version(dist)} is installed but chatapp/fanout.py was written against "
            f"{tested}: re-check the internals it uses, then update TESTED_VERSIONS"
        )


def test_internals_used_still_exist() -> None:
    server = socketio.AsyncServer(async_mode="aiohttp")
    assert isinstance(server.eio.sockets, dict)
    assert server.packet_class is socketio.packet.Packet
    assert callable(server.manager.eio_sid_from_sid)
    assert callable(server.manager.basic_enter_room)
    socket_init = inspect.signature(async_socket.AsyncSocket.__init__)
    assert list(socket_init.parameters)[:3] == ["self", "server", "sid"]
    close = inspect.signature(async_socket.AsyncSocket.close)
    assert "wait" in close.parameters
    # The queue is where send() and the writer meet.
    assert "self.queue.put(pkt)" in inspect.getsource(async_socket.AsyncSocket.send)
    assert engineio.packet.Packet(engineio.packet.MESSAGE, "x").encode() == "4x"


def test_pubsub_local_delivery_goes_through_super_emit() -> None:
    # FeedRedisManager relies on AsyncPubSubManager delivering locally (its own emits and
    # those from Redis) via super().emit(), which its MRO routes to FeedManager.emit.
    source = inspect.getsource(async_pubsub_manager.AsyncPubSubManager._handle_emit)
    assert "await super().emit(" in source
    source = inspect.getsource(async_pubsub_manager.AsyncPubSubManager.emit)
    assert "await self._handle_emit(message)" in source
    mro = fanout.FeedRedisManager.__mro__
    assert mro.index(async_pubsub_manager.AsyncPubSubManager) < mro.index(fanout.FeedManager)
    assert mro.index(fanout.FeedManager) < mro.index(socketio.AsyncManager)


def test_redis_manager_internals_still_exist() -> None:
    # FeedRedisManager queues in _publish, filters self-check pings in _listen, restarts
    # the listener task (thread = start_background_task(_thread)) with fresh clients
    # (redis, pubsub), and starts it early through manager_initialized.
    pubsub = async_pubsub_manager.AsyncPubSubManager
    assert "self.thread = self.server.start_background_task(self._thread)" in (
        inspect.getsource(pubsub.initialize)
    )
    assert "await self._publish(message)" in inspect.getsource(pubsub.emit)
    assert "async for message in self._listen()" in inspect.getsource(pubsub._thread)
    redis_manager = socketio.AsyncRedisManager
    assert "self.pubsub = self.redis.pubsub(" in inspect.getsource(redis_manager._redis_connect)
    assert 'extra={"redis_exception"' in inspect.getsource(redis_manager._publish)
    server = socketio.AsyncServer(async_mode="aiohttp")
    assert server.manager_initialized is False
    assert "self.manager.initialize()" in inspect.getsource(
        socketio.AsyncServer._handle_eio_connect
    )


def test_websocket_driver_internals_still_exist() -> None:
    # Outbox swaps engine.io's aiohttp websocket wrapper for ChatWebSocket, a subclass.
    server = socketio.AsyncServer(async_mode="aiohttp")
    assert server.eio._async["websocket"] is eio_aiohttp.WebSocket
    assert list(inspect.signature(eio_aiohttp.WebSocket.__init__).parameters) == [
        "self",
        "handler",
        "server",
    ]
    call = inspect.getsource(eio_aiohttp.WebSocket.__call__)
    assert "self._sock = WebSocketResponse(" in call and "await self.handler(self)" in call
    for method in ("send", "wait", "close"):
        assert inspect.iscoroutinefunction(getattr(eio_aiohttp.WebSocket, method))
    # The wrapper gets the socket's bound handler; ChatWebSocket finds the socket there.
    upgrade = inspect.getsource(async_socket.AsyncSocket._upgrade_websocket)
    assert (
        "self.server._async['websocket'](\n            self._websocket_handler, self.server)"
        in (upgrade)
    )
    # ChatWebSocket._serve repeats engine.io's handler for websocket-only connections
    # (upgrades run the original): flags, writer fed by the queue and stopped by None,
    # receive() per packet, close with TRANSPORT_CLOSE at the end.
    handler = inspect.getsource(async_socket.AsyncSocket._websocket_handler)
    for step in (
        "self.connected = True",
        "self.upgraded = True",
        "packets = await self.poll()",
        "await ws.send(pkt.encode())",
        "self.server.ping_interval + self.server.ping_timeout",
        "pkt = packet.Packet(encoded_packet=p)",
        "await self.receive(pkt)",
        "except exceptions.UnknownPacketError:",
        "except exceptions.SocketIsClosedError:",
        "await self.queue.put(None)",
        "await self.close(wait=False, abort=True,\n                         "
        "reason=self.server.reason.TRANSPORT_CLOSE)",
    ):
        assert step in handler, step
    receive = inspect.getsource(async_socket.AsyncSocket.receive)
    assert "self.schedule_ping()" in receive and "'message', self.sid, pkt.data" in receive
    poll = inspect.getsource(async_socket.AsyncSocket.poll)
    assert "self.queue.get()" in poll and "self.queue.get_nowait()" in poll
    socket = async_socket.AsyncSocket(server.eio, "sid")
    assert isinstance(socket.queue, asyncio.Queue)
    for flag in ("closing", "closed", "upgrading", "upgraded"):
        assert getattr(socket, flag) is False
    # Packets carry their encoding in encode_cache, which encode() returns as is.
    pkt = fanout.FramedPacket('2["x",1]')
    assert pkt.encode() is pkt.encode_cache and pkt.encode() == '42["x",1]'
    assert "return self.encode_cache" in inspect.getsource(engineio.packet.Packet.encode)
    # aiohttp: deflate off per response, a public frame writer, closed before the close frame.
    assert "compress" in inspect.signature(web.WebSocketResponse.__init__).parameters
    assert inspect.iscoroutinefunction(web.WebSocketResponse.send_frame)
    assert "self._set_closed()" in inspect.getsource(web.WebSocketResponse.close)


async def test_a_waiting_queue_reader_shows_in_getters() -> None:
    # asyncio.Queue keeps a future per waiting get() in _getters until a put wakes it.
    queue: asyncio.Queue[int] = asyncio.Queue()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)  # let get() start waiting
    assert [g.done() for g in queue._getters] == [False]
    queue.put_nowait(1)
    assert not any(not g.done() for g in queue._getters)
    assert await getter == 1


def test_manager_and_json_internals_still_exist(packet_json: None) -> None:
    # FeedManager.emit replaces AsyncManager.emit for events without callback.
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
    # Outbox replaces the server's _send_packet, through which acks and CONNECT go out.
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


async def test_direct_writes_never_overtake_what_the_writer_holds(
    tmp_path: Path, packet_json: None
) -> None:
    """Queue a packet as engine.io does, then offer a room frame at every loop step after.

    Whatever step the writer is at (woken, holding the packet, writing, waiting again),
    the frame must reach the client after the packet.
    """
    settings = load_settings(["--db", str(tmp_path / "chat.db"), "--port", "0"], environ={})
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
            )
            assert (await ws.receive_str()).startswith("0")
            await ws.send_str("40" + json.dumps({"room": "steps"}))
            assert (await ws.receive_str()).startswith("40")
            assert (await ws.receive_str()).startswith('42["welcome"')
            sio, outbox = app[sio_key], app[outbox_key]
            (eio_sid,) = sio.eio.sockets
            socket = sio.eio.sockets[eio_sid]
            paths = []
            for steps in range(8):
                queued = engineio.packet.Packet(engineio.packet.MESSAGE, f'2["queued",{steps}]')
                socket.queue.put_nowait(queued)
                for _ in range(steps):
                    await asyncio.sleep(0)  # one event loop iteration: the writer advances
                link = outbox._links[eio_sid]
                frame = outbox.packet("framed", steps)
                direct = link.write_now(frame)
                if not direct:
                    assert outbox.put(eio_sid, frame)
                paths.append(direct)
                received = [await ws.receive_str(), await ws.receive_str()]
                assert received == [f'42["queued",{steps}]', f'42["framed",{steps}]'], steps
            # Both paths were taken: queued while the writer was busy, direct once it waited.
            assert paths[0] is False and paths[-1] is True, paths
            # Idle again: the frame goes straight to the transport.
            assert link.write_now(outbox.packet("framed", "idle"))
            assert await ws.receive_str() == '42["framed","idle"]'
            await ws.close()
    finally:
        await runner.cleanup()


async def test_a_silent_client_is_disconnected(tmp_path: Path, packet_json: None) -> None:
    """ChatWebSocket._serve closes a websocket that sent nothing for ping_interval +
    ping_timeout, as engine.io's own handler does."""
    settings = load_settings(["--db", str(tmp_path / "chat.db"), "--port", "0"], environ={})
    app = create_app(settings)
    sio = app[sio_key]
    sio.eio.ping_interval, sio.eio.ping_timeout = 0.3, 0.3
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
            )
            assert (await ws.receive_str()).startswith("0")
            await ws.send_str("40" + json.dumps({"room": "quiet"}))
            assert (await ws.receive_str()).startswith("40")
            assert (await ws.receive_str()).startswith('42["welcome"')
            (eio_sid,) = sio.eio.sockets
            # Never answer: pings (and engine.io's CLOSE) arrive, then the websocket closes.
            frames = []
            async with asyncio.timeout(10):
                while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                    frames.append(msg.data)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            assert frames and frames[0] == "2", frames
    finally:
        await runner.cleanup()
    assert eio_sid not in sio.eio.sockets and not app[outbox_key]._links
