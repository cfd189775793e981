"""``--metrics``: ``GET /metrics`` in the Prometheus text format, what each figure counts,
and who may read it."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerFactory
from .services import StartCluster
from .support import Client, Server


async def scrape(server: Server, **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/metrics", headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def figures(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's metrics, by name and labels."""
    status, text = await scrape(server)
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def figure(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_there_are_no_metrics_unless_the_operator_asks(start_server: ServerFactory) -> None:
    server = await start_server()
    assert (await scrape(server))[0] == 404


async def test_metrics_count_messages_deliveries_connections_and_commits(
    start_server: ServerFactory, make_client
) -> None:
    server = await start_server("--metrics")
    ann: Client = make_client()
    bob: Client = make_client(transports=["polling"])
    await ann.connect(server.url, room="secret-plans", name="zelda")
    await bob.connect(server.url, room="secret-plans", name="bob")
    for text in ("one", "two", "three"):
        assert (await ann.send(text))["ok"] is True
    assert (await ann.send(""))["ok"] is False
    assert (await ann.send("x" * 5000))["ok"] is False
    assert (await ann.call("message", {"text": "hi", "room": "elsewhere"}))["ok"] is False
    await bob.wait_for("message", count=3)

    samples = await figures(server)
    assert figure(samples, "chatapp_messages_accepted_total") == 3
    assert figure(samples, "chatapp_messages_rejected_total", reason="invalid text") == 2
    assert figure(samples, "chatapp_messages_rejected_total", reason="not in") == 1
    assert figure(samples, "chatapp_deliveries_total") == 6  # 3 messages x 2 members
    assert figure(samples, "chatapp_store_commit_seconds_count") == 3
    assert figure(samples, "chatapp_connections", transport="websocket") == 1
    assert figure(samples, "chatapp_connections", transport="polling") == 1
    assert figure(samples, "chatapp_rooms") == 1
    assert figure(samples, "chatapp_send_queue_drops_total", bound="packets") == 0
    assert figure(samples, "chatapp_send_queue_bytes") >= 0
    assert figure(samples, "chatapp_event_loop_lag_seconds") >= 0
    # No room, name or address is a label: who talks where is nobody's business.
    _, text = await scrape(server)
    assert "secret-plans" not in text and "zelda" not in text and "127.0.0.1" not in text


async def test_on_a_private_server_metrics_need_the_token(start_server: ServerFactory) -> None:
    server = await start_server("--metrics", "--access-token", "let me in")
    assert (await scrape(server))[0] == 401
    status, text = await scrape(server, Authorization="Bearer let me in")
    assert status == 200 and "chatapp_messages_accepted_total" in text


async def test_metrics_of_the_redis_fan_out(cluster: StartCluster, make_client) -> None:
    one, two = await cluster(2, "--metrics")
    sender: Client = make_client()
    listener: Client = make_client()
    await sender.connect(one.url, room="team", name="ann")
    await listener.connect(two.url, room="team", name="bob")
    sent = (await sender.send("across"))["message"]
    await listener.wait_for("message", lambda m: m["id"] == sent["id"])

    on_one, on_two = await figures(one), await figures(two)
    # Published on Redis by the process that stored it (its lag measured), delivered here.
    assert figure(on_one, "chatapp_redis_publish_lag_seconds_count") >= 1
    assert figure(on_one, "chatapp_messages_accepted_total") == 1
    assert figure(on_two, "chatapp_messages_accepted_total") == 0
    assert figure(on_two, "chatapp_deliveries_total") == 1
    assert figure(on_one, "chatapp_redis_listener_restarts_total") == 0
