"""RoomFeed through its public methods: id order, gaps filled from the store, repeats
dropped, and the join gate (history, then every later message exactly once).

The feed is the one the server built, in this process, over a real SQLite store, with real
Socket.IO clients as its members. Tests hand it committed messages themselves, in the
orders that Redis and the store can produce, and watch what the clients receive.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from chatapp.app import create_app
from chatapp.feed import RoomFeed
from chatapp.keys import handlers_key, store_key
from chatapp.settings import load_settings
from chatapp.store import MessageStore

from .support import Client


def room_feed(app: web.Application) -> RoomFeed:
    """The feed under test: the one ``create_app`` built and wired into the server."""
    return app[handlers_key].feed


@dataclass
class Served:
    url: str
    feed: RoomFeed
    store: MessageStore
    clients: list[Client] = field(default_factory=list)

    async def member(self, room: str) -> Client:
        """A client connected to ``room``: live in the feed once its welcome is here."""
        client = Client()
        self.clients.append(client)
        await client.connect(self.url, room=room, name="member")
        return client

    def receive(self, msg: dict[str, Any]) -> None:
        """Hand ``msg`` to the feed as the client manager does: for the room it was
        published to (its own)."""
        self.feed.receive(msg["room"], msg)

    def receive_change(self, change: dict[str, Any]) -> None:
        """Hand a change to the feed as the client manager does."""
        self.feed.receive_change(change["room"], change)

    async def delete(self, room: str, msg_id: int) -> dict[str, Any]:
        """Delete a message in the store without handing the change to the feed."""
        deleted = await self.store.delete(room, msg_id)
        assert deleted is not None and deleted[1]
        return deleted[0].to_dict()

    async def commit(self, room: str, count: int = 1) -> list[dict[str, Any]]:
        """Store ``count`` messages in ``room`` without handing them to the feed (as when
        another process stored them and their fan-out has not arrived yet)."""
        out = []
        for _ in range(count):
            msg, _ = await self.store.add(room, "ann", f"text {len(out)}")
            out.append(msg.to_dict())
        return out


def ids(client: Client, room: str) -> list[int]:
    return [m["id"] for m in client.of("message") if m["room"] == room]


async def received(client: Client, room: str, last_id: int) -> list[int]:
    """Wait for message ``last_id`` of ``room``; the ids received in that room by then.

    Everything the server sent the client before that message has arrived, so a repeat
    or a wrong order before it shows in the result.
    """
    await client.wait_for("message", lambda m: m["room"] == room and m["id"] == last_id)
    return ids(client, room)


@pytest.fixture
async def served(
    tmp_path: Path, packet_json: None, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Served]:
    """The server in this process and event loop; no ERROR may be logged meanwhile."""
    settings = load_settings(["--db", str(tmp_path / "chat.db"), "--port", "0"], environ={})
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    caplog.set_level(logging.INFO, logger="chatapp")
    it = Served(f"http://127.0.0.1:{port}", room_feed(app), app[store_key])
    try:
        yield it
    finally:
        for client in it.clients:
            await client.close()
        await runner.cleanup()
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert not errors, errors


# -- order, gaps and repeats -----------------------------------------------------------------


async def test_messages_arriving_out_of_order_are_delivered_in_id_order(served: Served) -> None:
    member = await served.member("order")
    m1, m2, m3, m4 = await served.commit("order", 4)
    for msg in (m3, m2, m4, m1):  # as they may come from several processes through Redis
        served.receive(msg)
    assert await received(member, "order", 4) == [1, 2, 3, 4]


async def test_a_gap_waits_and_is_filled_from_the_store(served: Served) -> None:
    member = await served.member("gap")
    msgs = await served.commit("gap", 5)
    # 1-4 never come from the fan-out (lost while Redis was away): only 5 does.
    served.receive(msgs[4])
    assert await received(member, "gap", 5) == [1, 2, 3, 4, 5]
    # The stream goes on from there.
    (m6,) = await served.commit("gap")
    served.receive(m6)
    assert await received(member, "gap", 6) == [1, 2, 3, 4, 5, 6]


async def test_a_gap_longer_than_one_store_read_is_filled_in_order(served: Served) -> None:
    member = await served.member("long-gap")
    msgs = await served.commit("long-gap", 1207)
    served.receive(msgs[-1])
    assert await received(member, "long-gap", 1207) == list(range(1, 1208))


async def test_a_repeated_message_is_delivered_once(served: Served) -> None:
    member = await served.member("repeats")
    m1, m2, m3, m4 = await served.commit("repeats", 4)
    # 1 twice; 3 held behind the gap at 2, and repeated while held; 2 comes from the store.
    for msg in (m1, m1, m3, m3):
        served.receive(msg)
    assert await received(member, "repeats", 3) == [1, 2, 3]
    # The gap's message arriving late from the fan-out, and older repeats.
    for msg in (m2, m3, m1):
        served.receive(msg)
    served.receive(m4)
    assert await received(member, "repeats", 4) == [1, 2, 3, 4]


async def test_resync_delivers_what_the_store_has_beyond_the_feed(served: Served) -> None:
    """After the fan-out was deaf for a while, nothing shows a gap until the next message;
    resync compares each room with the store."""
    member = await served.member("deaf")
    first = await served.commit("deaf")
    served.receive(first[0])
    await served.commit("deaf", 3)  # published while this process heard nothing
    served.feed.resync()
    assert await received(member, "deaf", 4) == [1, 2, 3, 4]


async def test_other_rooms_messages_do_not_reach_a_member(served: Served) -> None:
    here = await served.member("here")
    (elsewhere,) = await served.commit("elsewhere")
    served.receive(elsewhere)  # nobody in that room in this process
    (mine,) = await served.commit("here")
    served.receive(mine)
    await received(here, "here", 1)
    assert [m["room"] for m in here.of("message")] == ["here"]


# -- changes -------------------------------------------------------------------------------------


def timeline(client: Client, room: str) -> list[tuple[str, int, int]]:
    """(event, message id, rev) of every message and change ``client`` got in ``room``."""
    return [
        (name, data["id"], data.get("rev", 0))
        for name, data in client.events
        if name in ("message", "changed") and data["room"] == room
    ]


async def changed(client: Client, room: str, rev: int) -> list[tuple[str, int, int]]:
    """Wait for change ``rev`` of ``room``; everything received in the room by then."""
    await client.wait_for("changed", lambda c: c["room"] == room and c["rev"] == rev)
    return timeline(client, room)


async def test_changes_arriving_out_of_order_are_delivered_in_rev_order_once(
    served: Served,
) -> None:
    member = await served.member("edits")
    for msg in await served.commit("edits", 3):
        served.receive(msg)
    c1, c2, c3 = [await served.delete("edits", i) for i in (2, 1, 3)]
    for change in (c3, c2, c2, c1, c3):  # as several processes may publish them
        served.receive_change(change)
    assert await changed(member, "edits", 3) == [
        ("message", 1, 0),
        ("message", 2, 0),
        ("message", 3, 0),
        ("changed", 2, 1),
        ("changed", 1, 2),
        ("changed", 3, 3),
    ]


async def test_a_lost_change_is_filled_from_the_store(served: Served) -> None:
    member = await served.member("lost")
    for msg in await served.commit("lost", 2):
        served.receive(msg)
    await served.delete("lost", 1)  # its fan-out never arrives
    served.receive_change(await served.delete("lost", 2))
    assert await changed(member, "lost", 2) == [
        ("message", 1, 0),
        ("message", 2, 0),
        ("changed", 1, 1),
        ("changed", 2, 2),
    ]
    deleted = member.of("changed")[0]
    assert deleted["deleted"] is True and deleted["text"] == ""


async def test_a_change_waits_for_its_message(served: Served) -> None:
    """A deletion that overtakes its message (through another process) is delivered
    after the message, never before: a client cannot apply a change to what it has not got."""
    member = await served.member("early")
    m1, m2 = await served.commit("early", 2)
    served.receive(m1)
    served.receive_change(await served.delete("early", 2))
    served.receive(m2)  # the original, as published when it was sent
    assert await changed(member, "early", 1) == [
        ("message", 1, 0),
        ("message", 2, 0),
        ("changed", 2, 1),
    ]


async def test_resync_delivers_changes_the_store_has_beyond_the_feed(served: Served) -> None:
    member = await served.member("deaf-changes")
    for msg in await served.commit("deaf-changes", 2):
        served.receive(msg)
    await served.delete("deaf-changes", 2)  # published while this process heard nothing
    served.feed.resync()
    assert (await changed(member, "deaf-changes", 1))[-1] == ("changed", 2, 1)


async def test_a_member_joining_while_changes_flow_misses_none(served: Served) -> None:
    """The page shows the changes up to the rev read before it; those delivered during the
    join follow the welcome; a change whose fan-out is late comes live."""
    newcomer, sid = await joining(served, "home")
    for msg in await served.commit("flow", 4):
        served.receive(msg)  # nobody live in the room yet: nothing delivered
    served.feed.begin_join(sid, "flow")
    served.receive_change(await served.delete("flow", 1))  # before the reads: in the page
    rev = await served.store.last_rev("flow")
    page = await served.store.recent("flow", 50)
    c2 = await served.delete("flow", 2)  # after the reads: buffered, follows the welcome
    served.receive_change(c2)
    c3 = await served.delete("flow", 3)  # its fan-out still on the way
    joined = served.feed.complete_join(sid, "flow", page, 4, None, 50, rev)
    assert joined is not None
    history, _, follow = joined
    assert rev == 1 and history[0]["deleted"] is True and history[1].get("deleted") is None
    assert follow == [c2]
    served.receive_change(c3)
    assert (await changed(newcomer, "flow", 3))[-1] == ("changed", 3, 3)
    served.feed.leave(sid, "flow")


# -- the join gate -----------------------------------------------------------------------------


async def joining(served: Served, home: str) -> tuple[Client, str]:
    """A connected client in room ``home`` and its sid, to join other rooms through the feed."""
    client = await served.member(home)
    sid = client.sio.get_sid()
    assert sid is not None
    return client, sid


async def test_a_member_joining_while_messages_flow_gets_history_then_each_later_one_once(
    served: Served,
) -> None:
    """Messages delivered during the join, before and after its history read, and later
    ones: each reaches the newcomer exactly once, in the welcome's history or live."""
    live = await served.member("gate")
    for msg in await served.commit("gate", 3):
        served.receive(msg)
    newcomer, sid = await joining(served, "home")

    served.feed.begin_join(sid, "gate")
    (m4,) = await served.commit("gate")
    served.receive(m4)  # delivered before the history read: in the page too
    page = await served.store.recent("gate", 50)
    (m5,) = await served.commit("gate")
    served.receive(m5)  # delivered after the history read: only the gate has it
    (m6,) = await served.commit("gate")  # committed, its fan-out still on the way
    joined = served.feed.complete_join(sid, "gate", page, page.messages[-1].id, None, 50)
    assert joined is not None
    history, has_more, _ = joined
    assert [m["id"] for m in history] == [1, 2, 3, 4, 5]
    assert history[3:] == [m4, m5] and has_more is False
    served.receive(m6)
    served.receive(m4)  # a late repeat
    (m7,) = await served.commit("gate")
    served.receive(m7)
    assert await received(newcomer, "gate", 7) == [6, 7]
    assert await received(live, "gate", 7) == [1, 2, 3, 4, 5, 6, 7]
    served.feed.leave(sid, "gate")


