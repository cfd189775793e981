"""Where a request comes from: the client's address, the host name it was sent to, and the
page's origin.

Forwarded headers (``X-Forwarded-For``, ``-Proto``, ``-Host``) are set by whoever sends the
request, so they are believed only with ``--trust-proxy``, when a reverse proxy we run
overwrites them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .logthrottle import LogThrottle

log = logging.getLogger(__name__)


def client_ip(request: web.BaseRequest, trust_proxy: bool) -> str:
    """The client's IP address; behind a trusted proxy, the one that proxy saw."""
    if trust_proxy:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        # Our proxy appends the address it saw, so the last entry is the only one that
        # the client cannot forge.
        hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
        if hops:
            return hops[-1]
    return request.remote or "unknown"


def _host_name(host: str) -> str | None:
    """The name or address in a ``Host`` value (``name``, ``name:port``, ``[v6]:port``),
    lowercased, without a trailing dot; None if it is not one."""
    host = host.strip().lower()
    if host.startswith("["):
        address, bracket, port = host[1:].partition("]")
        if not bracket or (port and not (port[:1] == ":" and port[1:].isdigit())):
            return None
        return address
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit():
        host = name
    return host.rstrip(".") or None


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """The host names this server answers to: any IP address, ``localhost``, and the names
    in ``--allowed-hosts`` ("*" for any).

    A web page that an attacker serves under their own name can make that name resolve to
    this server's address (DNS rebinding); the victim's browser then treats the server as
    the attacker's origin, sends the attacker's name as ``Host`` and lets the page read the
    answers. Refusing names nobody listed stops that; an IP address or ``localhost`` in the
    URL cannot be rebound. Behind a trusted proxy the name checked is the one the proxy
    received (``X-Forwarded-Host``).
    """

    def __init__(self, allowed: tuple[str, ...], trust_proxy: bool) -> None:
        self.any = "*" in allowed
        self.names = frozenset({"localhost"} | {n.lower().rstrip(".") for n in allowed})
        self.trust_proxy = trust_proxy
        self._warned = LogThrottle()

    def host(self, request: web.BaseRequest) -> str:
        """The ``Host`` the client sent this request to (behind a trusted proxy, the
        proxy's client)."""
        headers = request.headers
        host = headers.get("Host", "")
        if self.trust_proxy:
            host = headers.get("X-Forwarded-Host") or host
        return host.split(",")[0].strip()

    def allows(self, host: str) -> bool:
        if self.any or not host:  # no Host at all: not a browser, nothing to rebind
            return True
        name = _host_name(host)
        return name is not None and (name in self.names or _is_ip_address(name))

    def request_allowed(self, request: web.BaseRequest) -> bool:
        host = self.host(request)
        if self.allows(host):
            return True
        if self._warned.first(host.lower()):
            log.warning(
                "refused requests for host %.100r: not an IP address, localhost or one of "
                "--allowed-hosts (add it there if this server should answer to that name; "
                "further refusals for it are not logged for a minute)",
                host,
            )
        return False

    def describe(self) -> str:
        """Which names are accepted, for the start-up log."""
        if self.any:
            return "any host name (--allowed-hosts *)"
        listed = sorted(self.names - {"localhost"})
        if not listed:
            return (
                "IP addresses and localhost only: add the names people reach it by to "
                "--allowed-hosts"
            )
        return f"IP addresses, localhost and {', '.join(listed)} (--allowed-hosts)"


def host_middleware(policy: HostPolicy) -> Any:
    """Every request, on every path, must be sent to a host name the policy allows.

    Not a coroutine: it returns the handler's awaitable (see :func:`origin_middleware`).
    """

    @web.middleware
    def check_host(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Awaitable[web.StreamResponse]:
        if policy.request_allowed(request):
            return handler(request)
        message = "host not allowed: this server does not answer to that name"
        path = request.path
        if path.startswith(("/api/", "/socket.io/")):
            return responded(web.json_response({"error": message}, status=403))
        return responded(
            web.Response(
                status=403,
                text=f"{message}. Its operator can allow the name with --allowed-hosts.\n",
            )
        )

    return check_host


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return ""


class OriginPolicy:
    """Browsers may reach Socket.IO and the API only from our own pages or listed origins.

    "Our own" compares the host and port of the ``Origin`` header with the ``Host`` the
    request was sent to, so that a TLS-terminating proxy passing ``Host`` through works
    without configuration.
    """

    def __init__(self, extra: tuple[str, ...], trust_proxy: bool) -> None:
        self.any = "*" in extra
        self.extra = frozenset(o.rstrip("/").lower() for o in extra)
        self.trust_proxy = trust_proxy

    def allows(self, origin: str, headers: Mapping[str, str]) -> bool:
        """Whether a request with this ``Origin`` and these (HTTP, CGI-style) headers may pass."""
        origin = origin.rstrip("/").lower()
        if self.any or origin in self.extra:
            return True
        host = headers.get("HTTP_HOST", "")
        if self.trust_proxy:
            host = headers.get("HTTP_X_FORWARDED_HOST") or host
        host = host.split(",")[0].strip().lower()
        return bool(host) and _netloc(origin) == host

    def own(self, headers: Mapping[str, str]) -> str:
        host = headers.get("HTTP_HOST", "")
        if self.trust_proxy:
            host = headers.get("HTTP_X_FORWARDED_HOST") or host
        return host.split(",")[0].strip() or "?"

    def socketio_check(self, origin: str | None, environ: dict[str, Any]) -> bool:
        """``cors_allowed_origins`` callback for Socket.IO's handshake.

        engine.io also calls it, without an origin, to decide on CORS response headers.
        """
        if not origin:
            return False
        if self.allows(origin, environ):
            return True
        if environ.get("chatapp.origin_refused"):
            return False  # asked again for the same request's response headers
        environ["chatapp.origin_refused"] = True
        log.warning(
            "refused a Socket.IO connection from origin %.200s (this server is %.200s; "
            "add it to --allowed-origins to allow it)",
            origin,
            self.own(environ),
        )
        return False

    def request_allowed(self, request: web.BaseRequest) -> bool:
        """For HTTP: a request without ``Origin`` (not a cross-site browser call) passes."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        headers = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in request.headers.items()}
        if self.allows(origin, headers):
            return True
        log.warning(
            "refused %s %s from origin %.200s (this server is %.200s)",
            request.method,
            request.path,
            origin,
            self.own(headers),
        )
        return False


def origin_middleware(policy: OriginPolicy) -> Any:
    """The JSON API and every form post accept only our own (or listed) origins.

    Socket.IO's path is left to engine.io, which applies the same policy.

    Not a coroutine: it returns the handler's awaitable (aiohttp awaits it), so that no
    frame of it stays suspended for as long as a websocket lives.
    """

    @web.middleware
    def check_origin(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Awaitable[web.StreamResponse]:
        path = request.path
        guarded = path.startswith("/api/") or request.method not in ("GET", "HEAD", "OPTIONS")
        if guarded and not path.startswith("/socket.io/") and not policy.request_allowed(request):
            if path.startswith("/api/"):
                return responded(web.json_response({"error": "origin not allowed"}, status=403))
            return responded(web.Response(status=403, text="origin not allowed"))
        return handler(request)

    return check_origin


async def responded(response: web.StreamResponse) -> web.StreamResponse:
    """``response`` as an awaitable, for a middleware that returns its handler's awaitable."""
    return response
