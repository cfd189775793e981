"""Any malformed payload gets {ok: false, error}, never a disconnect, and others keep chatting."""

from __future__ import annotations

import asyncio

import pytest

from .support import Server

NESTED: object = {"text": [[[[{"a": [1, {"b": None}]}]]]]}
for _ in range(50):
    NESTED = {"x": [NESTED]}

BAD_PAYLOADS = [
    pytest.param("a string", id="string"),
    pytest.param(123, id="number"),
    pytest.param(None, id="null"),
    pytest.param([1, 2, 3], id="list"),
    pytest.param(True, id="bool"),
    pytest.param({}, id="empty-object"),
    pytest.param({"text": 5, "typing": "yes", "name": {}, "before": "x", "limit": 1e9}, id="types"),
    # Far over the text and name limits, under the 64 KiB frame limit.
    pytest.param({"text": "x" * 30_000, "name": "x" * 30_000}, id="60KB"),
    pytest.param(NESTED, id="nested-junk"),
    pytest.param(b"\x00\x01binary", id="binary"),
]
EVENTS = ["message", "typing", "history", "rename"]


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("payload", BAD_PAYLOADS)
async def test_bad_payload_gets_a_clear_error(
    server: Server, make_client, event: str, payload: object
) -> None:
    a = make_client()
    await a.connect(server.url, name="ann")
    ack = await a.call(event, payload)
    if event == "history" and isinstance(payload, dict) and not {"before", "limit"} & set(payload):
        # Unknown fields are ignored, so this is a valid request for the newest messages.
        assert ack["ok"] is True
        return
    assert ack["ok"] is False
    assert isinstance(ack["error"], str) and ack["error"]
    assert (await a.send("still connected"))["ok"] is True


@pytest.mark.parametrize("event", EVENTS)
async def test_no_payload_and_extra_arguments(server: Server, make_client, event: str) -> None:
    a = make_client()
    await a.connect(server.url)
    ack = await a.sio.call(event, timeout=10)  # no data at all
    assert ack == {"ok": False, "error": "invalid payload: expected one object"}
    ack = await a.call(event, {"text": "hi", "typing": True, "name": "x"}, "extra")
    assert ack == {"ok": False, "error": "invalid payload: expected one object"}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"text": "hi", "client_id": 5}, "invalid client_id"),
        ({"text": "hi", "client_id": ""}, "invalid client_id"),
        ({"text": "hi", "client_id": "x" * 65}, "invalid client_id"),
        ({"text": "\ud800 lone surrogate"}, "invalid text: not valid Unicode"),
    ],
)
async def test_bad_message_fields(server: Server, make_client, payload, error) -> None:
    a = make_client()
    await a.connect(server.url)
    ack = await a.call("message", payload)
    assert ack["ok"] is False and ack["error"].startswith(error)


async def test_unknown_event_gets_an_error(server: Server, make_client) -> None:
    a = make_client()
    await a.connect(server.url)
    assert await a.call("no-such-event", {"x": 1}) == {"ok": False, "error": "unknown event"}
    assert (await a.send("fine"))["ok"] is True


async def test_events_without_ack_callback_do_not_disturb_anyone(
    server: Server, make_client
) -> None:
    bad, good, watcher = make_client(), make_client(), make_client()
    await bad.connect(server.url, name="bad")
    await good.connect(server.url, name="good")
    await watcher.connect(server.url, name="watcher")
    for event in [*EVENTS, "unknown"]:
        for payload in (None, "junk", {"text": ""}, [1], {"typing": "x"}, {"name": ""}):
            await bad.sio.emit(event, payload)
    # A valid message without an ack callback is still delivered.
    await bad.sio.emit("message", {"text": "no ack wanted"})
    await watcher.wait_for("message", lambda m: m["text"] == "no ack wanted")
    # Meanwhile others chat normally.
    acks = await asyncio.gather(*(good.send(f"g{i}") for i in range(5)))
    assert all(ack["ok"] for ack in acks)
    await watcher.wait_for("message", count=6)
    assert bad.sio.connected
    assert (await bad.send("and an acked one"))["ok"] is True


async def test_history_argument_errors(server: Server, make_client) -> None:
    a = make_client()
    await a.connect(server.url)
    for payload, error in [
        ({"before": 0}, "invalid before"),
        ({"before": -3}, "invalid before"),
        ({"before": "10"}, "invalid before"),
        ({"limit": 0}, "invalid limit: must be an integer 1-100"),
        ({"limit": 101}, "invalid limit: must be an integer 1-100"),
        ({"limit": 2.5}, "invalid limit"),
    ]:
        ack = await a.call("history", payload)
        assert ack["ok"] is False and ack["error"].startswith(error), payload
