"""Security headers on every HTTP response: the pages may load and connect only to our origin."""

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


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Add :data:`SECURITY_HEADERS` to responses and to HTTP errors raised by handlers."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        _add(exc.headers)
        raise
    # A WebSocket (or any streamed) response has sent its headers already.
    if not response.prepared:
        _add(response.headers)
    return response
