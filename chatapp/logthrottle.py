"""At most one log line per key (a client address, a host name) per period.

A refusal that an attacker can repeat at will must not write a line per repetition, nor
keep a record per key it invents: keys are remembered for one period, and at most
``max_keys`` of them.
"""

from __future__ import annotations

import time


class LogThrottle:
    """``first(key)`` is True for the first call with ``key`` in the current period."""

    def __init__(self, period: float = 60.0, max_keys: int = 100) -> None:
        self.period = period
        self.max_keys = max_keys
        self._seen: set[str] = set()
        self._since = time.monotonic()

    def first(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._since >= self.period:
            self._seen.clear()
            self._since = now
        if key in self._seen or len(self._seen) >= self.max_keys:
            return False
        self._seen.add(key)
        return True
