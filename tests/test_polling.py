"""Long-polling sessions: one long-poll at a time, and only from the address that opened it."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from .conftest import ServerFactory
from .raw import POLL_PATH
from .support import Server


async def open_session(http: aiohttp.ClientSession, url: str, **headers: str) -> str:
    """A polling session with its Socket.IO connection made and its first packets read."""
    async with http.get(url + POLL_PATH, headers=headers) as r:
        sid = str(json.loads((await r.text())[1:])["sid"])
    async with http.post(f"{url}{POLL_PATH}&sid={sid}", data=b"40", headers=headers) as r:
        assert r.status == 200
    async with http.get(f"{url}{POLL_PATH}&sid={sid}", headers=headers) as r:
        assert '42["welcome"' in await r.text()
    return sid


async def test_a_second_concurrent_long_poll_closes_the_session(server: Server) -> None:
    # The Engine.IO protocol allows one outstanding GET per session. Fifty at once: the
    # one that waits gets the session's CLOSE packet, every other one a 400, and none is
    # left hanging until the ping (25 s away) or the client's own timeout.
    async with aiohttp.ClientSession() as http:
        sid = await open_session(http, server.url)

        async def poll() -> tuple[int, str]:
            async with http.get(f"{server.url}{POLL_PATH}&sid={sid}") as r:
                return r.status, await r.text()

        answers = await asyncio.wait_for(asyncio.gather(*(poll() for _ in range(50))), 10)
        assert sorted(status for status, _ in answers) == [200] + [400] * 49
        [waited] = [text for status, text in answers if status == 200]
        assert waited.split("\x1e")[-1] == "1"  # Engine.IO's CLOSE
        async with http.get(f"{server.url}{POLL_PATH}&sid={sid}") as r:
            assert r.status == 400  # the session is gone
    log = server.log()
    assert "a second long-poll while one was waiting" in log
    assert log.count("a second long-poll") == 1


async def test_a_session_answers_only_the_address_that_opened_it(server: Server) -> None:
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession() as own, aiohttp.ClientSession(connector=other) as foreign:
        sid = await open_session(own, server.url)
        url = f"{server.url}{POLL_PATH}&sid={sid}"
        async with foreign.post(url, data=b'42["message",{"text":"not mine"}]') as r:
            assert r.status == 400
            assert "belongs to another address" in (await r.json())["error"]
        async with foreign.get(url) as r:
            assert r.status == 400
        # The session is untouched: its own client goes on.
        async with own.post(url, data=b'421["message",{"text":"mine"}]') as r:
            assert r.status == 200
        async with own.get(url) as r:
            text = await r.text()
        assert '"text":"mine"' in text and "not mine" not in text
    assert "refused a request for session" in server.log()


async def test_behind_a_trusted_proxy_the_forwarded_address_owns_the_session(
    start_server: ServerFactory,
) -> None:
    server = await start_server("--trust-proxy")
    async with aiohttp.ClientSession() as http:
        sid = await open_session(http, server.url, **{"X-Forwarded-For": "203.0.113.7"})
        url = f"{server.url}{POLL_PATH}&sid={sid}"
        async with http.get(url, headers={"X-Forwarded-For": "203.0.113.8"}) as r:
            assert r.status == 400
        async with http.post(url, data=b"41", headers={"X-Forwarded-For": "203.0.113.7"}) as r:
            assert r.status == 200
