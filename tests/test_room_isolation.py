"""Rooms are isolated: a client in one room never receives an event of another room, of
any kind the server sends to a room (docs/protocol.md, *Server events*), from its own
process or, in a cluster, from another one."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
import socketio

from .conftest import NO_RATE_LIMITS, ClientFactory, ServerFactory
from .services import REDIS_URL, StartCluster
from .support import Client, Server

#: Every name and room of the busy room starts with this, so that anything of it that
#: reaches the other room shows, whatever the event.
BUSY = "busy"

Deployment = Callable[[], Awaitable[list[Server]]]


@pytest.fixture(params=["one process", "two processes"])
def deployment(request: pytest.FixtureRequest, start_server: ServerFactory) -> Deployment:
    """Two servers to connect to: the same one twice, or two processes of one cluster."""

    if request.param == "two processes":
        cluster: StartCluster = request.getfixturevalue("cluster")
        return lambda: cluster(2)

    async def one() -> list[Server]:
        server = await start_server(*NO_RATE_LIMITS)
        return [server, server]

    return one


async def test_no_event_of_one_room_reaches_another(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    first, second = await deployment()
    # The quiet room has a member on each process, and someone who speaks last.
    quiet = [make_client(), make_client()]
    await quiet[0].connect(first.url, room="quiet", name="q-first")
    await quiet[1].connect(second.url, room="quiet", name="q-second")
    speaker = make_client()
    await speaker.connect(first.url, room="quiet", name="q-speaker")
    # In the busy room, a witness on the second process sees each event happen.
    witness = make_client()
    await witness.connect(second.url, room=BUSY, name=f"{BUSY}-witness")
    actor = make_client()
    await actor.connect(first.url, room=BUSY, name=f"{BUSY}-actor")
    await witness.wait_for("presence", lambda p: p.get("joined") == f"{BUSY}-actor")

    await actor.send("hello")
    await witness.wait_for("message", lambda m: m["text"] == "hello")
    assert (await actor.call("typing", {"typing": True}))["ok"]
    await witness.wait_for("typing", lambda t: t["typing"] is True)
    assert (await actor.call("typing", {"typing": False}))["ok"]
    await witness.wait_for("typing", lambda t: t["typing"] is False)
    assert (await actor.call("rename", {"name": f"{BUSY}-renamed"}))["ok"]
    await witness.wait_for("presence", lambda p: p.get("joined") == f"{BUSY}-renamed")
    assert (await actor.call("typing", {"typing": True}))["ok"]
    await witness.wait_for("typing", lambda t: t["typing"] is True, count=2)
    await actor.close()  # typing: false, then presence: left
    await witness.wait_for("presence", lambda p: p.get("left") == f"{BUSY}-renamed")
    assert [e["typing"] for e in witness.of("typing")] == [True, False, True, False]

    # Sent after all of that by the first process, whence every busy event came: each
    # quiet member has received whatever the busy room leaked to it before this.
    await speaker.send("marker")
    for client in (*quiet, speaker):
        await client.wait_for("message", lambda m: m["text"] == "marker")
        leaked = [(name, data) for name, data in client.events if BUSY in repr(data)]
        assert leaked == [], leaked


async def test_a_message_goes_to_the_room_it_was_published_to(
    cluster: StartCluster, redis_prefix: str, make_client: ClientFactory
) -> None:
    """Every process hands a message to the members of the room it was published to (the
    room of python-socketio's emit), and to nobody else, whatever the message says.

    A third process publishes on the cluster's channel as the servers do, through
    python-socketio's own manager (write-only): a message to room A whose own ``room``
    field names room B. Routing on anything but the published room shows here.
    """
    first, second = await cluster(2)
    members: dict[str, list[Client]] = {"route-a": [], "route-b": []}
    for room, clients in members.items():
        for number, server in enumerate((first, second)):
            client = make_client()
            await client.connect(server.url, room=room, name=f"{room}-{number}")
            clients.append(client)

    outsider = socketio.AsyncRedisManager(
        REDIS_URL, channel=f"{redis_prefix}:socketio", write_only=True
    )
    msg = {
        "id": 1,
        "room": "route-b",
        "name": "outsider",
        "text": "published to route-a",
        "ts": time.time(),
        "user_id": "outsider",
    }
    try:
        await outsider.emit("message", msg, room="route-a", namespace="/")
    finally:
        await outsider.redis.aclose()
    for client in members["route-a"]:
        await client.wait_for("message", lambda m: m["text"] == "published to route-a")

    # Sent after it, through the first process, whence room B's members on both processes
    # have received whatever the outsider's message could have brought them.
    await members["route-b"][0].send("marker")
    for client in members["route-b"]:
        await client.wait_for("message", lambda m: m["text"] == "marker")
        assert [m["text"] for m in client.of("message")] == ["marker"]
