"""Redis clients as chatapp uses them: short timeouts, so an outage fails fast."""

from __future__ import annotations

from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff

#: Seconds to connect or to wait for an answer. Presence and publishing fall back to this
#: process's own view when Redis does not answer, so waiting longer only delays clients.
TIMEOUT = 3.0


def connect(url: str, max_connections: int | None = None, **options: Any) -> aioredis.Redis:
    """A client for ``url`` (redis://, rediss:// or unix://) that fails within seconds.

    With ``max_connections``, calls beyond that many at once wait (up to :data:`TIMEOUT`)
    for a connection to be free: redis-py's default pool raises "Too many connections"
    instead, past 100, which a crowd of clients arriving or leaving at once reaches.
    """
    settings: dict[str, Any] = {
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        # One quick retry covers a connection Redis closed while idle.
        "retry": Retry(ConstantBackoff(0.1), 1),
        **options,
    }
    if max_connections is None:
        return aioredis.Redis.from_url(url, **settings)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=TIMEOUT, **settings
    )
    return aioredis.Redis.from_pool(pool)


def subscriber(url: str) -> aioredis.Redis:
    """A client for one subscription, whose connection errors reach the reader as they are.

    Otherwise redis-py reconnects and re-subscribes the connection before raising or
    retrying, behind the reader's back; the reader makes a fresh client instead.
    """
    return connect(url, retry=Retry(NoBackoff(), 0, supported_errors=()))
