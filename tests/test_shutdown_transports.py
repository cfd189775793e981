"""Shutdown with the kinds of connections browsers leave behind.

The official JS client ignores engine.io's CLOSE packet on a WebSocket, and a browser tab
that went away leaves a polling session nobody collects. Neither may keep the server from
stopping (the harness gives SIGTERM its usual time) and the WebSocket must be closed by the
server, so that the browser reconnects.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.support import Server


async def test_server_closes_websockets_of_clients_that_ignore_close(server: Server) -> None:
    ws_url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        opened = await ws.receive_str(timeout=10)
        assert opened.startswith("0")
        await ws.send_str("40" + json.dumps({"room": "lobby", "name": "Raw"}))
        assert (await ws.receive_str(timeout=10)).startswith("40")
        assert (await ws.receive_str(timeout=10)).startswith('42["welcome"')

        rc_task = asyncio.create_task(server.stop())
        received = []
        # Like the JS client: keep reading, act on nothing but the WebSocket closing.
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            received.append(msg.data)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert "1" in received  # engine.io CLOSE was sent before the socket was closed
        assert await rc_task == 0


async def test_abandoned_polling_session_does_not_block_shutdown(server: Server) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/socket.io/?EIO=4&transport=polling") as resp,
    ):
        assert resp.status == 200
        assert (await resp.text()).startswith("0")
    # The session is never polled again, so its CLOSE packet is never collected.
    assert await server.stop() == 0
    assert "all clients disconnected" in server.log()
