"""A token bucket: the per-connection rate limit."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows ``burst`` events at once, refilled at ``rate`` per second."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, burst: float, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = burst
        self._stamp = time.monotonic()

    def take(self) -> float:
        """Spend one token: 0.0 when allowed, else the seconds to wait before retrying."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate
