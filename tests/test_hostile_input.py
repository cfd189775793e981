"""Property-based: arbitrary JSON, binary attachments, unicode edge cases and wrong types at
every event and every HTTP endpoint. The answer is always a well-formed error or a correct
result, the server logs no ERROR, and two bystanders keep chatting throughout.

One server for the module (a fresh process per example would take minutes); the module
fixture fails on any ERROR line in its log, and each test checks the log as it ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from .conftest import NO_RATE_LIMITS
from .raw import RawSocket
from .support import Client, Server

pytestmark = pytest.mark.asyncio(loop_scope="module")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

EDGE_STRINGS = [
    "",
    " ",
    "\u202e",  # right-to-left override
    "abc\u202edef",
    "\u200b",  # zero-width space
    "a\u200d\u200cb",  # zero-width joiners
    "\ufeff",  # byte order mark
    "a" + "\u0301" * 10_000,  # 10k combining marks
    "\ud800",  # lone surrogates
    "x\udfffy",
    "\x00",
    "\x1b[31m",
    "\U0010ffff",
    "🐱" * 600,
    "lobby",
    "LOBBY",
    "a" * 64,
    "a" * 65,
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "%00",
    "line\nbreak",
    "x" * 2000,
    "x" * 2001,
]
texts = st.one_of(
    st.sampled_from(EDGE_STRINGS),
    st.text(st.characters(exclude_categories=()), max_size=40),  # surrogates included
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    texts,
    st.binary(max_size=64),  # sent as Socket.IO binary attachments
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
EVENT_FIELDS = {
    "message": ["text", "client_id"],
    "typing": ["typing"],
    "history": ["before", "limit"],
    "rename": ["name"],
}


def payloads(event: str) -> st.SearchStrategy[Any]:
    fields = EVENT_FIELDS[event]
    shaped = st.dictionaries(st.sampled_from(fields), values | texts, max_size=len(fields))
    return st.one_of(values, shaped)


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Chatter:
    """Two bystanders exchanging messages in the background for the whole module."""

    def __init__(self, a: Client, b: Client) -> None:
        self.a, self.b = a, b
        self.sent = 0
        self.task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    async def run(self) -> None:
        try:
            while True:
                ack = await self.a.send(f"chat {self.sent}")
                assert ack["ok"] is True, ack
                msg_id = ack["message"]["id"]
                await self.b.wait_for("message", lambda m, i=msg_id: m["id"] == i)
                self.sent += 1
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc

    async def healthy(self) -> None:
        """The bystanders are still chatting: another round trip gets through."""
        assert self.failure is None, repr(self.failure)
        before = self.sent
        while self.sent <= before:
            await self.b.wait_for("message", count=len(self.b.of("message")) + 1)
        ids = self.b.message_ids()
        assert ids == list(range(1, len(ids) + 1)), "in order, exactly once"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    # Frames up to 1 MB, so that the handlers see payloads of any size (a frame over the
    # 64 KiB default closes its connection, which test_limits checks).
    server = Server(
        tmp_path_factory.mktemp("fuzz"),
        *NO_RATE_LIMITS,
        "--max-connections-per-ip",
        "0",
        "--max-frame-bytes",
        "1000000",
    )
    await server.start()
    yield server
    assert await server.stop() == 0, server.log()
    assert not server.bad_log_lines(), server.log()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chatter(fuzz_server: Server) -> AsyncIterator[Chatter]:
    a, b = Client(), Client()
    await a.connect(fuzz_server.url, room="bystanders", name="a")
    await b.connect(fuzz_server.url, room="bystanders", name="b")
    chat = Chatter(a, b)
    chat.task = asyncio.create_task(chat.run())
    yield chat
    chat.task.cancel()
    await a.close()
    await b.close()


@pytest_asyncio.fixture(loop_scope="module")
async def checked(fuzz_server: Server, chatter: Chatter) -> AsyncIterator[None]:
    """After the test: the bystanders still chat and the log has no ERROR."""
    yield
    await chatter.healthy()
    assert not fuzz_server.bad_log_lines(), fuzz_server.log()


@pytest_asyncio.fixture(loop_scope="module")
async def victim(fuzz_server: Server, checked: None) -> AsyncIterator[Client]:
    client = Client()
    await client.connect(fuzz_server.url, room="fuzz", name="victim")
    yield client
    await client.close()


def check_ack(event: str, payload: Any, ack: Any) -> None:
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if not ack["ok"]:
        assert isinstance(ack["error"], str) and ack["error"], ack
        assert set(ack) <= {"ok", "error", "retry_after"}, ack
    if event == "message" and isinstance(payload, dict) and set(payload) == {"text"}:
        text = payload["text"]
        valid = isinstance(text, str) and 1 <= len(text.strip()) <= 2000 and encodable(text)
        assert ack["ok"] is valid, (text, ack)
        if valid:
            assert ack["message"]["text"] == text  # verbatim
            assert ack["message"]["room"] == "fuzz" and isinstance(ack["message"]["id"], int)
    if not ack["ok"]:
        return
    if event == "typing":
        assert ack == {"ok": True}
    elif event == "history":
        assert isinstance(ack["messages"], list) and isinstance(ack["has_more"], bool)
        assert all(m["room"] == "fuzz" for m in ack["messages"])
    elif event == "rename":
        assert ack["name"] == payload["name"].strip()


@FUZZ
@given(payload=payloads("message"))
async def test_message_answers_anything(victim: Client, payload: Any) -> None:
    check_ack("message", payload, await victim.call("message", payload))


@FUZZ
@given(payload=payloads("typing"))
async def test_typing_answers_anything(victim: Client, payload: Any) -> None:
    check_ack("typing", payload, await victim.call("typing", payload))


@FUZZ
@given(payload=payloads("history"))
async def test_history_answers_anything(victim: Client, payload: Any) -> None:
    check_ack("history", payload, await victim.call("history", payload))


@FUZZ
@given(payload=payloads("rename"))
async def test_rename_answers_anything(victim: Client, payload: Any) -> None:
    check_ack("rename", payload, await victim.call("rename", payload))


EVENT_NAMES = st.one_of(
    st.sampled_from(
        ["connect", "disconnect", "*", "connect_error", "welcome", "presence", "message"]
    ),
    texts,
)


@FUZZ
@given(name=EVENT_NAMES, args=st.lists(values, max_size=3))
async def test_wrong_arity_and_unknown_events(victim: Client, name: str, args: list[Any]) -> None:
    if not encodable(name):
        return  # python-socketio cannot send it; the raw test covers broken frames
    ack = await victim.sio.call(name, tuple(args), timeout=10)
    if name in EVENT_FIELDS and len(args) == 1:
        check_ack(name, args[0], ack)
    else:
        assert isinstance(ack, dict) and ack["ok"] is False and ack["error"], ack
    # Events named like the lifecycle ones change nothing: still connected, still in the room.
    assert victim.sio.connected
    assert (await victim.call("history", {}))["ok"] is True


AUTH = st.one_of(
    st.dictionaries(
        st.sampled_from(["room", "name", "since", "token", "extra"]), values | texts, max_size=4
    ),
    values,
)


@FUZZ
@given(auth=AUTH)
async def test_connect_auth_answers_anything(fuzz_server: Server, checked: None, auth: Any) -> None:
    async with aiohttp.ClientSession() as http:
        raw = RawSocket(http)
        await raw.start(fuzz_server.url)
        try:
            frame = "40" + json.dumps(auth)
        except TypeError:
            return  # bytes: not JSON (the client library would send an attachment)
        await raw.send(frame)
        try:
            reply = await raw.recv()
            if reply == "1":  # engine.io's CLOSE: the session is over, the close follows
                raise ConnectionError("closed by the server")
        except ConnectionError:
            # Only a packet Socket.IO cannot parse closes the connection: a number
            # right after "40" reads as an ack id ("401.5").
            assert isinstance(auth, int | float) and not isinstance(auth, bool), auth
            return
        if reply.startswith("44"):
            error = json.loads(reply[2:])
            assert isinstance(error["message"], str) and error["message"], error
        else:
            assert reply.startswith("40{"), reply
            welcome = await raw.event("welcome")
            assert isinstance(welcome["room"], str) and isinstance(welcome["users"], list)
        await raw.close()


def path_part(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@FUZZ
@given(room=texts, before=texts, limit=texts, next_path=texts, body=st.binary(max_size=300))
async def test_http_endpoints_answer_anything(
    fuzz_server: Server,
    checked: None,
    room: str,
    before: str,
    limit: str,
    next_path: str,
    body: bytes,
) -> None:
    base = URL(fuzz_server.url)
    async with aiohttp.ClientSession() as http:
        page = base.join(URL(f"/r/{path_part(room)}", encoded=True))
        async with http.get(page, allow_redirects=False) as r:
            assert r.status in (200, 302, 400, 404), r.status
        api = URL(
            f"/api/rooms/{path_part(room)}/messages"
            f"?before={path_part(before)}&limit={path_part(limit)}",
            encoded=True,
        )
        async with http.get(base.join(api)) as r:
            assert r.status in (200, 400, 404), r.status
            if len(str(api)) > 8190:  # over aiohttp's request line limit
                assert r.status == 400
                return
            data = await r.json()
            if r.status == 200:
                assert isinstance(data["messages"], list) and isinstance(data["has_more"], bool)
            else:
                assert isinstance(data["error"], str) and data["error"]
        login = URL(f"/login?next={path_part(next_path)}", encoded=True)
        async with http.get(base.join(login), allow_redirects=False) as r:
            assert r.status in (303, 400), r.status
            if r.status == 303:
                location = r.headers["Location"]
                assert location.startswith("/") and not location.startswith("//")
        async with http.post(base.join(URL("/login")), data=body, allow_redirects=False) as r:
            assert r.status in (303, 400, 413), r.status
        junk = URL(f"/api/{path_part(room)}", encoded=True)
        async with http.get(base.join(junk)) as r:
            assert r.status in (400, 404) and "error" in await r.json()
