"""Property-based: arbitrary JSON, binary attachments, unicode edge cases and wrong types at
every event and every HTTP endpoint. The answer is always a well-formed error or a correct
result, the server logs no ERROR, and two bystanders keep chatting throughout.

One server for the module (a fresh process per example would take minutes); the module
fixture fails on any ERROR line in its log, and each test checks the log as it ends.
"""

from __future__ import annotations

import asyncio
import json
import unicodedata
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
#: Integers at the edges of what JavaScript, SQLite and PostgreSQL can hold.
EDGE_INTEGERS = [
    0,
    -1,
    2**31,
    2**53 - 1,
    2**53,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
]
#: Digits as text: Unicode digits that str.isdigit() or int() accept, huge numbers.
EDGE_NUMERALS = [
    "²",
    "١٢",
    "١٢٣٤٥٦٧٨٩٠",
    "²³⁴",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "9" * 5000,
    "-9223372036854775809",
    "+5",
    " 5",
    "5 ",
    "0x10",
    "1e3",
    "1_000",
]
texts = st.one_of(
    st.sampled_from(EDGE_STRINGS + EDGE_NUMERALS),
    st.text(st.characters(exclude_categories=()), max_size=40),  # surrogates included
)
integers = st.one_of(
    st.sampled_from(EDGE_INTEGERS), st.integers(min_value=-(2**70), max_value=2**70)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    integers,
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
#: Integer fields get integers at their edges more often than the generic values would.
INTEGER_FIELDS = {"before", "limit", "since"}


def payloads(event: str) -> st.SearchStrategy[Any]:
    fields = EVENT_FIELDS[event]
    shaped = st.dictionaries(st.sampled_from(fields), values | texts, max_size=len(fields))
    numbers = [f for f in fields if f in INTEGER_FIELDS]
    if not numbers:
        return st.one_of(values, shaped)
    edges = st.dictionaries(st.sampled_from(numbers), integers, max_size=len(numbers))
    return st.one_of(values, shaped, edges)


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
        assert ack["name"] == unicodedata.normalize("NFC", payload["name"].strip())


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
        st.sampled_from(["room", "name", "since", "token", "key", "extra"]),
        values | texts,
        max_size=4,
    ),
    # Valid but for the number, so that the number is what gets checked.
    st.fixed_dictionaries({"since": integers}, optional={"room": st.just("fuzz")}),
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


numerals = st.one_of(st.sampled_from(EDGE_NUMERALS), integers.map(str), texts)


@FUZZ
@given(room=texts, before=numerals, limit=numerals, next_path=texts, body=st.binary(max_size=300))
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
        rooms = URL(f"/api/rooms?limit={path_part(limit)}&after={path_part(before)}", encoded=True)
        async with http.get(base.join(rooms)) as r:
            assert r.status in (200, 400), r.status
            data = await r.json()
            assert isinstance(data, list) if r.status == 200 else data["error"]
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


# -- a private server: the login cookie ------------------------------------------------------

TOKEN = "fuzz-token-0123456789"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def private_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("private"),
        "--max-connections-per-ip",
        "0",
        env={"CHATAPP_ACCESS_TOKEN": TOKEN},
    )
    await server.start()
    yield server
    assert await server.stop() == 0, server.log()
    assert not server.bad_log_lines(), server.log()


def cookie_header(cookie: str) -> str:
    return "chatapp_access=" + quote(cookie.encode("utf-8", "surrogatepass"), safe="")


COOKIES = st.one_of(
    st.sampled_from(EDGE_NUMERALS),
    st.sampled_from(EDGE_STRINGS),
    st.builds(lambda n, sig: f"{n}.{sig}", st.sampled_from(EDGE_NUMERALS), texts),
    st.builds(lambda n, sig: f"{n}.{sig}", texts, texts),
    st.builds(lambda n: f"{n}.AAAA", integers),
    st.text(st.characters(codec="utf-8"), max_size=60),
).filter(lambda c: len(cookie_header(c)) < 8000)  # aiohttp's header limit answers 400 itself


@FUZZ
@given(cookie=COOKIES)
async def test_login_cookie_answers_anything(private_server: Server, cookie: str) -> None:
    """Whatever the cookie holds, a page is a redirect to the login form, the API a 401 and
    Socket.IO a refusal: never a server error."""
    header = cookie_header(cookie)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            private_server.url + "/", headers={"Cookie": header}, allow_redirects=False
        ) as r:
            assert r.status == 303, r.status
        async with http.get(private_server.url + "/api/rooms", headers={"Cookie": header}) as r:
            assert r.status == 401, r.status
    client = Client(headers={"Cookie": header})
    try:
        assert await client.connect_refused(private_server.url) == "access token required"
    finally:
        await client.close()
    assert not private_server.bad_log_lines(), private_server.log()
