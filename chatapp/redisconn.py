"""Redis clients as chatapp uses them: short timeouts, so an outage fails fast."""

from __future__ import annotations

from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff, NoBackoff

#: Seconds to connect or to wait for an answer. Presence and publishing fall back to this
#: process's own view when Redis does not answer, so waiting longer only delays clients.
TIMEOUT = 3.0


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client for ``url`` (redis://, rediss:// or unix://) that fails within seconds."""
    settings: dict[str, Any] = {
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        # One quick retry covers a connection Redis closed while idle.
        "retry": Retry(ConstantBackoff(0.1), 1),
        **options,
    }
    return aioredis.Redis.from_url(url, **settings)


def subscriber(url: str) -> aioredis.Redis:
    """A client for one subscription, whose connection errors reach the reader as they are.

    Otherwise redis-py reconnects and re-subscribes the connection before raising or
    retrying, behind the reader's back; the reader makes a fresh client instead.
    """
    return connect(url, retry=Retry(NoBackoff(), 0, supported_errors=()))
