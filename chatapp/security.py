"""Security headers on every HTTP response: the pages may load and connect only to our origin.

Added when a response is prepared (``on_response_prepare``), not by a middleware: a
middleware awaiting the handler would stay suspended for a websocket's whole life, and
a websocket's handshake is sent before it could add anything.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

#: Scripts, styles, images and connections (Socket.IO over HTTP and WebSocket) from our own
#: origin only: no inline script or style, no plugins, no framing, no <base> rewriting.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Room URLs are the only "secret" a room has: never hand them to another site.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _add(headers: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Every response, HTTP errors raised by handlers included, but not a WebSocket
    # handshake (the headers are about documents).
    if not isinstance(response, web.WebSocketResponse):
        _add(response.headers)


def setup_security_headers(app: web.Application) -> None:
    """Add :data:`SECURITY_HEADERS` to every HTTP response of ``app``."""
    app.on_response_prepare.append(_security_headers)
