"""Typed keys for what the application object carries (aiohttp ``AppKey``)."""

from __future__ import annotations

import socketio
from aiohttp import web

from .budget import AddressBudget
from .connections import ConnectionLimit
from .fanout import FeedManager
from .fastpaths import FastPaths
from .handlers import ChatHandlers
from .metrics import Metrics
from .presence import Presence
from .resources import Resources
from .retention import Retention
from .sessions import Sessions
from .settings import Settings
from .signin import SignIns
from .signup import Invites
from .store import MessageStore
from .transport import TransportGuard

settings_key = web.AppKey("settings", Settings)
store_key = web.AppKey("store", MessageStore)
presence_key = web.AppKey("presence", Presence)
sio_key = web.AppKey("sio", socketio.AsyncServer)
resources_key = web.AppKey("resources", Resources)
fanout_key = web.AppKey("fanout", FeedManager)
sessions_key = web.AppKey("sessions", Sessions)
guard_key = web.AppKey("guard", TransportGuard)
connections_key = web.AppKey("connections", ConnectionLimit)
handlers_key = web.AppKey("handlers", ChatHandlers)
metrics_key = web.AppKey("metrics", Metrics)
budget_key = web.AppKey("budget", AddressBudget)
fast_paths_key = web.AppKey("fast_paths", FastPaths)
sign_ins_key = web.AppKey("sign_ins", SignIns)
invites_key = web.AppKey("invites", Invites)
retention_key = web.AppKey("retention", Retention)
