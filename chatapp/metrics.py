"""What an operator scrapes: ``GET /metrics`` in the Prometheus text format
(``--metrics``), through the Prometheus client library.

One :class:`Metrics` per application, with its own registry (never the library's global
one: two apps in one process, as in the tests, keep their figures apart). The parts of
the server that count are handed it: the handlers (messages accepted and refused, store
commit time), the feed (deliveries), the transport guard (send queues given up), the
Redis fan-out (publish lag, listener restarts). What is a state rather than a count
(connections, rooms, queued bytes, event-loop lag) is read when scraped.

No label carries a room, a name or an address: a direct conversation's existence is
nobody's business, and labels must stay few.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .feed import RoomFeed
    from .sessions import Sessions

log = logging.getLogger(__name__)

#: How often the event loop's lag is sampled, in seconds.
LAG_EVERY = 0.5
#: Histogram buckets, in seconds: a commit or a publish takes about a millisecond when all
#: is well; the upper ones show a stalled disk or Redis.
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Distinct refusal reasons kept as labels; later new ones count as "other".
MAX_REASONS = 40
#: A refusal's reason: its text before any detail (a colon, a room's ``#name``, a figure).
_REASON_END = re.compile(r"[:#0-9(]")


def reason_label(error: str) -> str:
    """The label for a refused message: ``"invalid text: must be..."`` -> ``invalid text``,
    ``"not in #ops: ..."`` -> ``not in``; never a room name or a figure."""
    head = _REASON_END.split(error, 1)[0].strip()
    return head[:40] or "other"


class Metrics:
    """The application's counters and histograms, and its registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.messages = Counter(
            "chatapp_messages_accepted", "messages stored and sent to their room", registry=reg
        )
        self.rejected = Counter(
            "chatapp_messages_rejected",
            "messages refused, by reason (the error's text without its details)",
            ["reason"],
            registry=reg,
        )
        self.deliveries = Counter(
            "chatapp_deliveries",
            "messages handed to a connection of this process (one per message and member)",
            registry=reg,
        )
        self.queue_drops = Counter(
            "chatapp_send_queue_drops",
            "connections given up on because their send queue overflowed, by bound",
            ["bound"],
            registry=reg,
        )
        self.commit_seconds = Histogram(
            "chatapp_store_commit_seconds",
            "time from a message's arrival at the store to its commit",
            buckets=SECONDS,
            registry=reg,
        )
        self.publish_lag = Histogram(
            "chatapp_redis_publish_lag_seconds",
            "time from a message's commit to its publication on Redis (several processes)",
            buckets=SECONDS,
            registry=reg,
        )
        self.listener_restarts = Counter(
            "chatapp_redis_listener_restarts",
            "restarts of the Redis listener after it missed its self-check",
            registry=reg,
        )
        self.loop_lag = Gauge(
            "chatapp_event_loop_lag_seconds",
            f"how late a timer of the event loop fired, sampled every {LAG_EVERY} s",
            registry=reg,
        )
        self._reasons: set[str] = set()
        for bound in ("packets", "bytes", "total"):  # sendqueue.OVER_*: shown from 0
            self.queue_drops.labels(bound)

    def refused(self, error: str) -> None:
        """Count a refused message under its reason."""
        reason = reason_label(error)
        if reason not in self._reasons:
            if len(self._reasons) >= MAX_REASONS:
                reason = "other"
            self._reasons.add(reason)
        self.rejected.labels(reason).inc()

    def watch(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Add figures read at each scrape (states such as connections and rooms)."""
        self.registry.register(_Reader(read))

    async def sample_lag(self) -> None:
        """Sample the event loop's lag until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_EVERY)
            self.loop_lag.set(max(0.0, loop.time() - start - LAG_EVERY))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Reader(Collector):
    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield from self._read()

    def describe(self) -> Iterator[Metric]:
        return iter(())


def gauge(name: str, doc: str, value: float) -> Metric:
    """A gauge read at scrape time."""
    return GaugeMetricFamily(name, doc, value=value)


def gauge_by(name: str, doc: str, label: str, values: Mapping[str, float]) -> Metric:
    """A gauge read at scrape time, one value per value of ``label``."""
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def process_figures(sessions: Sessions[Any], feed: RoomFeed) -> Iterator[Metric]:
    """This process's state, read at each scrape."""
    transports = {"websocket": 0, "polling": 0}
    for socket in list(sessions.sio.eio.sockets.values()):
        if not socket.closed:
            transports["websocket" if socket.upgraded else "polling"] += 1
    yield gauge_by(
        "chatapp_connections", "open Engine.IO connections, by transport", "transport", transports
    )
    yield gauge("chatapp_rooms", "rooms with someone in them on this process", feed.rooms)
    yield gauge(
        "chatapp_send_queue_bytes",
        "bytes waiting in all connections' send queues (a packet for many counts once)",
        sessions.backlog.bytes,
    )


def setup_metrics(app: web.Application, metrics: Metrics) -> None:
    """Serve ``GET /metrics``; on a private server the access gate guards it like the API."""

    async def scrape(request: web.Request) -> web.Response:
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", scrape)
    log.info("metrics at /metrics")
