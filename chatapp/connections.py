"""How long a TCP connection may take to send a request.

* ``--header-timeout``: a connection that has not sent a complete request head that long
  after it opened, or after the previous response on it, is closed. This is aiohttp's
  keep-alive timer (``keepalive_timeout``), which runs from the connection's start and from
  each response's end and closes the connection only while it waits for a request head
  (:func:`runner_options`).
* ``--body-timeout``: a request whose body has not fully arrived that long after its head
  is cut off, whether or not its handler reads the body (:func:`body_timeout_middleware`).
  A polling POST's reader (``transport.py``) then ends its session quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .logthrottle import LogThrottle
from .origins import client_ip
from .settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def runner_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` that apply ``--header-timeout``."""
    return {"keepalive_timeout": settings.header_timeout}


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
