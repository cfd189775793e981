"""Sending messages: storage before broadcast, delivery, order, limits, idempotency."""

from __future__ import annotations

import asyncio
import time

from .support import Server


async def test_everyone_in_the_room_gets_the_message_once_sender_included(
    server: Server, make_client
) -> None:
    a, b, c = make_client(), make_client(), make_client()
    await a.connect(server.url, room="alpha", name="ann")
    await b.connect(server.url, room="alpha", name="bo")
    await c.connect(server.url, room="alpha", name="cy")
    before = int(time.time() * 1000)
    ack = await a.send("hello room")
    assert ack["ok"] is True
    msg = ack["message"]
    assert msg["room"] == "alpha" and msg["name"] == "ann" and msg["text"] == "hello room"
    assert isinstance(msg["id"], int) and msg["id"] >= 1
    assert before - 1000 <= msg["ts"] <= int(time.time() * 1000) + 1000
    for client in (a, b, c):
        assert await client.wait_for("message") == msg
    # A later message arrives after the first, so any duplicate would have shown up by now.
    await a.send("second")
    for client in (a, b, c):
        await client.wait_for("message", count=2)
        assert [m["text"] for m in client.of("message")] == ["hello room", "second"]


async def test_other_rooms_never_see_it(server: Server, make_client) -> None:
    a1, a2, b1 = make_client(), make_client(), make_client()
    await a1.connect(server.url, room="a", name="ann")
    await a2.connect(server.url, room="a", name="al")
    await b1.connect(server.url, room="b", name="bo")
    await a1.send("only for a")
    await a2.wait_for("message")
    # b1's own message is queued after anything the server sent it before.
    await b1.send("b speaking")
    await b1.wait_for("message")
    assert [m["text"] for m in b1.of("message")] == ["b speaking"]
    assert [m["text"] for m in a1.of("message")] == ["only for a"]


