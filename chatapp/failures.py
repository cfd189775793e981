"""Throttling of guesses: failed checks counted per key (an address, an account) in fixed
windows; past the limit, every check for that key is refused until its window ends."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

#: Keys remembered at most before finished windows are forgotten (many addresses must not
#: grow the table for ever).
MAX_KEYS = 4096


class TooManyFailures(Exception):
    """This key failed too often; ``str(exc)`` is the reason shown to whoever asked."""


class FailureLimiter:
    """Allows ``limit`` failures per key within ``window`` seconds; ``what`` names the
    check in the log line written when a key reaches the limit, ``refusal`` starts the
    reason given past it."""

    def __init__(
        self, limit: int, window: float, what: str, refusal: str = "too many failed attempts"
    ) -> None:
        self.limit = limit
        self.window = window
        self.what = what
        self.refusal = refusal
        self._windows: dict[str, tuple[float, int]] = {}

    def check(self, key: str) -> None:
        """Raise :class:`TooManyFailures` while ``key`` is refused."""
        start, count = self._windows.get(key, (0.0, 0))
        left = start + self.window - time.monotonic()
        if count >= self.limit and left > 0:
            raise TooManyFailures(f"{self.refusal}, retry in {int(left) + 1} s")

    def failed(self, key: str) -> None:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._windows[key] = (start, count + 1)
        if count + 1 == self.limit:
            log.warning(
                "%s failed %s %d times; refusing it for %.0f s",
                key,
                self.what,
                self.limit,
                self.window,
            )
        if len(self._windows) > MAX_KEYS:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window}

    def forgive(self, key: str) -> None:
        """Take back one counted failure of ``key`` (an attempt counted in advance that
        turned out not to count)."""
        found = self._windows.get(key)
        if found is not None and found[1] > 0:
            self._windows[key] = (found[0], found[1] - 1)
