"""Engine.IO hardening: hostile bytes and resource limits below the Socket.IO protocol.

python-engineio and python-socketio trust their peer more than a server on a network can:
a malformed frame escapes as an unhandled exception (an ERROR log line, and a websocket
whose writer lingers until the ping timeout), each connection's send queue grows without
bound when its client stops reading, a client can open engine.io sessions it never uses,
and a client's protocol mistakes are logged at ERROR. :class:`TransportGuard` fixes that:

* frames and polling bodies that engine.io cannot decode, and Socket.IO packets that
  python-socketio cannot handle, close that one connection with a WARNING line;
* each connection's send queue is bounded (``--max-queued-packets``); over it the
  connection is dropped and the client catches up with ``since`` when it reconnects;
* engine.io sessions per client address are capped (twice ``--max-connections-per-ip``;
  Socket.IO connections are refused with a readable reason at the limit itself, in
  ``realtime``), and a session without a Socket.IO connect is closed after
  ``--connect-timeout``;
* a client that keeps sending far past the event rate limit is disconnected;
* the libraries' own log lines go through :func:`library_logger`.

Like ``fanout.py`` this reaches into the libraries; the internals used, checked by
``tests/test_transport_internals.py``: ``AsyncServer.eio._async`` (``translate_request``
and ``websocket`` of the aiohttp driver), ``eio.handlers``, ``eio.sockets``,
``AsyncSocket.queue`` / ``.close()`` / ``.sid``, the driver's ``WebSocket`` wrapper
(``handler``, ``_sock``) and ``AsyncManager.sid_from_eio_sid``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import socketio
from aiohttp import WSCloseCode, WSMsgType, web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from .origins import client_ip
from .ratelimit import TokenBucket
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
#: Attachments one binary Socket.IO event may announce (chatapp's protocol uses none).
MAX_ATTACHMENTS = 1000
#: Seconds a websocket may stay open after its engine.io session ended (time for the
#: CLOSE packet to reach the client, which then closes it).
CLOSE_GRACE = 2.0
#: The packet bucket is this many times the event bucket: rate-limit errors come first,
#: a client that ignores them is cut off.
FLOOD_FACTOR = 2


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
    return _LibraryLog(name, demote)


def _valid_eio_text(text: str) -> bool:
    """Whether engine.io can decode this text packet (it raises on anything else)."""
    if not text:
        return False
    if text[0] == "b":
        try:
            base64.b64decode(text[1:], validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    if text[0] not in "0123456":
        return False
    if len(text) > 1 and not text[1].isnumeric():
        # engine.io tries the rest as JSON and copes with ValueError, not with nesting
        # deep enough to exhaust the recursion limit.
        try:
            json.loads(text[1:])
        except RecursionError:
            return False
        except ValueError:
            pass
    return True


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
        _valid_eio_text(p) and p[0] in CLIENT_POLLING_TYPES for p in parts
    )


class _Replay:
    """Stands in for the request body stream once the body has been read and checked."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self, n: int = -1) -> bytes:
        chunk = self._body if n < 0 else self._body[:n]
        self._body = self._body[len(chunk) :]
        return chunk