async def test_ids_increase_within_a_room(server: Server, make_client) -> None:
    a = make_client()
    await a.connect(server.url, room="ids")
    ids = [(await a.send(f"n{i}"))["message"]["id"] for i in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == 10
    other = make_client()
    await other.connect(server.url, room="ids-other")
    first_elsewhere = (await other.send("x"))["message"]["id"]
    assert first_elsewhere == 1  # ids count per room


async def test_concurrent_senders_all_members_see_the_same_order_once(
    server: Server, make_client
) -> None:
    senders = [make_client() for _ in range(4)]
    watchers = [make_client() for _ in range(2)]
    for i, client in enumerate(senders + watchers):
        await client.connect(server.url, room="busy", name=f"user{i}")

    async def burst(client, tag: str) -> list[int]:
        acks = await asyncio.gather(*(client.send(f"{tag}-{n}") for n in range(25)))
        return [ack["message"]["id"] for ack in acks]

    acked = await asyncio.gather(*(burst(s, f"s{i}") for i, s in enumerate(senders)))
    total = sum(len(ids) for ids in acked)
    all_ids = sorted(i for ids in acked for i in ids)
    assert all_ids == list(range(1, total + 1))
    orders = []
    for client in senders + watchers:
        await client.wait_for("message", count=total)
        ids = client.message_ids()
        assert ids == list(range(1, total + 1)), "each message once, in id order"
        orders.append([m["text"] for m in client.of("message")])
    assert all(order == orders[0] for order in orders)


async def test_one_senders_messages_keep_their_order(server: Server, make_client) -> None:
    a = make_client()
    await a.connect(server.url, room="order")
    # Fire 30 events without waiting for acks: they must be handled in arrival order.
    acks: list[dict] = []
    done = asyncio.Event()

    def on_ack(ack: dict) -> None:
        acks.append(ack)
        if len(acks) == 30:
            done.set()

    for n in range(30):
        await a.sio.emit("message", {"text": f"#{n}"}, callback=on_ack)
    await asyncio.wait_for(done.wait(), 10)
    by_text = {ack["message"]["text"]: ack["message"]["id"] for ack in acks}
    assert [by_text[f"#{n}"] for n in range(30)] == list(range(1, 31))


async def test_text_is_stored_verbatim(server: Server, make_client) -> None:
    a, b = make_client(), make_client()
    await a.connect(server.url, name="ann")
    await b.connect(server.url, name="bo")
    text = "  <img src=x onerror=alert(1)> &amp; <script>x</script>\n\ttabs  🎉 "
    ack = await a.send(text)
    assert ack["message"]["text"] == text
    assert (await b.wait_for("message"))["text"] == text
    history = await b.call("history", {})
    assert history["messages"][-1]["text"] == text


async def test_text_length_limits(server: Server, make_client) -> None:
    a = make_client()
    await a.connect(server.url)
    assert (await a.send("x" * 2000))["ok"] is True
    padded = "  " + "y" * 1996 + "  "
    assert (await a.send(padded))["message"]["text"] == padded  # stored as sent, 2000 in all
    # The limit counts what is stored and delivered: surrounding whitespace included, so a
    # megabyte of spaces around "hi" is not a 2-character message.
    for bad in ("", "   \n\t ", "z" * 2001, "  " + "y" * 1997 + "  ", " " * 4000 + "hi"):
        ack = await a.send(bad)
        assert ack == {"ok": False, "error": "invalid text: must be 1-2000 characters"}
    assert [m["text"] for m in (await a.call("history", {}))["messages"]] == ["x" * 2000, padded]


async def test_huge_text_is_rejected_without_dropping_the_connection(
    server: Server, make_client
) -> None:
    a = make_client()
    await a.connect(server.url)
    ack = await a.send("x" * 60_000)  # under the 64 KiB frame limit
    assert ack["ok"] is False and "1-2000" in ack["error"]
    assert (await a.send("still connected"))["ok"] is True


async def test_client_id_makes_retries_idempotent(server: Server, make_client) -> None:
    a, b = make_client(), make_client()
    await a.connect(server.url, room="idem", name="ann")
    await b.connect(server.url, room="idem", name="bo")
    first = await a.send("once", client_id="c-123")
    retry = await a.send("once", client_id="c-123")
    assert retry == first
    await a.send("after")
    await b.wait_for("message", count=2)
    assert [m["text"] for m in b.of("message")] == ["once", "after"]
    # The same client_id from another name is another message.
    other = await b.send("mine", client_id="c-123")
    assert other["message"]["id"] != first["message"]["id"]
    # ...and from the same name after reconnecting it is still the stored one.
    await a.close()
    again = make_client()
    await again.connect(server.url, room="idem", name="ann")
    assert (await again.send("once", client_id="c-123")) == first


async def test_a_retry_after_a_rename_is_still_the_same_message(
    server: Server, make_client
) -> None:
    """A page that lost an ack while offline, and whose person renamed meanwhile, retries
    under the new name: the sender id (from the browser's key) is what the retry is
    recognised by, so it is not stored twice."""
    key = "ann-browser-key-0001"
    first_tab, watcher = make_client(), make_client()
    await first_tab.connect(server.url, room="idem2", name="ann", key=key)
    await watcher.connect(server.url, room="idem2", name="watcher")
    first = await first_tab.send("lost ack", client_id="c-9")
    await first_tab.close()
    again = make_client()
    await again.connect(server.url, room="idem2", name="ann", key=key)
    assert (await again.call("rename", {"name": "Annie"}))["ok"] is True
    assert (await again.send("lost ack", client_id="c-9")) == first
    # Someone else with the same client id and name is someone else.
    other = make_client()
    await other.connect(server.url, room="idem2", name="ann", key="other-browser-key-01")
    assert (await other.send("mine", client_id="c-9"))["message"]["id"] != first["message"]["id"]
    texts = [m["text"] for m in (await watcher.call("history", {}))["messages"]]
    assert texts == ["lost ack", "mine"]


async def test_rate_limit(start_server, make_client) -> None:
    server = await start_server("--message-burst", "3", "--message-rate", "1")
    a = make_client()
    await a.connect(server.url)
    for n in range(3):
        assert (await a.send(f"ok {n}"))["ok"] is True
    ack = await a.send("too many")
    assert ack["ok"] is False and ack["error"] == "rate limited"
    assert 0 < ack["retry_after"] <= 1.0
    # Another connection has its own bucket.
    b = make_client()
    await b.connect(server.url)
    assert (await b.send("fresh bucket"))["ok"] is True


async def test_rate_limit_from_the_environment(start_server, make_client) -> None:
    server = await start_server(env={"CHATAPP_MESSAGE_BURST": "1", "CHATAPP_MESSAGE_RATE": "0.5"})
    a = make_client()
    await a.connect(server.url)
    assert (await a.send("one"))["ok"] is True
    ack = await a.send("two")
    assert ack["error"] == "rate limited" and 1.0 < ack["retry_after"] <= 2.0
