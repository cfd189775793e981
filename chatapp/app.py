"""The application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import resources as resources_mod
from .access import AccessControl, access_middleware, setup_login
from .accounts import Accounts
from .admin import setup_admin
from .budget import AddressBudget
from .connections import ConnectionLimit, body_timeout_middleware
from .dms import DirectMessages
from .events import check_events
from .fanout import FeedManager, FeedRedisManager, LocalFeedManager
from .fastpaths import FastPath, FastPaths
from .feed import RoomFeed
from .files import FileStore, default_dir, setup_files
from .handlers import ChatHandlers
from .heartbeat import check_heartbeat
from .jsoncodec import packet_json
from .keys import (
    budget_key,
    connections_key,
    fanout_key,
    fast_paths_key,
    guard_key,
    handlers_key,
    invites_key,
    metrics_key,
    presence_key,
    resources_key,
    retention_key,
    sessions_key,
    settings_key,
    sign_ins_key,
    sio_key,
    store_key,
)
from .liblog import library_logger
from .managers import check_rooms
from .metrics import Metrics, process_figures, setup_metrics
from .moderation import Moderation, setup_moderation
from .my_rooms import setup_my_rooms
from .origins import HostPolicy, OriginPolicy, host_middleware, is_loopback, origin_middleware
from .passwords import Passwords
from .presence import Presence, open_presence
from .private_rooms import PrivateRooms, setup_private_rooms
from .retention import Retention, setup_retention
from .search import keep_indexing
from .security import setup_security_headers
from .sessions import Sessions, check_direct
from .settings import FAST_PATHS, Settings
from .signin import SignIns, proxy_sign_in, setup_sign_in
from .signup import Invites, setup_sign_up
from .store import Store, open_store
from .transport import TransportGuard
from .views import api_errors, engineio_errors, setup_routes
from .websocket import check_detach

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    presence: Presence | None = None,
) -> web.Application:
    """Build the chat application: pages, JSON API and Socket.IO on one aiohttp app.

    ``store`` and ``presence`` default to the backends ``settings`` name.
    """
    store = store if store is not None else open_store(settings.db)
    presence = presence if presence is not None else open_presence(settings)
    res = resources_mod.locate()

    origins = OriginPolicy(settings.allowed_origins, settings.trust_proxy)
    hosts = HostPolicy(settings.allowed_hosts, settings.trust_proxy)
    if not is_loopback(settings.host):
        log.info("answering to %s", hosts.describe())
    access = AccessControl(settings.access_token, settings.trust_proxy)
    passwords = Passwords()
    accounts = Accounts(store, passwords)
    moderation = Moderation(store, accounts)
    private_rooms = PrivateRooms(store, accounts)
    sign_ins = SignIns(store, accounts, moderation.refusal)

    single_sign_on = []
    if settings.sso_header and settings.trust_proxy:
        log.info("single sign-on: the proxy names the user in %s", settings.sso_header)
        single_sign_on.append(proxy_sign_in(sign_ins, settings.sso_header))
    elif settings.sso_header:
        log.warning("--sso-header is ignored without --trust-proxy: anyone could send it")

    async def is_bot(token: str) -> bool:
        return await sign_ins.bot(token) is not None

    app = web.Application(
        middlewares=[
            body_timeout_middleware(settings.body_timeout, settings.trust_proxy),
            host_middleware(hosts),
            origin_middleware(origins),
            access_middleware(access, is_bot),
            *single_sign_on,
            api_errors,
            engineio_errors,
        ],
        client_max_size=settings.max_body_bytes,
    )
    setup_security_headers(app)
    app[settings_key] = settings
    app[store_key] = store
    app[presence_key] = presence
    app[resources_key] = res

    # TCP connections per address, counted by the listener (cli) and, once detached from
    # aiohttp, by their websocket.
    connections = ConnectionLimit(settings.max_tcp_connections_per_ip, settings.trust_proxy)
    app[connections_key] = connections

    # Speed-ups below the libraries' public API, each on once its self-check passed at
    # start-up (see fastpaths.py).
    fast_paths = app[fast_paths_key] = FastPaths(
        [
            FastPath("detach", "idle websockets without aiohttp's per-request state", check_detach),
            FastPath("heartbeat", "pings from a timer, not a task per session", check_heartbeat),
            FastPath(
                "direct",
                "frames and acks written straight to idle connections, one write per turn",
                check_direct,
            ),
            FastPath(
                "rooms",
                "a disconnection leaves its connection's rooms, not a scan of every room",
                check_rooms,
            ),
            FastPath(
                "events",
                "a client's plain events decoded and handed to their handlers directly",
                check_events,
            ),
        ],
        wanted=settings.fast_paths,
    )
    assert fast_paths.names == FAST_PATHS, "settings.FAST_PATHS names every fast path"

    metrics = app[metrics_key] = Metrics()

    def client_manager(sessions: Sessions[FeedManager]) -> FeedManager:
        # The feed and the manager deliver through the sessions, which make the server
        # with the manager: so they are made here, with the sessions, before the server.
        feed = RoomFeed(store, sessions, metrics)
        if settings.redis_url:
            channel = f"{settings.redis_prefix}:socketio"
            return FeedRedisManager(settings.redis_url, channel, feed, sessions, metrics)
        return LocalFeedManager(feed, sessions)

    # One Sessions holds the server and every hook into the libraries: the send path and
    # the guard's.
    sessions = Sessions(
        client_manager,
        fast_paths,
        detached_close=connections.release,
        # One connection's events are handled one after another, in arrival order.
        async_handlers=False,
        cors_allowed_origins=origins.socketio_check,
        # Far above the 2000-character text limit, so that an over-long text gets a clear
        # ``{ok: false}`` instead of a dropped connection.
        max_http_buffer_size=settings.max_frame_bytes,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        transports=list(settings.transports),
        json=packet_json(),
        logger=library_logger("chatapp.socketio"),
        engineio_logger=library_logger("chatapp.engineio", demote=True),
    )
    sio = sessions.sio
    sio.attach(app)
    app[sio_key] = sio
    app[sessions_key] = sessions
    manager = app[fanout_key] = sessions.manager
    guard = app[guard_key] = TransportGuard(sessions, settings, metrics)
    app.middlewares.append(guard.middleware())
    # What each client address may ask of this process, its Socket.IO events and API
    # requests together.
    budget = AddressBudget(settings.ip_burst, settings.ip_rate)
    app[budget_key] = budget
    app[sign_ins_key] = sign_ins
    files = FileStore(Path(settings.files_dir) if settings.files_dir else default_dir(settings.db))
    app[retention_key] = Retention(store, settings.retention_days, files)
    invites = app[invites_key] = Invites(store)
    app[handlers_key] = ChatHandlers(
        sio,
        settings,
        store,
        presence,
        manager.feed,
        manager,
        sessions,
        access,
        budget,
        accounts=accounts,
        sign_ins=sign_ins,
        moderation=moderation,
        private_rooms=private_rooms,
        dms=DirectMessages(store, accounts, private_rooms),
        metrics=metrics,
        files=files,
    )
    if settings.metrics:
        metrics.watch(lambda: process_figures(sessions, manager.feed))
        setup_metrics(app, metrics)

    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(res.templates)),
        autoescape=jinja2.select_autoescape(default=True),
    )
    setup_routes(app)
    setup_login(app, access)
    setup_sign_in(
        app, sign_ins, settings.trust_proxy, sign_up=settings.sign_up, guests=settings.guests
    )
    setup_moderation(app, moderation, sign_ins)
    setup_admin(
        app,
        store=store,
        accounts=accounts,
        sign_ins=sign_ins,
        moderation=moderation,
        private_rooms=private_rooms,
        retention=app[retention_key],
    )
    setup_retention(app, app[retention_key], sign_ins)
    setup_private_rooms(app, private_rooms, sign_ins)
    setup_my_rooms(app, store, sign_ins, private_rooms)
    setup_files(app, files, settings)
    setup_sign_up(
        app,
        policy=settings.sign_up,
        accounts=accounts,
        passwords=passwords,
        invites=invites,
        sign_ins=sign_ins,
        trust_proxy=settings.trust_proxy,
    )
    app.cleanup_ctx.append(_backends)
    app.on_shutdown.append(_disconnect_clients)
    return app


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
        await app[invites_key].make_claim()  # if the server has no admin yet
        # The bans in force and the private rooms, before anyone comes.
        await app[handlers_key].moderation.refresh()
        await app[handlers_key].private_rooms.refresh()
        await app[handlers_key].accounts.refresh()
        await app[retention_key].sweep()  # what expired while the server was stopped
        await presence.start()
        try:
            await fanout.start()
            try:
                await app[fast_paths_key].start()  # before the first connection is served
                app[sessions_key].use_fast_paths()
                app[fanout_key].indexed = "rooms" in app[fast_paths_key]
                tasks = [
                    asyncio.ensure_future(app[handlers_key].watch_sign_ins()),
                    asyncio.ensure_future(app[retention_key].run()),
                    asyncio.ensure_future(keep_indexing(store)),
                ]
                if app[settings_key].metrics:
                    tasks.append(asyncio.ensure_future(app[metrics_key].sample_lag()))
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                await fanout.stop()
        finally:
            await presence.close()
    finally:
        await store.close()
        log.info("storage closed")


async def _disconnect_clients(app: web.Application) -> None:
    sio = app[sio_key]
    sessions = app[sessions_key]
    app[handlers_key].stopping()
    await sessions.close_all(grace=3.0)
    stuck = sessions.abort_websockets()
    if stuck:
        log.info("dropped %d connection(s) that did not take their close in time", stuck)
    await sio.shutdown()
    await app[handlers_key].announcer.close()
    log.info("all clients disconnected")
