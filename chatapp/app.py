"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp_jinja2
import jinja2
import socketio
from aiohttp import web

from . import resources as resources_mod
from .fanout import FeedManager, FeedRedisManager, Outbox
from .feed import RoomFeed
from .jsoncodec import packet_json
from .keys import (
    fanout_key,
    outbox_key,
    presence_key,
    resources_key,
    settings_key,
    sio_key,
    store_key,
)
from .presence import Presence, open_presence
from .realtime import ChatHandlers
from .security import security_headers
from .settings import Settings
from .store import MessageStore, open_store
from .views import api_errors, engineio_errors, setup_routes

log = logging.getLogger(__name__)

#: Socket.IO frames may be far larger than the 2000-character text limit, so that an
#: over-long text gets a clear ``{ok: false}`` instead of a dropped connection.
MAX_FRAME_BYTES = 1_000_000


def create_app(
    settings: Settings,
    *,
    store: MessageStore | None = None,
    presence: Presence | None = None,
) -> web.Application:
    """Build the chat application: pages, JSON API and Socket.IO on one aiohttp app.

    ``store`` and ``presence`` default to the backends ``settings`` name.
    """
    store = store if store is not None else open_store(settings.db)
    presence = presence if presence is not None else open_presence(settings)
    res = resources_mod.locate()

    app = web.Application(middlewares=[security_headers, api_errors, engineio_errors])
    app[settings_key] = settings
    app[store_key] = store
    app[presence_key] = presence
    app[resources_key] = res

    manager: FeedManager
    if settings.redis_url:
        manager = FeedRedisManager(settings.redis_url, channel=f"{settings.redis_prefix}:socketio")
    else:
        manager = FeedManager()
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        # One connection's events are handled one after another, in arrival order.
        async_handlers=False,
        cors_allowed_origins=OriginCheck(settings.allowed_origins),
        max_http_buffer_size=MAX_FRAME_BYTES,
        transports=list(settings.transports),
        json=packet_json(),
    )
    sio.attach(app)
    app[sio_key] = sio
    app[fanout_key] = manager
    outbox = Outbox(sio)
    app[outbox_key] = outbox
    feed = RoomFeed(store, outbox)
    manager.feed = feed
    manager.outbox = outbox
    ChatHandlers(sio, settings, store, presence, feed, outbox)

    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(res.templates)),
        autoescape=jinja2.select_autoescape(default=True),
    )
    setup_routes(app)
    app.cleanup_ctx.append(_backends)
    app.on_shutdown.append(_disconnect_clients)
    return app


class OriginCheck:
    """Socket.IO accepts browsers from the page's own origin and the configured extras."""

    def __init__(self, extra: tuple[str, ...]) -> None:
        self.any = "*" in extra
        self.extra = frozenset(o.rstrip("/") for o in extra)

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        # No Origin header: not a browser (a bot, a script); origins are a browser defence.
        if origin is None or self.any or origin in self.extra:
            return True
        host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST", "")
        scheme = environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", "http")
        own = f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}"
        if origin == own:
            return True
        log.warning("refused a Socket.IO connection from origin %.200s (not %s)", origin, own)
        return False


async def _backends(app: web.Application) -> AsyncIterator[None]:
    store, presence, fanout = app[store_key], app[presence_key], app[fanout_key]
    missing = app[resources_key].missing_client_files
    if missing:
        log.warning(
            "the Socket.IO browser client is missing (%s): %s",
            ", ".join(missing),
            resources_mod.INSTALL_HINT,
        )
    await store.open()
    try:
        await presence.start()
        try:
            await fanout.start()
            try:
                yield
            finally:
                await fanout.stop()
        finally:
            await presence.close()
    finally:
        await store.close()
        log.info("storage closed")


async def _disconnect_clients(app: web.Application) -> None:
    sio = app[sio_key]
    await app[outbox_key].close_all(grace=3.0)
    await sio.shutdown()
    log.info("all clients disconnected")
