"""The per-address budget: what one client address may ask of the server, in cost units,
across all its Socket.IO connections and JSON API requests together.

The per-connection limits (``handlers``) count events, whatever they cost; one address
with twenty connections could still keep the server busy with expensive requests and slow
everyone else down. Here each request costs what it asks the server to do: a message,
typing notice, rename or unknown event costs :data:`EVENT_COST`; a page of history costs
more the more messages it may hold (:func:`page_cost`); ``/api/rooms`` as much as the
largest page. Each address has a token bucket of ``burst`` units refilled at ``rate`` per
second; a request it cannot pay for is refused with the seconds to wait.

Accounts are kept per process, for the addresses seen lately: one whose bucket has filled
up again is the same as one never seen, and is forgotten; past ``max_addresses`` the
least recently seen is forgotten first, so the table stays bounded however many addresses
come and go.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import protocol

log = logging.getLogger(__name__)

#: A message, typing notice, rename, unknown event.
EVENT_COST = 1
#: Addresses kept at most (about 100 bytes each).
MAX_ADDRESSES = 100_000


def page_cost(limit: int) -> int:
    """The cost of a page of up to ``limit`` messages: 1, plus 1 per 10 messages."""
    return EVENT_COST + limit // 10


#: The most a single request costs: a page of the largest size; ``/api/rooms`` costs this.
MAX_COST = page_cost(protocol.HISTORY_MAX)
#: A search (over Socket.IO or the API): it reads an index and a page of results, as the
#: largest page of history does.
SEARCH_COST = MAX_COST


def page_cost_of(limit: Any) -> int:
    """:func:`page_cost` of a ``limit`` as a client sent it (a query string's too): one
    that is not a valid limit costs the default page's (and is refused for it anyway)."""
    if isinstance(limit, str) and limit.isdecimal() and len(limit) <= 3:
        limit = int(limit)
    valid = isinstance(limit, int) and not isinstance(limit, bool)
    if valid and 1 <= limit <= protocol.HISTORY_MAX:
        return page_cost(limit)
    return page_cost(protocol.HISTORY_DEFAULT)


def event_cost(event: str, args: tuple[Any, ...]) -> int:
    """What a Socket.IO event with these arguments costs."""
    if event == "history":
        payload = args[0] if len(args) == 1 else None
        return page_cost_of(payload.get("limit") if isinstance(payload, dict) else None)
    if event == "search":
        return SEARCH_COST
    if event == "subscribe":
        return page_cost_of(None)  # its answer carries a page of history
    return EVENT_COST


class _Account:
    __slots__ = ("limited", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.limited = False  # refused once already (logged once per account)


class AddressBudget:
    """Token buckets of cost units, one per client address, forgotten when full again."""

    def __init__(self, burst: float, rate: float, max_addresses: int = MAX_ADDRESSES) -> None:
        self.burst = burst
        self.rate = rate
        self.max_addresses = max_addresses
        # Least recently seen first (an account is moved to the end when used).
        self._accounts: dict[str, _Account] = {}

    def __len__(self) -> int:
        return len(self._accounts)

    def spend(self, address: str, cost: float, what: str = "") -> float:
        """Charge ``cost`` units to ``address``: 0.0 if it could pay, else the seconds until
        it can (nothing is charged then). ``what`` names the request in the log line."""
        now = time.monotonic()
        accounts = self._accounts
        account = accounts.pop(address, None)
        if account is None:
            account = _Account(self.burst, now)
        else:
            account.tokens = min(self.burst, account.tokens + (now - account.stamp) * self.rate)
            account.stamp = now
        self._forget_idle(now)
        accounts[address] = account  # the most recently seen
        if account.tokens >= cost:
            account.tokens -= cost
            return 0.0
        if not account.limited:
            account.limited = True
            log.info(
                "%s is over its budget of requests (%s costs %g, %.1f left; --ip-burst %g, "
                "--ip-rate %g)",
                address,
                what or "a request",
                cost,
                account.tokens,
                self.burst,
                self.rate,
            )
        return (cost - account.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Forget the least recently seen accounts that are full again (at most two per
        call, which keeps up with one new address per call), or past ``max_addresses``."""
        accounts = self._accounts
        for _ in range(2):
            if not accounts:
                return
            address = next(iter(accounts))
            account = accounts[address]
            full = account.tokens + (now - account.stamp) * self.rate >= self.burst
            if not full and len(accounts) < self.max_addresses:
                return
            del accounts[address]
