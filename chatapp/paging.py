"""Pages of history as they are sent: bounded in messages and in bytes.

A ``welcome``, a ``history`` answer and an API page each carry at most so many messages
(the caller's limit) and at most :data:`protocol.MAX_PAGE_BYTES` of them as JSON. A page
cut short keeps the newest messages and says ``has_more``, so a client fetches the rest
with ``history {before}`` as it does for any older page.
"""

from __future__ import annotations

from typing import Any

from .jsoncodec import encoded_size
from .protocol import MAX_PAGE_BYTES


def newest_within(
    messages: list[dict[str, Any]], max_bytes: int = MAX_PAGE_BYTES
) -> tuple[list[dict[str, Any]], bool]:
    """The newest of ``messages`` (oldest first) that fit in ``max_bytes`` of JSON, and
    whether any had to be left out."""
    total = 2  # the list's brackets
    for i in range(len(messages) - 1, -1, -1):
        total += encoded_size(messages[i]) + 1  # and a comma
        if total > max_bytes:
            return messages[i + 1 :], True
    return messages, False