async def test_history_stops_where_the_live_stream_is(served: Served) -> None:
    """A message committed before the history read but not yet delivered here comes live,
    as to every other member, not in the history as well."""
    live = await served.member("cut")
    for msg in await served.commit("cut", 2):
        served.receive(msg)
    newcomer, sid = await joining(served, "home")
    served.feed.begin_join(sid, "cut")
    (m3,) = await served.commit("cut")  # its fan-out is still on the way
    page = await served.store.recent("cut", 50)
    assert [m.id for m in page.messages] == [1, 2, 3]
    joined = served.feed.complete_join(sid, "cut", page, 3, None, 50)
    assert joined is not None and [m["id"] for m in joined[0]] == [1, 2]
    served.receive(m3)
    assert await received(newcomer, "cut", 3) == [3]
    assert await received(live, "cut", 3) == [1, 2, 3]
    served.feed.leave(sid, "cut")


async def test_the_first_member_continues_from_the_history_it_read(served: Served) -> None:
    """Nobody here is in the room yet: the feed's stream starts at the first joiner's
    history, with what arrived during the join buffered and nothing sent twice."""
    first, sid = await joining(served, "home")
    m1, m2 = await served.commit("fresh", 2)
    served.feed.begin_join(sid, "fresh")
    served.receive(m1)  # buffered: nobody is live yet
    page = await served.store.recent("fresh", 50)
    (m3,) = await served.commit("fresh")  # after the history read, its fan-out on the way
    joined = served.feed.complete_join(sid, "fresh", page, 2, None, 50)
    assert joined is not None
    assert [m["id"] for m in joined[0]] == [1, 2]
    served.receive(m2)  # in the history already
    served.receive(m3)
    assert await received(first, "fresh", 3) == [3]
    served.feed.leave(sid, "fresh")


