"""Host names: a page that rebinds its own name to the server's address gets nothing.

DNS rebinding: a page on attacker.example makes that name resolve to a chat server on the
victim's machine or LAN; the browser then sends ``Host: attacker.example:PORT`` with the
matching ``Origin``, which an origin check alone takes for the server's own pages.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from chatapp.app import create_app
from chatapp.settings import Settings

from .conftest import ServerFactory
from .raw import POLL_PATH, WS_PATH, RawSocket
from .support import Server

EVIL = "attacker.example"


def as_host(server: Server, name: str) -> dict[str, str]:
    """Headers of a browser on a page at ``http://name:PORT`` talking to its own origin."""
    host = f"{name}:{server.port}"
    return {"Host": host, "Origin": f"http://{host}"}


async def status(server: Server, path: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession(server.url) as http, http.get(path, headers=headers) as r:
        return r.status


async def test_a_rebound_name_gets_nothing(server: Server) -> None:
    headers = as_host(server, EVIL)
    async with aiohttp.ClientSession(server.url) as http:
        for path in ("/", "/r/team", "/static/chat.js", "/healthz"):
            async with http.get(path, headers=headers) as r:
                assert r.status == 403, path
                assert "--allowed-hosts" in await r.text()
        for path in ("/api/rooms", "/api/rooms/lobby/messages", POLL_PATH):
            async with http.get(path, headers=headers) as r:
                assert r.status == 403, path
                assert (await r.json())["error"].startswith("host not allowed")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.url + WS_PATH, headers=headers)
        assert refused.value.status == 403
    # The same requests by IP address are served.
    own = as_host(server, "127.0.0.1")
    for path in ("/", "/api/rooms", POLL_PATH):
        assert await status(server, path, own) == 200, path
    log = server.log()
    assert f"refused requests for host '{EVIL}:{server.port}'" in log
    assert log.count("refused requests for host") == 1  # one line per name and minute


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:{port}",
        "10.1.2.3:{port}",
        "[::1]:{port}",
        "[fe80::1]",
        "localhost:{port}",
        "LOCALHOST",
        "localhost.",
        "chat.example:{port}",
        "Chat.Example",
    ],
)
async def test_addresses_localhost_and_listed_names_are_served(
    start_server: ServerFactory, host: str
) -> None:
    server = await start_server("--allowed-hosts", "chat.example, other.example")
    host = host.format(port=server.port)
    assert await status(server, "/healthz", {"Host": host}) == 200


@pytest.mark.parametrize(
    "host", ["chat.example.attacker.example", "xchat.example", "127.0.0.1.nip.io", "[::1"]
)
async def test_other_names_are_refused(start_server: ServerFactory, host: str) -> None:
    server = await start_server("--allowed-hosts", "chat.example")
    assert await status(server, "/healthz", {"Host": host}) == 403


async def test_a_listed_name_gets_the_api_and_socketio(start_server: ServerFactory) -> None:
    server = await start_server("--allowed-hosts", "chat.example")
    headers = as_host(server, "chat.example")
    assert await status(server, "/api/rooms", headers) == 200
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url + WS_PATH, headers=headers)
        assert (await ws.receive_str()).startswith("0{")
        await ws.close()
    # Any name with '*', for servers behind something that checks names itself.
    anything = await start_server("--allowed-hosts", "*")
    assert await status(anything, "/api/rooms", as_host(anything, EVIL)) == 200


async def test_behind_a_trusted_proxy_the_forwarded_host_is_checked(
    start_server: ServerFactory,
) -> None:
    behind = await start_server("--trust-proxy", "--allowed-hosts", "chat.example")
    forwarded = {"Host": "127.0.0.1", "X-Forwarded-Host": "chat.example"}
    assert await status(behind, "/api/rooms", forwarded) == 200
    rebound = {"Host": "127.0.0.1", "X-Forwarded-Host": f"{EVIL}:443"}
    assert await status(behind, "/api/rooms", rebound) == 403
    assert await status(behind, POLL_PATH, rebound) == 403
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await RawSocket(http).start(behind.url, **rebound)
    # Without --trust-proxy the header is the client's word, and it is Host that counts.
    plain = await start_server("--allowed-hosts", "chat.example")
    assert await status(plain, "/api/rooms", rebound) == 200
    assert (
        await status(plain, "/api/rooms", {"X-Forwarded-Host": "chat.example", "Host": EVIL}) == 403
    )


def test_the_accepted_names_are_logged_when_listening_beyond_loopback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path / "chat.db")
    with caplog.at_level(logging.INFO, logger="chatapp.app"):
        create_app(Settings(db=db))
        assert "answering to" not in caplog.text  # 127.0.0.1: nobody else can reach it
        create_app(Settings(db=db, host="0.0.0.0", allowed_hosts=("chat.example",)))
        assert "answering to IP addresses, localhost and chat.example" in caplog.text
        create_app(Settings(db=db, host="::"))
        assert "answering to IP addresses and localhost only" in caplog.text


def test_allowed_hosts_must_be_names() -> None:
    from chatapp.settings import load_settings

    assert load_settings(["--allowed-hosts", "Chat.Example., b.example"], {}).allowed_hosts == (
        "chat.example",
        "b.example",
    )
    assert load_settings([], {"CHATAPP_ALLOWED_HOSTS": "*"}).allowed_hosts == ("*",)
    for bad in ("http://chat.example", "chat.example:8080", "chat.example/x"):
        with pytest.raises(SystemExit):
            load_settings(["--allowed-hosts", bad], {})
