"""The python-engineio / python-socketio internals that chatapp/transport.py relies on.

If an upgrade of either library moves one of them, this fails first and says which.
"""

from __future__ import annotations

import inspect

import engineio
import socketio
from engineio import async_socket
from engineio.async_drivers import aiohttp as eio_aiohttp

from chatapp.app import create_app
from chatapp.keys import guard_key, sio_key
from chatapp.settings import Settings
from chatapp.transport import _GuardedWebSocket


def test_driver_hooks_and_handlers_are_where_the_guard_expects(tmp_path) -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    assert {"translate_request", "websocket"} <= set(sio.eio._async)
    assert {"connect", "message", "disconnect"} <= set(sio.eio.handlers)
    app = create_app(Settings(db=str(tmp_path / "x.db")))
    sio = app[sio_key]
    assert sio.eio._async["translate_request"] == app[guard_key]._translate_request
    assert sio.eio.handlers["message"] == app[guard_key]._message


def test_socket_and_websocket_wrapper_internals() -> None:
    assert issubclass(_GuardedWebSocket, eio_aiohttp.WebSocket)
    source = inspect.getsource(eio_aiohttp.WebSocket)
    assert "self.handler = handler" in source and "self._sock = WebSocketResponse" in source
    socket_source = inspect.getsource(async_socket.AsyncSocket)
    # The send queue is created through the server and used with put/put_nowait/get.
    assert "self.queue.put(" in socket_source
    assert "self.server.create_queue()" in inspect.getsource(engineio.base_socket.BaseSocket)
    assert "reason=None" in str(inspect.signature(async_socket.AsyncSocket.close))
    assert hasattr(socketio.AsyncManager, "sid_from_eio_sid")
    assert hasattr(socketio.AsyncManager, "is_connected")
