"""Where a request comes from: the client's address and the page's origin.

Forwarded headers (``X-Forwarded-For``, ``-Proto``, ``-Host``) are set by whoever sends the
request, so they are believed only with ``--trust-proxy``, when a reverse proxy we run
overwrites them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

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
