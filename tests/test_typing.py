"""Typing indicators: to others only, cleared on send, on disconnect and after a timeout."""

from __future__ import annotations

from .support import Server


async def _pair(server: Server, make_client, room: str = "t"):
    ann, bo = make_client(), make_client()
    await ann.connect(server.url, room=room, name="ann")
    await bo.connect(server.url, room=room, name="bo")
    return ann, bo


def typing(client, state: bool) -> dict:
    """The ``typing`` event others get from ``client``."""
    user_id = client.of("welcome")[0]["user_id"]
    return {"name": "ann", "user_id": user_id, "typing": state}


async def test_typing_reaches_others_not_the_sender(server: Server, make_client) -> None:
    ann, bo = await _pair(server, make_client)
    other_room = make_client()
    await other_room.connect(server.url, room="elsewhere", name="cy")
    assert await ann.call("typing", {"typing": True}) == {"ok": True}
    assert await bo.wait_for("typing") == typing(ann, True)
    # Anything sent to ann or cy before their own message echo would already be here.
    await ann.send("done typing")
    await other_room.send("hi")
    await other_room.wait_for("message")
    assert ann.of("typing") == []
    assert other_room.of("typing") == []


async def test_typing_false_clears_it(server: Server, make_client) -> None:
    ann, bo = await _pair(server, make_client)
    await ann.call("typing", {"typing": True})
    await ann.call("typing", {"typing": False})
    await bo.wait_for("typing", lambda t: t == typing(ann, False))


async def test_sending_clears_typing(server: Server, make_client) -> None:
    ann, bo = await _pair(server, make_client)
    await ann.call("typing", {"typing": True})
    await ann.send("hello")
    await bo.wait_for("typing", lambda t: t["typing"] is False)
    # Both have arrived (the message may still be on its way when the clear is read).
    await bo.wait_for("message", lambda m: m["text"] == "hello")
    # The clear comes before the message.
    names = [name for name, _ in bo.events if name in ("typing", "message")]
    assert names[-2:] == ["typing", "message"]


async def test_disconnect_clears_typing(server: Server, make_client) -> None:
    ann, bo = await _pair(server, make_client)
    await ann.call("typing", {"typing": True})
    await bo.wait_for("typing")
    await ann.close()
    assert await bo.wait_for("typing", lambda t: t["typing"] is False) == typing(ann, False)


async def test_typing_expires_without_renewal(start_server, make_client) -> None:
    server = await start_server("--typing-timeout", "0.5")
    ann, bo = await _pair(server, make_client)
    await ann.call("typing", {"typing": True})
    await bo.wait_for("typing", lambda t: t["typing"] is True)
    # No renewal: the server itself clears it (the wait is for the event, bounded).
    await bo.wait_for("typing", lambda t: t["typing"] is False, timeout=5)


async def test_repeated_typing_is_not_rebroadcast_every_time(server: Server, make_client) -> None:
    ann, bo = await _pair(server, make_client)
    for _ in range(10):
        await ann.call("typing", {"typing": True})
    await ann.send("sent")
    await bo.wait_for("message")
    assert bo.of("typing") == [typing(ann, True), typing(ann, False)]