async def test_a_member_joining_while_a_gap_is_open_gets_each_message_once(
    served: Served,
) -> None:
    live = await served.member("gap-join")
    msgs = await served.commit("gap-join", 4)
    served.receive(msgs[0])
    served.receive(msgs[3])  # held: 2 and 3 are missing, the store fills them shortly
    newcomer, sid = await joining(served, "home")
    served.feed.begin_join(sid, "gap-join")
    page = await served.store.recent("gap-join", 50)
    joined = served.feed.complete_join(sid, "gap-join", page, page.messages[-1].id, None, 50)
    assert joined is not None
    history = [m["id"] for m in joined[0]]
    (m5,) = await served.commit("gap-join")
    served.receive(m5)
    assert history + await received(newcomer, "gap-join", 5) == [1, 2, 3, 4, 5]
    assert await received(live, "gap-join", 5) == [1, 2, 3, 4, 5]
    served.feed.leave(sid, "gap-join")


async def test_a_member_that_left_gets_nothing(served: Served) -> None:
    live = await served.member("gone")
    client, sid = await joining(served, "home")
    # Left while joining: the join does not complete.
    served.feed.begin_join(sid, "gone")
    served.feed.leave(sid, "gone")
    page = await served.store.recent("gone", 50)
    assert served.feed.complete_join(sid, "gone", page, 0, None, 50) is None
    (m1,) = await served.commit("gone")
    served.receive(m1)
    # Joined, then left.
    served.feed.begin_join(sid, "gone")
    page = await served.store.recent("gone", 50)
    assert served.feed.complete_join(sid, "gone", page, 1, None, 50) is not None
    served.feed.leave(sid, "gone")
    (m2,) = await served.commit("gone")
    served.receive(m2)
    assert await received(live, "gone", 2) == [1, 2]
    # A message of the client's own room, sent after, proves nothing of "gone" came first.
    (mine,) = await served.commit("home")
    served.receive(mine)
    await received(client, "home", 1)
    assert ids(client, "gone") == []


