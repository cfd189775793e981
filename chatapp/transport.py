"""Engine.IO hardening: hostile bytes and resource limits below the Socket.IO protocol.

python-engineio and python-socketio trust their peer more than a server on a network can:
a malformed frame escapes as an unhandled exception (an ERROR log line, and a websocket
whose writer lingers until the ping timeout), each connection's send queue grows without
bound when its client stops reading, a client can open engine.io sessions it never uses,
and a client's protocol mistakes are logged at ERROR. :class:`TransportGuard` fixes that:

* frames and polling bodies that engine.io cannot decode, and Socket.IO packets that
  python-socketio cannot handle, close that one connection with a WARNING line;
* each connection's send queue is bounded in packets and bytes (``--max-queued-packets``,
  ``--max-queued-bytes``), and all queues together in bytes (``--max-queued-bytes-total``,
  over which the connection holding the most goes first); a connection over a bound is
  dropped and the client catches up with ``since`` when it reconnects;
* engine.io sessions per client address are capped (twice ``--max-connections-per-ip``;
  Socket.IO connections are refused with a readable reason at the limit itself, in
  ``handlers``), and a session without a Socket.IO connect is closed after
  ``--connect-timeout``;
* a client that keeps sending far past the event rate limit is disconnected;
* a session takes requests from the address that opened it only, and one long-poll at a
  time: a second concurrent one gets 400 and closes the session, as the Engine.IO
  protocol says (:meth:`TransportGuard.middleware`);
* the libraries' own log lines go through ``liblog.library_logger``.

It is policy only: the hooks into python-engineio and python-socketio it needs (checking
requests and frames, seeing engine.io's events first, bounded queues, closing a session)
are in ``sessions.py`` and the other modules that reach into library internals
(``internals.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from .frames import decodable
from .logthrottle import LogThrottle
from .metrics import Metrics
from .origins import client_ip, responded
from .ratelimit import TokenBucket
from .sendqueue import OVER_BYTES, OVER_TOTAL
from .sessions import Sessions
from .settings import Settings

log = logging.getLogger(__name__)

#: The most packets engine.io accepts in one polling POST.
MAX_PAYLOAD_PACKETS = 16
#: Engine.IO packets a client may post: CLOSE, PONG, MESSAGE, UPGRADE and base64 binary.
#: engine.io answers any other with a disconnect that waits for the client to poll again,
#: which leaves the request hanging for as long as the client likes.
CLIENT_POLLING_TYPES = frozenset("1345b")
#: Reasons handed to the disconnect handlers (and logged there).
SLOW_CONSUMER = "slow consumer"
MALFORMED = "malformed packet"
FLOODING = "flooding"
CONNECT_TIMEOUT = "no Socket.IO connect"
CUT_OFF = "transport error"
CONCURRENT_POLL = "concurrent long-polls"
#: Attachments one binary Socket.IO event may announce (chatapp's protocol uses none).
MAX_ATTACHMENTS = 1000
#: Seconds a websocket may stay open after its engine.io session ended (time for the
#: CLOSE packet to reach the client, which then closes it).
CLOSE_GRACE = 2.0
#: The packet bucket is this many times the event bucket: rate-limit errors come first,
#: a client that ignores them is cut off.
FLOOD_FACTOR = 2


def _valid_polling_body(body: bytes) -> bool:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if text.startswith("d="):  # JSONP form encoding
        values = parse_qs(text).get("d")
        if not values:
            return False
        text = values[0]
    if not text:
        return True
    parts = text.split("\x1e")
    return len(parts) <= MAX_PAYLOAD_PACKETS and all(
        decodable(p) and p[0] in CLIENT_POLLING_TYPES for p in parts
    )


class _Replay:
    """Stands in for the request body stream once the body has been read and checked."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self, n: int = -1) -> bytes:
        chunk = self._body if n < 0 else self._body[:n]
        self._body = self._body[len(chunk) :]
        return chunk