class SendQueue(asyncio.Queue[Any]):
    """An engine.io send queue that gives up on a client after ``limit`` unsent packets.

    On overflow the queued packets are dropped (the client gets them again through
    ``since`` when it reconnects) and ``on_overflow`` runs once; from then on only the
    engine.io CLOSE packet and the writer's ``None`` sentinel are still taken.
    """

    def __init__(self, limit: int, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self.limit = limit
        self.overflowed = False
        self._on_overflow = on_overflow

    def put_nowait(self, item: Any) -> None:
        if item is None or (
            isinstance(item, eio_packet.Packet) and item.packet_type == eio_packet.CLOSE
        ):
            super().put_nowait(item)
            return
        if self.overflowed:
            return
        if self.qsize() < self.limit:
            super().put_nowait(item)
            return
        self.overflowed = True
        while not self.empty():
            self.get_nowait()
            self.task_done()
        self._on_overflow()


class _GuardedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engine.io's aiohttp websocket wrapper, refusing frames engine.io cannot decode."""

    def __init__(self, handler: Any, server: Any, guard: TransportGuard) -> None:
        super().__init__(handler, server)
        self.guard = guard
        self.ip = "?"

    async def __call__(self, environ: dict[str, Any]) -> Any:
        socket = getattr(self.handler, "__self__", None)
        sid = getattr(socket, "sid", None)
        request = environ["aiohttp.request"]
        self.ip = environ.get("REMOTE_ADDR", "?")
        if sid is not None:
            self.guard.websockets[sid] = request
        try:
            return await super().__call__(environ)
        finally:
            if sid is not None and self.guard.websockets.get(sid) is request:
                del self.guard.websockets[sid]

    async def wait(self) -> Any:
        msg = await self._sock.receive()
        if msg.type == WSMsgType.TEXT:
            if not _valid_eio_text(msg.data):
                log.warning("malformed engine.io frame from %s; closing its connection", self.ip)
                raise OSError("malformed frame")
            return msg.data
        if msg.type == WSMsgType.BINARY:
            return msg.data
        if msg.type == WSMsgType.ERROR and getattr(msg.data, "code", None) == (
            WSCloseCode.MESSAGE_TOO_BIG
        ):
            log.warning(
                "a frame from %s is over --max-frame-bytes (%d); closing its connection",
                self.ip,
                self.server.max_http_buffer_size,
            )
        raise OSError("websocket closed")


class TransportGuard:
    """Installs the protections described in the module docstring on one AsyncServer."""

    def __init__(self, sio: socketio.AsyncServer, settings: Settings) -> None:
        self.sio = sio
        self.eio = sio.eio
        self.settings = settings
        self.sessions_per_ip: Counter[str] = Counter()
        self.ip_of: dict[str, str] = {}  # engine.io sid -> client address
        self.websockets: dict[str, web.BaseRequest] = {}  # engine.io sid -> its request
        self._buckets: dict[str, TokenBucket] = {}
        self._binary: dict[str, tuple[int, int]] = {}  # attachments (to come, bytes so far)
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

        driver = self.eio._async
        self._translate = driver["translate_request"]
        self.eio._async = {
            **driver,
            "translate_request": self._translate_request,
            "websocket": lambda handler, server: _GuardedWebSocket(handler, server, self),
        }
        handlers = self.eio.handlers
        self._on_connect = handlers["connect"]
        self._on_message = handlers["message"]
        self._on_disconnect = handlers["disconnect"]
        self.eio.on("connect", self._connect)
        self.eio.on("message", self._message)
        self.eio.on("disconnect", self._disconnect)

    # -- plumbing ---------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sid_label(self, eio_sid: str) -> str:
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, "/")
        return f"{sid or eio_sid} from {self.ip_of.get(eio_sid, '?')}"

    async def close(self, eio_sid: str, reason: str, abort: bool = False) -> None:
        """Close one engine.io connection; ``abort`` drops the TCP connection too."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and not socket.closed:
            await socket.close(wait=False, abort=abort, reason=reason)
        request = self.websockets.get(eio_sid)
        if abort and request is not None and request.transport is not None:
            # A client that does not read leaves engine.io's writer blocked on a full TCP
            # buffer, and only dropping the connection frees it.
            request.transport.abort()

    # -- HTTP requests to /socket.io/ -----------------------------------------------------------

    async def _translate_request(self, request: web.Request) -> dict[str, Any]:
        environ: dict[str, Any] = self._translate(request)
        environ["REMOTE_ADDR"] = client_ip(request, self.settings.trust_proxy)
        if request.method != "POST":
            return environ
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        sid = request.query.get("sid")
        if length > self.eio.max_http_buffer_size:
            log.warning(
                "a polling request of %d bytes from %s is over --max-frame-bytes; "
                "closing its connection",
                length,
                environ["REMOTE_ADDR"],
            )
            # Not left to engine.io, whose disconnect would wait for the client to poll.
            if sid is not None and sid in self.eio.sockets:
                await self.close(sid, MALFORMED)
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.eio.max_http_buffer_size, actual_size=length
            )
        try:
            body = await request.content.readexactly(length) if length > 0 else b""
        except (asyncio.IncompleteReadError, ValueError):
            body = None
        if body is None or not _valid_polling_body(body):
            log.warning(
                "malformed polling payload from %s; closing its connection",
                environ["REMOTE_ADDR"],
            )
            if sid is not None and sid in self.eio.sockets:
                await self.close(sid, MALFORMED)
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
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            queue = SendQueue(self.settings.max_queued_packets, lambda: self._overflow(eio_sid))
            while not socket.queue.empty():  # the OPEN packet, queued before this event
                queue.put_nowait(socket.queue.get_nowait())
            socket.queue = queue
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
            self._spawn(self.close(eio_sid, FLOODING, abort=True))
            return
        problem = self._check_binary(eio_sid, data)
        if problem is not None:
            log.warning("closing %s: %s", self._sid_label(eio_sid), problem)
            self._spawn(self.close(eio_sid, MALFORMED))
            return
        if isinstance(data, str) and data[:1] == "1":
            # A Socket.IO disconnect leaves the transport open for a reconnect; it gets
            # the same time to make one as a new transport.
            self._set_deadline(eio_sid)
        try:
            await self._on_message(eio_sid, data)
        except Exception as exc:
            # Our own handlers answer bad input themselves; what arrives here is a packet
            # that python-socketio itself could not process.
            log.warning(
                "malformed Socket.IO packet from %s (%s: %.120s); closing its connection",
                self._sid_label(eio_sid),
                type(exc).__name__,
                exc,
            )
            self._spawn(self.close(eio_sid, MALFORMED))

    def _check_binary(self, eio_sid: str, data: Any) -> str | None:
        """Bound binary events: python-socketio takes every packet after a binary event's
        header as one of its attachments, for as many as the header announces."""
        pending = self._binary.get(eio_sid)
        if pending is not None:
            remaining, total = pending[0] - 1, pending[1] + len(data)
            if total > self.eio.max_http_buffer_size:
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
            request = self.websockets.get(eio_sid)
            if request is not None:
                asyncio.get_running_loop().call_later(
                    CLOSE_GRACE, self._drop_websocket, eio_sid, request
                )

    def _drop_websocket(self, eio_sid: str, request: web.BaseRequest) -> None:
        # engine.io keeps reading a websocket whose session has ended until the ping
        # timeout; a client that does not close it by itself is not given that long.
        if self.websockets.get(eio_sid) is request and request.transport is not None:
            log.info(
                "dropping the websocket of ended session %s: the client did not close it", eio_sid
            )
            request.transport.abort()

    def _connect_deadline(self, eio_sid: str) -> None:
        self._deadlines.pop(eio_sid, None)
        if eio_sid not in self.eio.sockets:
            return
        if self.sio.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            return
        log.info(
            "closing transport %s from %s: no Socket.IO connect within %g s",
            eio_sid,
            self.ip_of.get(eio_sid, "?"),
            self.settings.connect_timeout,
        )
        self._spawn(self.close(eio_sid, CONNECT_TIMEOUT, abort=True))

    def _overflow(self, eio_sid: str) -> None:
        log.warning(
            "closing %s: %d packets waiting, the client is not reading (it catches up "
            "with since when it reconnects)",
            self._sid_label(eio_sid),
            self.settings.max_queued_packets,
        )
        self._spawn(self.close(eio_sid, SLOW_CONSUMER, abort=True))

    def abort_websockets(self) -> int:
        """Drop every websocket still open (at shutdown, after the clients had their grace)."""
        requests = list(self.websockets.values())
        self.websockets.clear()
        for request in requests:
            if request.transport is not None:
                request.transport.abort()
        return len(requests)
