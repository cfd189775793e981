"""What TCP connections may hold: how many per client address, and how long a request takes.

* ``--max-tcp-connections-per-ip``: :class:`ConnectionLimit` counts TCP connections per
  peer address from accept to close and refuses those past the limit with a short 503,
  before aiohttp sees them (:meth:`ConnectionLimit.listen` wraps aiohttp's protocol
  factory, ``runner.server``). A websocket that ``websocket.ChatWebSocket`` detaches from
  aiohttp becomes its transport's protocol, so the wrapper no longer hears of the
  connection's end: the websocket reports it (``Sessions(detached_close=)``).

* The process's soft limit of open descriptors (often 1024) is raised to its hard limit
  at start (:func:`raise_open_file_limit`), so that the per-address limit, not the
  descriptor table, is what a crowd of connections from one address runs into.
* ``--header-timeout``: a connection that has not sent a complete request head that long
  after it opened, or after the previous response on it, is closed. This is aiohttp's
  keep-alive timer (``keepalive_timeout``), which runs from the connection's start and from
  each response's end and closes the connection only while it waits for a request head
  (:func:`runner_options`).
* ``--body-timeout``: a request whose body has not fully arrived that long after its head
  is cut off (:func:`body_timeout_middleware`); a polling POST's reader (``transport.py``)
  then ends its session quietly. A body that its handler refuses without reading it (too
  large, say) is not read at all: the connection closes after the answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from aiohttp import web

from .logthrottle import LogThrottle
from .origins import client_ip
from .settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def raise_open_file_limit() -> None:
    """Raise the soft limit of open descriptors to the hard limit; log the outcome once."""
    if sys.platform == "win32":
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        log.info("open descriptors: the limit is %d", soft)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:  # e.g. an unlimited hard limit the kernel refuses
        log.warning("open descriptors: the limit stays %d (cannot raise it: %s)", soft, exc)
        return
    log.info("open descriptors: raised the limit from %d to %d", soft, hard)


#: Bytes of a request body aiohttp buffers before it stops reading from the connection
#: (twice this, plus one read). Its default, 64 KiB, let 300 connections sending bodies
#: nobody reads hold 50-130 MB between them before their refusals; 16 KiB, about 30 MB.
#: Chat bodies (polling POSTs up to --max-frame-bytes, the login form) are read at once.
READ_BUFFER = 16 * 1024


def runner_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner``: ``--header-timeout``, small read buffers,
    no lingering, an access log only at ``--log-level debug``.

    aiohttp reads and drops, for up to 10 s, the rest of a body that a handler refused
    without reading it (so that a client still sending sees the answer). Nothing chatapp
    serves refuses a body a well-behaved client sends (polling clients keep to
    ``maxPayload``), and each connection lingering over a refused megabyte holds its read
    buffers: the connection is closed after the answer instead.
    """
    options: dict[str, Any] = {
        "keepalive_timeout": settings.header_timeout,
        "lingering_time": 0,
        "read_bufsize": READ_BUFFER,
    }
    if settings.log_level != "debug":
        # One line per HTTP request (and per long-polling round trip) is noise, not a
        # lifecycle event. Without an access log aiohttp also skips building its logger
        # for every connection.
        options["access_log"] = None
    return options


def body_timeout_middleware(timeout: float, trust_proxy: bool) -> Any:
    """Cut the connection of a request whose body is not complete ``timeout`` s after its head.

    Not a coroutine: it returns the handler's awaitable, so that nothing of it stays
    suspended for a websocket's life. A request whose body has arrived by the time it is
    routed (every small one) costs no timer.
    """
    warned = LogThrottle()

    def check(request: web.BaseRequest) -> None:
        transport = request.transport
        if request.content.is_eof() or transport is None or transport.is_closing():
            return
        ip = client_ip(request, trust_proxy)
        if warned.first(ip):
            log.warning(
                "closed a connection from %s: the body of %s %.100s did not arrive within "
                "--body-timeout (%g s); further ones from it are not logged for a minute",
                ip,
                request.method,
                request.path,
                timeout,
            )
        transport.abort()

    @web.middleware
    def body_timeout(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if not request.content.is_eof():
            asyncio.get_running_loop().call_later(timeout, check, request)
        return handler(request)

    return body_timeout


#: Connections the kernel holds for us while the event loop is busy. asyncio's default,
#: 100, overflowed when a restarted server's clients all came back at once: the kernel
#: dropped their SYNs and they retried 1, 3, 7 and 15 seconds later (a reconnect storm's
#: slowest clients waited 14 s). Node's default is 511; the kernel caps it at somaxconn.
BACKLOG = 1024

#: What a connection past the per-address limit gets, instead of being served.
_REFUSAL_TEXT = b"too many connections from your address\n"
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_REFUSAL_TEXT), _REFUSAL_TEXT)
)


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "local"  # a Unix socket


class ConnectionLimit:
    """TCP connections per peer address, counted from accept to close; ``limit`` 0 counts
    without refusing."""

    def __init__(self, limit: int, trust_proxy: bool = False) -> None:
        self.limit = limit
        self.trust_proxy = trust_proxy
        #: Open connections per peer address.
        self.open: Counter[str] = Counter()
        self._peers: dict[asyncio.BaseTransport, str] = {}
        self._warned = LogThrottle()

    def accept(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection; False (not counted) if its address is at the limit."""
        ip = _peer(transport)
        if self.limit and self.open[ip] >= self.limit:
            if self._warned.first(ip):
                log.warning(
                    "refusing connections from %s: %d open (--max-tcp-connections-per-ip "
                    "is %d); further refusals are not logged for a minute",
                    ip,
                    self.open[ip],
                    self.limit,
                )
            return False
        self.open[ip] += 1
        self._peers[transport] = ip
        return True

    def release(self, transport: asyncio.BaseTransport) -> None:
        """The connection closed (idempotent)."""
        ip = self._peers.pop(transport, None)
        if ip is not None:
            self.open[ip] -= 1
            if self.open[ip] <= 0:
                del self.open[ip]

    def protocol_factory(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """``factory`` (aiohttp's ``runner.server``) behind the count and the limit."""
        return lambda: _Counted(self, factory)

    async def listen(
        self, factory: Callable[[], asyncio.Protocol], sockets: Sequence[socket.socket]
    ) -> list[asyncio.Server]:
        """Serve ``factory``'s protocol on ``sockets``, bound and listening already."""
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(self.protocol_factory(factory), sock=sock, backlog=BACKLOG)
            for sock in sockets
        ]
        if self.limit and self.trust_proxy:
            log.info(
                "--max-tcp-connections-per-ip %d counts TCP peers: behind a proxy, the "
                "proxy's connections (set it to 0 if the proxy limits its clients)",
                self.limit,
            )
        return servers


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, made only if the connection is accepted."""

    __slots__ = ("_factory", "_inner", "_limit", "_transport")

    def __init__(self, limit: ConnectionLimit, factory: Callable[[], asyncio.Protocol]) -> None:
        self._limit = limit
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._limit.accept(transport):
            tcp = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's classes
            tcp.write(REFUSAL)
            tcp.close()
            return
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._limit.release(self._transport)
        if self._inner is not None:
            self._inner.connection_lost(exc)
