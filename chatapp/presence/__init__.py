"""Presence backends: in memory for one process, Redis for several."""

from __future__ import annotations

from ..settings import Settings
from .base import ChangeCallback, Presence, member, people, person
from .memory import MemoryPresence


def open_presence(settings: Settings) -> Presence:
    """Presence in Redis when ``settings.redis_url`` is set, else in this process's memory."""
    if settings.redis_url:
        from .redis import RedisPresence

        return RedisPresence(settings.redis_url, settings.redis_prefix, settings.presence_ttl)
    return MemoryPresence()


__all__ = [
    "ChangeCallback",
    "MemoryPresence",
    "Presence",
    "member",
    "open_presence",
    "people",
    "person",
]
