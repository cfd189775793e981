"""What chatapp relies on in python-engineio, python-socketio and aiohttp, checked by what it
does.

The modules of ``chatapp.internals.INTERNAL_USERS`` reach below those libraries' public
API. Each thing they rely on is checked by behaviour, here or in the test named below:
through a real server and real clients, or, where the wire cannot show it, inside one
process, stepping the event loop and looking at the server's tasks, connections and
sessions, with the library objects driven as chatapp drives them. So any version in
pyproject.toml's ranges that still does what chatapp relies on passes, however its source
reads, and one that changes it fails.

What is relied on -> the test that fails when it changes (here unless a file is named):

python-engineio
  the aiohttp driver's ``translate_request`` (awaited) and ``websocket`` entries of
  ``AsyncServer._async``, replaced per server
    -> every websocket is a detached ChatWebSocket:
       test_an_idle_websocket_is_served_without_aiohttp_and_without_a_task;
       every request is checked first: test_polling.py
       test_a_session_answers_only_the_address_that_opened_it, test_connections.py
       test_megabyte_polling_posts_are_refused_before_their_bodies_are_read;
       per server: test_two_servers_in_one_process_keep_their_own_hooks
  ``.handlers`` (connect, message, disconnect) intercepted
    -> test_limits.py test_idle_transports_per_address_are_capped_and_expire,
       test_a_client_that_ignores_the_rate_limit_is_disconnected,
       test_connections_per_address
  ``create_queue``: every session's queue a SendQueue, bounded once adopted in the connect
  event (before engine.io serves the transport or schedules the first ping)
    -> websocket: test_memory.py test_clients_that_never_read_cannot_grow_memory,
       test_a_backed_up_connection_is_not_written_directly_and_is_dropped_at_the_bound;
       long-polling: test_a_long_polling_session_is_bounded_in_bytes
  what engine.io calls on a queue (put, put_nowait, get, get under wait_for, get_nowait
  raising QueueEmpty, task_done, join)
    -> the SendQueue tests here; every transport's tests; join: test_shutdown_transports.py
  the session's class swapped to ChatSocket (no ``__slots__``), its heartbeat as engine.io's
  ``schedule_ping`` / ``_send_ping`` / ``last_ping`` / ``check_ping_timeout`` do it
    -> test_the_heartbeat_is_a_timer_not_a_task; test_limits.py
       test_the_advertised_ping_interval_is_the_one_used,
       test_a_polling_client_that_stops_polling_is_dropped
  ``start_service_task = False`` keeps engine.io's session walk from starting (chatapp's
  holds ids; the heartbeat fast path); the heartbeat timer holds its session weakly; no
  cycle in a connection's objects
    -> test_the_heartbeat_is_a_timer_not_a_task (no service task); test_memory.py
       test_a_closed_session_leaves_nothing_for_the_cycle_collector
  ``AsyncSocket._websocket_handler``, repeated by a detached ChatWebSocket: ``receive()``
  per packet, UnknownPacketError ignored, silence limit, writer ended by None, session
  closed and forgotten at the end
    -> every test on a websocket; test_engineio_packets_it_does_not_handle_are_ignored;
       test_a_silent_client_is_disconnected; test_websocket_frames.py
       test_a_close_is_answered_and_the_client_leaves; test_memory.py (sessions gone)
  an upgrade from long-polling runs engine.io's own handler with ChatWebSocket (handler
  bound to its session), whose writer waits in ``queue.get()`` and sends ``encode()``
  (aiohttp writes each frame before it first awaits); ``wait()`` returning None ends it
    -> test_an_upgraded_websocket_is_served_by_engineio_and_written_directly;
       test_fanout_wire.py test_acks_and_broadcasts_keep_their_order_per_connection;
       None: test_memory.py test_a_closed_session_leaves_nothing_for_the_cycle_collector
  which text ``packet.Packet`` fails to decode
    -> test_decodable_lets_through_only_what_engineio_decodes; test_websocket_frames.py
       test_a_malformed_engineio_packet_gets_a_normal_close
  that it keeps a MESSAGE payload starting with a digit as text (``frames.socketio_message``)
    -> test_a_socketio_frame_is_the_packet_engineio_decodes
  long-polling's payload asks each packet for ``encode(b64=True)``
    -> test_a_long_polling_session_is_bounded_in_bytes (a FramedPacket, emoji and all)
  ``AsyncSocket.close(wait=, abort=, reason=)``, ``.max_http_buffer_size``
    -> test_memory.py, test_limits.py test_frame_size_limit
  the "Cannot send to sid %s" log line -> test_a_send_to_a_session_gone_logs_nothing

python-socketio
  ``AsyncServer._send_packet`` (acks, CONNECT) replaced (the ``direct`` fast path; its
  self-check is ``sessions.check_direct``)
    -> test_acks_and_connect_are_written_directly (no writer woken); their order with room
       frames: test_fanout_wire.py test_acks_and_broadcasts_keep_their_order_per_connection
  a client's plain events decoded and handed to their handlers (the ``events`` fast path:
  ``.handlers``, ``._binary_packet``, ``packet_class.json``, how ``Packet`` decodes an
  EVENT's text; its self-check is ``events.check_events``)
    -> test_fast_paths.py test_every_fast_path_is_on_when_its_check_passes (no event
       reaches python-socketio's path); every chat test; the rest left to python-socketio:
       test_raw_transport.py test_binary_attachments_are_answered, test_malformed.py
  ``packet_class(binary=False)``, ``json=`` for both packet classes
    -> test_packets_are_encoded_with_the_codec; binary attachments left to python-socketio:
       test_raw_transport.py test_binary_attachments_are_answered
  ``AsyncManager.emit`` (its arguments, ``rooms``, ``get_participants``), and
  ``eio_sid_from_sid``, ``sid_from_eio_sid``, ``is_connected``, ``basic_enter_room``,
  ``disconnect``
    -> every chat test (test_messages.py, test_presence.py, test_typing.py);
       test_presence.py test_connections_closed_while_joining_leave_no_ghosts
  ``AsyncPubSubManager`` as a message queue's base (managers.RedisManager): ``emit``
  awaits ``_publish`` and delivers once in this process through ``super().emit``;
  ``initialize()`` starts a cancellable task iterating ``_listen``, which delivers other
  processes' emits the same way; ``disconnect(ignore_queue=True)`` publishes nothing;
  ``.json`` is the server's codec
    -> test_pubsub_emits_publish_and_deliver_locally_through_the_next_manager,
       test_pubsub_listener_task_iterates_listen_and_delivers_other_hosts_emits,
       test_pubsub_disconnect_with_ignore_queue_stays_local; with Redis: test_cluster.py

aiohttp
  ``WebSocketResponse(compress=False)`` -> test_fanout_wire.py
    test_a_client_offering_permessage_deflate_is_served_uncompressed
  ``.closed`` set before the close frame is written
    -> test_a_closing_upgraded_websocket_takes_no_frame_after_its_close
  the detach: the response's ``_parser`` / ``_reader`` (``read()`` returning at once while
  a message waits, ``exception()``), ``_set_closed()``, the request handler's
  ``transport`` / ``_payload_parser`` / ``connection_lost(None)``
    -> test_an_idle_websocket_is_served_without_aiohttp_and_without_a_task (the server
       forgets the connection; no task left) and every test on a websocket;
       protocol errors: test_websocket_frames.py
       test_broken_frames_close_their_connection_with_the_right_code
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from socketio.async_pubsub_manager import AsyncPubSubManager

from chatapp import fanout, frames, heartbeat, jsoncodec, managers, sendqueue
from chatapp.app import create_app
from chatapp.fastpaths import FastPaths
from chatapp.keys import fast_paths_key, sessions_key, sio_key
from chatapp.sessions import WRITE_AT_ONCE, Sessions
from chatapp.settings import load_settings
from chatapp.websocket import ChatWebSocket

from .conftest import NO_RATE_LIMITS, ClientFactory, ServerFactory
from .raw import POLL_PATH, WS_PATH, joined, served, serving, upgraded, ws_frame


@pytest.fixture
def app(tmp_path: Path, packet_json: None) -> web.Application:
    settings = load_settings(
        ["--db", str(tmp_path / "chat.db"), "--port", "0", "--max-queued-packets", "10"],
        environ={},
    )
    return create_app(settings)


def _tasks_in(*prefixes: str) -> list[asyncio.Task[Any]]:
    """The tasks suspended in a coroutine whose qualified name starts with one of these."""
    return [t for t in asyncio.all_tasks() if any(n.startswith(prefixes) for n in _awaiting(t))]


def _require(app: web.Application, fast_path: str) -> None:
    """Skip unless ``fast_path`` is on in the running ``app``. It is on once its self-check
    at start-up found the libraries behaving as it relies on (otherwise engine.io's own path
    serves, and tests/test_fast_paths.py fails on these versions)."""
    if fast_path not in app[fast_paths_key]:
        pytest.skip(f"the {fast_path} fast path is off with these library versions")


async def _until(done: Callable[[], bool], timeout: float = 5) -> None:
    """Step the loop until ``done()`` (engine.io's state has no event to wait on)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0)


# -- python-engineio ----------------------------------------------------------------------------


async def test_two_servers_in_one_process_keep_their_own_hooks(
    tmp_path: Path, packet_json: None
) -> None:
    """engine.io's driver table is shared by its servers: each app's hooks are its own."""
    apps = [
        create_app(load_settings(["--db", str(tmp_path / f"{n}.db"), "--port", "0"], environ={}))
        for n in range(2)
    ]
    async with (
        served(apps[0]) as first,
        served(apps[1]) as second,
        aiohttp.ClientSession() as http,
    ):
        for url, app, other in ((first, *apps), (second, *reversed(apps))):
            _require(app, "detach")
            ws = await joined(http, url, "own")
            (eio_sid,) = app[sio_key].eio.sockets
            link = app[sessions_key].websocket(eio_sid)
            assert link is not None and link.transport is not None
            assert link.transport.get_protocol() is link
            assert not other[sessions_key].websockets
            await ws.close()
            await _until(lambda app=app: not app[sio_key].eio.sockets)


async def test_engineio_packets_it_does_not_handle_are_ignored(
    app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    """Packets engine.io refuses with UnknownPacketError (a client's OPEN, PING, NOOP) are
    dropped, as by engine.io's own loop; UPGRADE on a websocket gets a NOOP."""
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await joined(http, url, "unknown")
        caplog.clear()  # what start-up logged
        with caplog.at_level(logging.WARNING):
            for frame in ("0", "2", "6", "2probe", "5"):
                await ws.send_str(frame)
            assert await ws.receive_str() == "6"
            await ws.send_str('421["message",{"text":"still here"}]')
            assert (await ws.receive_str()).startswith('42["message"')
            ack = json.loads((await ws.receive_str())[3:])[0]
            assert ack["ok"] is True, ack
        assert not caplog.records, caplog.text
        await ws.close()


async def test_a_send_to_a_session_gone_logs_nothing(
    app: web.Application, caplog: pytest.LogCaptureFixture
) -> None:
    """A send racing a disconnect is expected: engine.io's warning about it is dropped, and
    its other warnings are not."""
    eio = app[sio_key].eio
    with caplog.at_level(logging.DEBUG):
        await eio.send("gone", "2[]")
        assert not caplog.records, caplog.text
        eio.logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


async def test_a_long_polling_session_is_bounded_in_bytes(
    start_server: ServerFactory, make_client: ClientFactory
) -> None:
    """A long-poll gets room messages as text (encoded from their frame, emoji and all);
    once the session stops polling, its queue (a SendQueue, made by engine.io for every
    session) drops it at --max-queued-bytes, long before --max-queued-packets."""
    server = await start_server(*NO_RATE_LIMITS, "--max-queued-bytes", "65536")
    async with aiohttp.ClientSession(server.url) as http:
        sender = make_client()
        await sender.connect(server.url, room="poll", name="sender")
        async with http.get(POLL_PATH) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        poll = f"{POLL_PATH}&sid={sid}"
        async with http.post(poll, data='40{"room":"poll","name":"poller"}') as r:
            assert r.status == 200
        polled = ""
        while '"welcome"' not in polled:
            async with http.get(poll) as r:
                polled += await r.text()
        text = "\U0001f600 \u00e9" * 500
        ack = await sender.send(text)
        assert ack["ok"] is True
        async with http.get(poll) as r:
            packets = (await r.text()).split("\x1e")
        assert [json.loads(p[2:])[1]["text"] for p in packets if p.startswith("42")] == [text]
        # From here on it never polls: about 3 KB a message, 22 fill 64 KiB.
        for n in range(30):
            assert (await sender.send(f"{n} {text}"))["ok"] is True
        await sender.wait_for("presence", lambda p: p.get("left") == "poller")
    log = server.log()
    assert "65536 bytes waiting (--max-queued-bytes)" in log, log


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


def test_a_socketio_frame_is_the_packet_engineio_decodes() -> None:
    """``frames.socketio_message`` skips engine.io's decoder for text whose payload starts
    with a digit (every Socket.IO packet): the packet must be the one the decoder makes."""
    digits = ["4\u00b2[]", "4\u0661{}", "4\uff11"]  # numeric, not ASCII
    for text in ['42["m",{"a":1}]', "40", "41", "43[1]", "45-x", *digits]:
        pkt = frames.socketio_message(text)
        stock = engineio.packet.Packet(encoded_packet=text)
        assert pkt is not None, text
        assert (pkt.packet_type, pkt.data, pkt.binary) == (
            stock.packet_type,
            stock.data,
            stock.binary,
        ), text
    # The rest goes to the decoder (which may read JSON, or raise).
    for text in ["", "4", '4{"a":1}', "4x", "2", "3probe", "b4AA", "5", '24["m"]']:
        assert frames.socketio_message(text) is None, text


def test_a_framed_packet_keeps_only_its_frame() -> None:
    """What engine.io's writer (upgraded connections) and long-polling ask of a packet,
    ``encode()`` (``b64=True`` for polling), is made from the frame, the one thing kept."""
    pkt = frames.FramedPacket('2["x",1]')
    assert pkt.frame == b'\x81\x0942["x",1]'
    assert pkt.encode() == '42["x",1]' and pkt.encode(b64=True) == '42["x",1]'
    assert pkt.encode().payload == b'42["x",1]' and pkt.data == '2["x",1]'
    assert pkt.packet_type == engineio.packet.MESSAGE and not pkt.binary
    emoji = frames.FramedPacket('2["x","\U0001f600"]')
    assert emoji.encode() == '42["x","\U0001f600"]' and len(emoji.frame) == 2 + 14
    assert [k for k in vars(emoji) if isinstance(vars(emoji)[k], str | bytes)] == ["frame"]


def test_engineio_sends_a_framed_packet_as_its_own_packet() -> None:
    """A :class:`FramedPacket` needs only what engine.io reads of any packet it sends
    (``packet_type``, ``data`` in its log, ``encode(b64)`` for long-polling and its
    websocket writer): on the installed engine.io it goes out as the stock packet would."""
    for data in ['2["x",1]', '2["x","\U0001f600"]']:
        framed = frames.FramedPacket(data)
        stock = engineio.packet.Packet(engineio.packet.MESSAGE, data)
        assert framed.packet_type == stock.packet_type and framed.data == stock.data
        assert framed.encode() == stock.encode()
        both = engineio.payload.Payload(packets=[framed, stock]).encode()
        assert both == engineio.payload.Payload(packets=[stock, stock]).encode()


# -- the send queue engine.io is given -------------------------------------------------------


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


def test_a_queued_packet_counts_the_bytes_it_sends() -> None:
    """What python-socketio queues itself (acks with ``direct`` off, long-polling) is a
    packet whose data is text: it counts its UTF-8 bytes against the bounds, not its
    characters (a page of emoji is four times its length)."""
    overhead = frames.PACKET_OVERHEAD
    message = engineio.packet.MESSAGE
    assert frames.packet_size(engineio.packet.Packet(message, "a" * 100)) == 100 + overhead
    emoji = engineio.packet.Packet(message, "\U0001f600" * 100)
    assert frames.packet_size(emoji) == 400 + overhead
    assert frames.packet_size(engineio.packet.Packet(message, b"\x00" * 7)) == 7 + overhead
    assert frames.packet_size(engineio.packet.Packet(engineio.packet.PING)) == overhead


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


# -- python-socketio ----------------------------------------------------------------------------


async def test_acks_and_connect_are_written_directly(app: web.Application) -> None:
    """python-socketio sends what goes to one client (CONNECT, acks) through
    ``AsyncServer._send_packet``, which chatapp replaces: on an idle connection they are
    written at once, as room frames are, and wake no writer."""
    loop = asyncio.get_running_loop()
    started: list[str] = []
    factory = loop.get_task_factory()

    def recording(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        started.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(recording)
    try:
        async with served(app) as url, aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url + WS_PATH)
            _require(app, "detach")
            _require(app, "direct")
            assert (await ws.receive_str()).startswith("0")
            # engine.io queues its OPEN packet: a writer sends it and ends.
            assert "ChatWebSocket._write_queued" in started
            await asyncio.gather(*_tasks_in("ChatWebSocket._write_queued"))
            started.clear()
            await ws.send_str('40{"room":"direct"}')
            assert (await ws.receive_str()).startswith("40{")
            assert (await ws.receive_str()).startswith('42["welcome"')
            await ws.send_str('421["message",{"text":"acked"}]')
            assert (await ws.receive_str()).startswith('42["message"')
            assert (await ws.receive_str()).startswith("431[")
            assert "ChatWebSocket._write_queued" not in started, started
            await ws.close()
    finally:
        loop.set_task_factory(factory)


def test_packets_are_encoded_with_the_codec(packet_json: None) -> None:
    """``json=`` sets the module both packet classes encode with, compact, non-ASCII kept;
    ``binary=False`` skips the search for attachments."""
    server = socketio.AsyncServer(async_mode="aiohttp", json=jsoncodec.packet_json())
    assert server.packet_class.json is jsoncodec.OrjsonCodec
    assert engineio.packet.Packet.json is jsoncodec.OrjsonCodec
    data = ["m", {"t": "é", "n": [1, 2.5, None]}]
    encoded = server.packet_class(socketio.packet.EVENT, data=data, binary=False).encode()
    assert encoded == '2["m",{"t":"é","n":[1,2.5,null]}]'


def test_codec_accepts_what_the_standard_module_accepts() -> None:
    codec = jsoncodec.OrjsonCodec
    for text in ('{"a":[1,2.5,"x",null,true]}', '"\\ud800"', "NaN", '{"a":1e400}'):
        assert json.dumps(codec.loads(text)) == json.dumps(engineio.json.loads(text))
    assert codec.dumps({"a": [1, "é"], 2: None}, separators=(",", ":")) == '{"a":[1,"é"],"2":null}'
    assert codec.dumps("\ud800", separators=(",", ":")) == '"\\ud800"'


# -- a websocket detached from aiohttp, stepped in one process --------------------------------


async def _one_link(
    app: web.Application, http: aiohttp.ClientSession, url: str, room: str, *fast_paths: str
) -> tuple[aiohttp.ClientWebSocketResponse, str, ChatWebSocket]:
    """The only client, joined to ``room`` over a detached websocket: its end, its engine.io
    sid and the server's link to it (skipped without ``fast_paths``)."""
    for fast_path in fast_paths:
        _require(app, fast_path)
    ws = await joined(http, url, room)
    (eio_sid,) = app[sio_key].eio.sockets
    link = app[sessions_key].websocket(eio_sid)
    assert link is not None
    return ws, eio_sid, link


async def test_direct_writes_never_overtake_what_the_writer_holds(app: web.Application) -> None:
    """Queue a packet as engine.io does, then offer a room frame at every loop step after.

    Whatever step the writer is at (woken, holding the packet, writing, waiting again),
    the frame must reach the client after the packet.
    """
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws, eio_sid, link = await _one_link(app, http, url, "steps", "detach", "direct")
        eng = app[sessions_key]
        sock = app[sio_key].eio.sockets[eio_sid]
        assert isinstance(sock.queue, sendqueue.SendQueue)
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


class _RecordingTransport:
    """A connection's transport, recording each write before passing it on."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_a_calm_turns_frames_are_written_at_once_a_busy_loops_together(
    app: web.Application,
) -> None:
    """A calm moment's frame goes to the transport when it is offered, so a message's first
    readers do not wait while it is offered to the rest of its room; past WRITE_AT_ONCE
    frames in one turn of the event loop, and in every turn while frames keep coming, a
    connection's frames are gathered into one write at the end of the turn."""
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws, _, link = await _one_link(app, http, url, "calm", "detach", "direct")
        eng = app[sessions_key]
        assert link.transport is not None
        await asyncio.gather(*_writer_tasks())  # one that sent the welcome ends by itself
        recording = _RecordingTransport(link.transport)
        link.transport = recording
        writes = recording.writes
        # Quiet for longer than the calm gap: not a wait for an event, the calm itself.
        await asyncio.sleep(eng.calm_gap * 10)
        assert link.write_now(eng.packet("calm", 0))
        assert len(writes) == 1
        for n in range(1, WRITE_AT_ONCE + 3):
            assert link.write_now(eng.packet("many", n))
        assert len(writes) == WRITE_AT_ONCE
        await asyncio.sleep(0)  # the turn ends: what was corked goes in one write
        assert len(writes) == WRITE_AT_ONCE + 1
        assert writes[-1].count(b'42["many"') == 3
        # Frames keep coming (a gap no turn reaches): each turn's are corked.
        eng.calm_gap = 3600.0
        for n in range(2):
            assert link.write_now(eng.packet("busy", n))
        assert len(writes) == WRITE_AT_ONCE + 1
        await asyncio.sleep(0)
        assert len(writes) == WRITE_AT_ONCE + 2
        assert writes[-1].count(b'42["busy"') == 2
        received = [await ws.receive_str() for _ in range(WRITE_AT_ONCE + 5)]
        assert received == [
            '42["calm",0]',
            *(f'42["many",{n}]' for n in range(1, WRITE_AT_ONCE + 3)),
            '42["busy",0]',
            '42["busy",1]',
        ]
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
        ws, eio_sid, link = await _one_link(app, http, url, "idle", "detach")
        eng = app[sessions_key]
        sock = app[sio_key].eio.sockets[eio_sid]
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
    async with serving(app) as runner, aiohttp.ClientSession() as http:
        _require(app, "detach")
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ws = await joined(http, url, "detached")
        sio, eng = app[sio_key], app[sessions_key]
        (eio_sid,) = sio.eio.sockets
        link = eng.websocket(eio_sid)
        assert link is not None and link.transport is not None
        assert link.transport.get_protocol() is link
        environ = sio.get_environ(eng.sid(eio_sid))
        assert "aiohttp.request" not in environ and "REMOTE_ADDR" in environ
        assert [key for key in environ if key.startswith("HTTP_")] == []  # headers dropped

        def tasks() -> list[asyncio.Task[Any]]:
            """Tasks of the connection: aiohttp's, or the writer and receiver, which end
            by themselves once the welcome is sent and the connect handled."""
            return [
                t
                for t in asyncio.all_tasks()
                if any(
                    name.startswith(("RequestHandler.", "ChatWebSocket.")) for name in _awaiting(t)
                )
            ]

        await asyncio.wait_for(asyncio.gather(*tasks()), timeout=5)
        assert tasks() == []
        # aiohttp's server forgot the connection as if it had been lost.
        assert runner.server is not None and runner.server.connections == []
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
        _require(app, "detach")
        _require(app, "direct")
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
        _require(app, "heartbeat")
        ws = await joined(http, url, "beat")
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
        # engine.io's session walk did not start: chatapp's runs instead.
        assert not _tasks_in("AsyncServer._service_task")
        await ws.close()


async def test_a_silent_client_is_disconnected(app: web.Application) -> None:
    """A detached ChatWebSocket closes a websocket that sent nothing for ping_interval +
    ping_timeout, as engine.io's own handler does."""
    sio = app[sio_key]
    sio.eio.ping_interval, sio.eio.ping_timeout = 0.3, 0.3
    async with served(app) as url, aiohttp.ClientSession() as http:
        ws = await joined(http, url, "quiet")
        (eio_sid,) = sio.eio.sockets
        # Never answer: pings (and engine.io's CLOSE) arrive, then the websocket closes.
        frames = []
        while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            frames.append(msg.data)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        assert frames and frames[0] == "2", frames
    assert eio_sid not in sio.eio.sockets and app[sessions_key].websocket(eio_sid) is None


# -- an upgrade from long-polling: engine.io's handler, aiohttp's websocket -------------------


async def test_an_upgraded_websocket_is_served_by_engineio_and_written_directly(
    app: web.Application,
) -> None:
    """After an upgrade engine.io's own handler serves the connection through ChatWebSocket
    and aiohttp's websocket. Queue a packet as engine.io does, then offer a room frame at
    every loop step after: whatever step engine.io's writer is at (woken, holding the
    packet, writing, waiting in ``queue.get()`` again), the frame reaches the client after
    the packet, and once the writer waits, frames are written directly."""
    async with served(app) as url, aiohttp.ClientSession() as http:
        _require(app, "direct")
        ws = await upgraded(http, url, "upgraded")
        sio, eng = app[sio_key], app[sessions_key]
        (eio_sid,) = sio.eio.sockets
        sock = sio.eio.sockets[eio_sid]
        link = eng.websocket(eio_sid)
        assert link is not None and sock.upgraded and not sock.upgrading
        assert _tasks_in("AsyncSocket._websocket_handler")
        assert link.transport is not None and link.transport.get_protocol() is not link
        await _until(link.writer_idle)
        paths = []
        for steps in range(8):
            queued = engineio.packet.Packet(engineio.packet.MESSAGE, f'2["queued",{steps}]')
            sock.queue.put_nowait(queued)
            for _ in range(steps):
                await asyncio.sleep(0)  # one event loop iteration: the writer advances
            frame = eng.packet("framed", steps)
            direct = link.write_now(frame)
            if not direct:
                assert eng.put(eio_sid, frame)  # engine.io's writer sends its encode()
            paths.append(direct)
            received = [await ws.receive_str(), await ws.receive_str()]
            assert received == [f'42["queued",{steps}]', f'42["framed",{steps}]'], steps
        assert paths[0] is False and paths[-1] is True, paths
        await ws.send_str('421["message",{"text":"upgraded"}]')
        assert (await ws.receive_str()).startswith('42["message"')
        assert (await ws.receive_str()).startswith("431[")
        await ws.close()
        await _until(lambda: not sio.eio.sockets)


async def test_a_closing_upgraded_websocket_takes_no_frame_after_its_close(
    app: web.Application,
) -> None:
    """aiohttp marks its websocket closed no later than it writes the close frame: a frame
    offered at any step while it closes is refused or reaches the client before the close."""
    async with served(app) as url, aiohttp.ClientSession() as http:
        _require(app, "direct")
        ws = await upgraded(http, url, "closing")
        eng = app[sessions_key]
        (eio_sid,) = app[sio_key].eio.sockets
        link = eng.websocket(eio_sid)
        assert link is not None
        await _until(link.writer_idle)
        received: list[str] = []

        async def read() -> None:
            while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                received.append(msg.data)
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg

        reader = asyncio.ensure_future(read())
        closing = asyncio.ensure_future(link.close())
        accepted = []
        n = 0
        while not closing.done():
            if link.write_now(eng.packet("framed", n)):
                accepted.append(n)
            n += 1
            await asyncio.sleep(0)
        await reader
        assert accepted and n > len(accepted), (accepted, n)
        assert received == [f'42["framed",{k}]' for k in accepted]


# -- python-socketio's message-queue base class, as the Redis manager uses it ------------------


class _SpyLocal(managers.LocalManager):
    """Records each local delivery, where ``AsyncPubSubManager``'s ``super().emit`` must
    land in a manager built as RedisManager is."""

    delivered: list[tuple[str, Any]]

    async def emit(self, event: str, data: Any, namespace: str | None, **kwargs: Any) -> Any:
        self.delivered.append((event, data))
        return await super().emit(event, data, namespace, **kwargs)


class _Loopback(AsyncPubSubManager, _SpyLocal):  # type: ignore[misc]
    """A message queue whose channel is in this process, built on python-socketio's base
    class as ``managers.RedisManager`` is: what it publishes, its listener hears back."""

    def __init__(self, sessions: Sessions[Any]) -> None:
        self.sessions = sessions
        super().__init__(channel="loopback")
        self.delivered = []
        self.published: list[dict[str, Any]] = []
        self.channel: asyncio.Queue[Any] = asyncio.Queue()
        self.listening: list[asyncio.Task[Any] | None] = []

    async def _publish(self, data: dict[str, Any]) -> None:
        self.published.append(data)
        await self.channel.put(self.json.dumps(data))

    async def _listen(self) -> Any:
        self.listening.append(asyncio.current_task())
        while True:
            yield await self.channel.get()


@contextlib.asynccontextmanager
async def _loopback_server() -> Any:
    """A python-socketio server on a :class:`_Loopback` manager, with one client in it."""
    sessions: Sessions[_Loopback] = Sessions(_Loopback, FastPaths([], wanted=()))
    app = web.Application()
    sessions.sio.attach(app)
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    client = socketio.AsyncClient()
    client.on("*", lambda event, data: events.put_nowait((event, data)))
    async with served(app) as url:
        await client.connect(url, transports=["websocket"])
        try:
            yield sessions.manager, client, events
        finally:
            await client.disconnect()
            thread = getattr(sessions.manager, "thread", None)
            if thread is not None:
                thread.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await thread


async def test_pubsub_emits_publish_and_deliver_locally_through_the_next_manager() -> None:
    """RedisManager relies on ``AsyncPubSubManager.emit`` publishing each emit (awaiting
    ``_publish``) and delivering it in this process once, through ``super().emit``, which
    its MRO routes to ``LocalManager``; ``self.json`` is the server's codec."""
    async with _loopback_server() as (manager, client, events):
        assert manager.json is manager.server.packet_class.json
        await manager.emit("hello", {"n": 1}, "/", room=client.get_sid())
        assert await asyncio.wait_for(events.get(), 5) == ("hello", {"n": 1})
        assert [m["event"] for m in manager.published] == ["hello"]
        assert manager.delivered == [("hello", {"n": 1})]
        # Its own message comes back on the channel and is not delivered twice.
        await _until(lambda: manager.channel.empty() and bool(manager.listening))
        await manager.emit("again", "x", "/", room=client.get_sid())
        assert await asyncio.wait_for(events.get(), 5) == ("again", "x")
        assert events.empty() and len(manager.delivered) == 2
    # The Redis manager's MRO is built the same way.
    mro = fanout.FeedRedisManager.__mro__
    assert mro.index(AsyncPubSubManager) < mro.index(fanout.FeedManager)
    assert mro.index(fanout.FeedManager) < mro.index(managers.LocalManager)


async def test_pubsub_listener_task_iterates_listen_and_delivers_other_hosts_emits() -> None:
    """``initialize()`` (at the first connection) starts a task that iterates ``_listen``
    and delivers what another process published through ``super().emit``; the task can
    be cancelled (``RedisManager.close_listener``)."""
    async with _loopback_server() as (manager, client, events):
        await _until(lambda: bool(manager.listening))
        (listener,) = manager.listening
        assert listener is not None and listener is manager.thread
        message = {
            "method": "emit",
            "event": "remote",
            "data": [{"from": "elsewhere"}],
            "namespace": "/",
            "room": client.get_sid(),
            "skip_sid": None,
            "callback": None,
            "host_id": "another-process",
        }
        await manager.channel.put(json.dumps(message))
        assert await asyncio.wait_for(events.get(), 5) == ("remote", {"from": "elsewhere"})
        assert manager.delivered == [("remote", {"from": "elsewhere"})]
        assert not manager.published
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        assert listener.done()


async def test_pubsub_disconnect_with_ignore_queue_stays_local() -> None:
    """``Sessions.forget`` disconnects with ``ignore_queue=True``: with Redis, nothing is
    published (a disconnect without it is)."""
    async with _loopback_server() as (manager, client, _events):
        sid = client.get_sid()
        assert manager.is_connected(sid, "/")
        await manager.disconnect(sid, "/", ignore_queue=True)
        assert not manager.is_connected(sid, "/")
        assert not manager.published
        await manager.disconnect("not-here", "/")
        assert [m["method"] for m in manager.published] == ["disconnect"]
