"""The loggers handed to python-engineio and python-socketio."""

from __future__ import annotations

import logging
from typing import Any


class _LibraryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """python-engineio/-socketio's logger, made fit for a server facing the network.

    They log every packet at INFO (with its data, which may hold an access token), so
    anything below WARNING is dropped. With ``demote``, engine.io's ``error()`` calls,
    which all report a client's protocol mistakes (bad origin, stale session id...), become
    warnings; tracebacks (``exception()``) stay errors.
    """

    def __init__(self, name: str, demote: bool) -> None:
        super().__init__(logging.getLogger(name), {})
        self.demote = demote

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING or msg == "Cannot send to sid %s":
            # That one is a broadcast racing a disconnect: expected, and not actionable.
            return
        if self.demote and level == logging.ERROR and not kwargs.get("exc_info"):
            level = logging.WARNING
        super().log(level, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


def library_logger(name: str, *, demote: bool = False) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The ``logger=`` / ``engineio_logger=`` to hand to ``socketio.AsyncServer``."""
    return _LibraryLog(name, demote)