async def test_since_limits_the_joiners_history_to_what_it_missed(served: Served) -> None:
    live = await served.member("since")
    msgs = await served.commit("since", 6)
    for msg in msgs:
        served.receive(msg)
    await received(live, "since", 6)
    _, sid = await joining(served, "home")
    served.feed.begin_join(sid, "since")
    page = await served.store.recent("since", 500, after=4)
    joined = served.feed.complete_join(sid, "since", page, 6, 4, 500)
    assert joined is not None and [m["id"] for m in joined[0]] == [5, 6]
    served.feed.leave(sid, "since")


async def test_a_joiner_ahead_of_this_process_gets_nothing_it_has(served: Served) -> None:
    """A client that saw up to 6 through another process reconnects here while this
    process has delivered only up to 4 (the fan-out is behind): it must get neither 5
    nor 6 again, only what comes after."""
    live = await served.member("ahead")
    m1, m2, m3, m4, m5, m6 = await served.commit("ahead", 6)
    for msg in (m1, m2, m3, m4):
        served.receive(msg)
    client, sid = await joining(served, "home")
    served.feed.begin_join(sid, "ahead")
    served.receive(m5)  # buffered for the joiner
    page = await served.store.recent("ahead", 500, after=6)
    joined = served.feed.complete_join(sid, "ahead", page, 6, 6, 500)
    assert joined is not None and joined[0] == []
    served.receive(m6)
    (m7,) = await served.commit("ahead")
    served.receive(m7)
    assert await received(live, "ahead", 7) == [1, 2, 3, 4, 5, 6, 7]
    assert await received(client, "ahead", 7) == [7]
    served.feed.leave(sid, "ahead")