class TransportGuard:
    """Installs the protections described in the module docstring on one AsyncServer."""

    def __init__(
        self, sessions: Sessions[Any], settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.sessions_per_ip: Counter[str] = Counter()
        self.ip_of: dict[str, str] = {}  # engine.io sid -> client address
        self._buckets: dict[str, TokenBucket] = {}
        self._binary: dict[str, tuple[int, int]] = {}  # attachments (to come, bytes so far)
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._oversized = LogThrottle()
        self._foreign = LogThrottle()
        self._polling: set[str] = set()  # sessions with a long-poll waiting

        sessions.backlog.limit = settings.max_queued_bytes_total
        sessions.check_requests(self._check_request)
        self._on_connect = sessions.intercept("connect", self._connect)
        self._on_message = sessions.intercept("message", self._message)
        self._on_disconnect = sessions.intercept("disconnect", self._disconnect)

    # -- plumbing ---------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sid_label(self, eio_sid: str) -> str:
        sid = self.sessions.sid(eio_sid)
        return f"{sid or eio_sid} from {self.ip_of.get(eio_sid, '?')}"

    # -- HTTP requests to /socket.io/ -----------------------------------------------------------

    def middleware(self) -> Any:
        """Requests naming a session: from the session's own address, and one long-poll
        at a time.

        Not a coroutine where it lets a request through untouched (a websocket's handler
        runs for the websocket's life); a long-poll is awaited, to know when it ends.
        """

        @web.middleware
        def sessions(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> Awaitable[web.StreamResponse]:
            sid = request.query.get("sid")
            if sid is None or not request.path.startswith("/socket.io/"):
                return handler(request)
            ip = client_ip(request, self.settings.trust_proxy)
            owner = self.ip_of.get(sid)
            if owner is not None and owner != ip:
                if self._foreign.first(ip):
                    log.warning(
                        "refused a request for session %s from %s: it was opened from "
                        "another address (further ones from %s are not logged for a minute)",
                        sid,
                        ip,
                        ip,
                    )
                return responded(
                    web.json_response(
                        {"error": "bad Engine.IO request: the session belongs to another address"},
                        status=400,
                    )
                )
            if (
                request.method == "GET"
                and request.query.get("transport") == "polling"
                and "Upgrade" not in request.headers
            ):
                if sid in self._polling:
                    return self._concurrent_poll(sid)
                return self._poll(request, handler, sid)
            return handler(request)

        return sessions

    async def _poll(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        sid: str,
    ) -> web.StreamResponse:
        self._polling.add(sid)
        try:
            return await handler(request)
        finally:
            self._polling.discard(sid)

    async def _concurrent_poll(self, sid: str) -> web.StreamResponse:
        if sid in self.ip_of:  # not closed yet (the others of a burst only get the 400)
            log.warning(
                "closing %s: a second long-poll while one was waiting", self._sid_label(sid)
            )
            # The waiting poll gets the session's CLOSE packet.
            await self.sessions.close(sid, CONCURRENT_POLL)
        return web.json_response(
            {"error": "bad Engine.IO request: another long-poll of this session was waiting"},
            status=400,
        )

    async def _check_request(self, request: web.Request, environ: dict[str, Any]) -> dict[str, Any]:
        environ["REMOTE_ADDR"] = client_ip(request, self.settings.trust_proxy)
        if request.method != "POST":
            return environ
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        sid = request.query.get("sid")
        if length > self.settings.max_frame_bytes:
            if self._oversized.first(environ["REMOTE_ADDR"]):
                log.warning(
                    "a polling request of %d bytes from %s is over --max-frame-bytes; "
                    "closing its connection (further ones from it are not logged for a "
                    "minute)",
                    length,
                    environ["REMOTE_ADDR"],
                )
            # Not left to engine.io, whose disconnect would wait for the client to poll.
            if sid is not None and self.sessions.has_session(sid):
                await self.sessions.close(sid, MALFORMED)
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.settings.max_frame_bytes, actual_size=length
            )
        try:
            body = await request.content.readexactly(length) if length > 0 else b""
        except (ConnectionError, asyncio.IncompleteReadError):
            # The connection broke (or was cut by --body-timeout) before the body was
            # complete: there is nobody to answer, and the client's transport has failed.
            log.info(
                "a polling request from %s ended before its body arrived; closing its session",
                environ["REMOTE_ADDR"],
            )
            if sid is not None and self.sessions.has_session(sid):
                await self.sessions.close(sid, CUT_OFF)
            raise web.HTTPBadRequest(text="incomplete Engine.IO payload") from None
        except ValueError:
            body = None
        if body is None or not _valid_polling_body(body):
            log.warning(
                "malformed polling payload from %s; closing its connection",
                environ["REMOTE_ADDR"],
            )
            if sid is not None and self.sessions.has_session(sid):
                await self.sessions.close(sid, MALFORMED)
            raise web.HTTPBadRequest(text="malformed Engine.IO payload")
        environ["wsgi.input"] = _Replay(body)
        return environ

    # -- engine.io events -----------------------------------------------------------------------

    async def _connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        ip = environ.get("REMOTE_ADDR", "?")
        limit = self.settings.max_connections_per_ip
        if limit and self.sessions_per_ip[ip] >= 2 * limit:
            log.warning(
                "refused a transport from %s: %d open (--max-connections-per-ip is %d)",
                ip,
                self.sessions_per_ip[ip],
                limit,
            )
            return False  # engine.io answers 401
        self.sessions_per_ip[ip] += 1
        self.ip_of[eio_sid] = ip
        self.sessions.adopt(
            eio_sid,
            self.settings.max_queued_packets,
            self.settings.max_queued_bytes,
            lambda reason: self._overflow(eio_sid, reason),
        )
        s = self.settings
        burst = FLOOD_FACTOR * s.event_burst + 10
        self._buckets[eio_sid] = TokenBucket(burst, FLOOD_FACTOR * s.event_rate)
        self._set_deadline(eio_sid)
        return await self._on_connect(eio_sid, environ)

    def _set_deadline(self, eio_sid: str) -> None:
        timer = self._deadlines.pop(eio_sid, None)
        if timer is not None:
            timer.cancel()
        self._deadlines[eio_sid] = asyncio.get_running_loop().call_later(
            self.settings.connect_timeout, self._connect_deadline, eio_sid
        )

    async def _message(self, eio_sid: str, data: Any) -> None:
        if eio_sid not in self.ip_of:
            return  # closed by us; engine.io reads on until the client hangs up
        bucket = self._buckets.get(eio_sid)
        if bucket is not None and bucket.take():
            del self._buckets[eio_sid]  # warn and close once
            log.warning(
                "closing %s: it kept sending after being rate limited", self._sid_label(eio_sid)
            )
            self._spawn(self.sessions.close(eio_sid, FLOODING, abort=True))
            return
        problem = self._check_binary(eio_sid, data)
        if problem is not None:
            log.warning("closing %s: %s", self._sid_label(eio_sid), problem)
            self._spawn(self.sessions.close(eio_sid, MALFORMED))
            return
        if isinstance(data, str) and data[:1] == "1":
            # A Socket.IO disconnect leaves the transport open for a reconnect; it gets
            # the same time to make one as a new transport.
            self._set_deadline(eio_sid)
        try:
            handling = self.sessions.event_call(eio_sid, data)
            if handling is None:
                await self._on_message(eio_sid, data)
            else:
                await handling
        except Exception as exc:
            # Our own handlers answer bad input themselves; what arrives here is a packet
            # that python-socketio itself could not process.
            log.warning(
                "malformed Socket.IO packet from %s (%s: %.120s); closing its connection",
                self._sid_label(eio_sid),
                type(exc).__name__,
                exc,
            )
            self._spawn(self.sessions.close(eio_sid, MALFORMED))

    def _check_binary(self, eio_sid: str, data: Any) -> str | None:
        """Bound binary events: python-socketio takes every packet after a binary event's
        header as one of its attachments, for as many as the header announces."""
        pending = self._binary.get(eio_sid)
        if pending is not None:
            remaining, total = pending[0] - 1, pending[1] + len(data)
            if total > self.settings.max_frame_bytes:
                return "binary attachments over --max-frame-bytes"
            if remaining > 0:
                self._binary[eio_sid] = (remaining, total)
            else:
                del self._binary[eio_sid]
            return None
        if isinstance(data, str) and data[:1] in ("5", "6"):
            count_text, dash, _ = data[1:].partition("-")
            if dash and count_text.isdigit():
                try:
                    count = int(count_text)
                except ValueError:
                    return None  # python-socketio refuses it itself
                if count > MAX_ATTACHMENTS:
                    return f"a binary event announcing {count} attachments"
                if count > 0:
                    self._binary[eio_sid] = (count, 0)
        return None

    async def _disconnect(self, eio_sid: str, reason: Any = None) -> None:
        try:
            await self._on_disconnect(eio_sid, reason)
        finally:
            ip = self.ip_of.pop(eio_sid, None)
            if ip is not None:
                self.sessions_per_ip[ip] -= 1
                if self.sessions_per_ip[ip] <= 0:
                    del self.sessions_per_ip[ip]
            self._buckets.pop(eio_sid, None)
            self._binary.pop(eio_sid, None)
            timer = self._deadlines.pop(eio_sid, None)
            if timer is not None:
                timer.cancel()
            if self.sessions.websocket(eio_sid) is not None:
                # The sid, not the websocket: the timer must not keep a closed connection's
                # objects alive for the grace period (connect churn would pile them up).
                asyncio.get_running_loop().call_later(CLOSE_GRACE, self._drop_websocket, eio_sid)

    def _drop_websocket(self, eio_sid: str) -> None:
        # engine.io keeps reading a websocket whose session has ended until the ping
        # timeout; a client that does not close it by itself is not given that long. (The
        # session has ended, so no other websocket can have registered under its sid.)
        ws = self.sessions.websocket(eio_sid)
        if ws is not None and ws.abort():
            log.info(
                "dropping the websocket of ended session %s: the client did not close it", eio_sid
            )

    def _connect_deadline(self, eio_sid: str) -> None:
        self._deadlines.pop(eio_sid, None)
        if not self.sessions.has_session(eio_sid):
            return
        if self.sessions.sid(eio_sid) is not None:
            return
        log.info(
            "closing transport %s from %s: no Socket.IO connect within %g s",
            eio_sid,
            self.ip_of.get(eio_sid, "?"),
            self.settings.connect_timeout,
        )
        self._spawn(self.sessions.close(eio_sid, CONNECT_TIMEOUT, abort=True))

    def _overflow(self, eio_sid: str, reason: str) -> None:
        self.metrics.queue_drops.labels(reason).inc()
        s = self.settings
        if reason == OVER_TOTAL:
            why = (
                "it holds the most unsent data of all connections, which together hold "
                f"more than --max-queued-bytes-total ({s.max_queued_bytes_total} bytes)"
            )
        elif reason == OVER_BYTES:
            why = f"{s.max_queued_bytes} bytes waiting (--max-queued-bytes)"
        else:
            why = f"{s.max_queued_packets} packets waiting (--max-queued-packets)"
        log.warning(
            "closing %s: %s, the client is not reading (it catches up with since when it "
            "reconnects)",
            self._sid_label(eio_sid),
            why,
        )
        self._spawn(self.sessions.close(eio_sid, SLOW_CONSUMER, abort=True))
