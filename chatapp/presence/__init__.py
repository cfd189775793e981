"""Presence backends: in memory for one process, Redis for several."""

from __future__ import annotations

from .base import Presence
from .memory import MemoryPresence


def open_presence(redis_url: str) -> Presence:
    if redis_url:
        raise ValueError("Redis presence is not available in this version")
    return MemoryPresence()


__all__ = ["MemoryPresence", "Presence", "open_presence"]
