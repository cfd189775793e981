"""chatapp/fanout.py reaches into python-socketio and python-engineio internals.

These tests fail loudly when an upgrade moves what it relies on: update fanout.py and
TESTED_VERSIONS together after checking the new code.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import engineio
import socketio
from engineio import async_socket
from socketio import async_pubsub_manager

from chatapp import fanout


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
    # It sees each subscription (and catches up) in _redis_listen_with_retries, which the
    # listener runs and which calls _redis_connect before each (re)subscription.
    listen = inspect.getsource(redis_manager._listen)
    assert "async for message in self._redis_listen_with_retries()" in listen
    assert "message['type'] == 'message'" in listen
    retries = inspect.getsource(redis_manager._redis_listen_with_retries)
    assert "self._redis_connect()" in retries
    assert "await self.pubsub.subscribe(self.channel)" in retries
    assert "async for message in self.pubsub.listen()" in retries
    assert 'extra={"redis_exception"' in inspect.getsource(redis_manager._publish)
    server = socketio.AsyncServer(async_mode="aiohttp")
    assert server.manager_initialized is False
    assert "self.manager.initialize()" in inspect.getsource(
        socketio.AsyncServer._handle_eio_connect
    )
