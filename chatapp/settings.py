"""The one place chatapp's configuration comes from: CLI flags over ``CHATAPP_*`` variables."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "CHATAPP_"
PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
REDIS_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything chatapp can be told at start. Immutable once built."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: A SQLite file path (or ``sqlite:///path``) or a ``postgresql://`` URL.
    db: str = "chatapp.db"
    log_level: str = "info"
    #: Token bucket per connection for ``message``: bucket size and refill per second.
    message_burst: float = 10.0
    message_rate: float = 1.0
    #: Extra origins allowed to open Socket.IO connections ("*" for any).
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    #: Redis URL for fan-out and presence across processes; empty means one process.
    redis_url: str = ""
    #: Namespace of every Redis key and of the fan-out channel: processes of one chat share
    #: it, separate chats (or test runs) on one Redis each use their own.
    redis_prefix: str = "chatapp"
    #: Seconds after which the connections of a process that stopped heartbeating (killed,
    #: frozen, cut off from Redis) are removed from presence.
    presence_ttl: float = 20.0
    #: Engine.IO transports accepted: long-polling needs sticky sessions behind a load
    #: balancer; ("websocket",) refuses it, for deployments without stickiness.
    transports: tuple[str, ...] = ("polling", "websocket")
    #: Seconds before a typing indicator is cleared without renewal.
    typing_timeout: float = 5.0
    #: When set, pages, the JSON API and Socket.IO require this token (or a cookie from
    #: the login form). Empty means an open server.
    access_token: str = field(default="", repr=False)
    #: Honour X-Forwarded-For / -Proto / -Host from a reverse proxy in front of us.
    trust_proxy: bool = False
    #: Simultaneous Socket.IO connections per client IP address (0: no limit).
    max_connections_per_ip: int = 20
    #: Token bucket per connection for every event (message, typing, history, rename...).
    event_burst: float = 40.0
    event_rate: float = 20.0
    #: Token bucket per client address, in cost units, for all its connections' events and
    #: API requests together: a message, typing or rename costs 1, a history page
    #: 1 + limit/10 (``chatapp.budget``). Per process.
    ip_burst: float = 400.0
    ip_rate: float = 100.0
    #: Largest Socket.IO frame (engine.io ``max_http_buffer_size``), bytes. Far above the
    #: 2000-character text limit, so an over-long text gets ``{ok: false}``, not a drop.
    max_frame_bytes: int = 1_000_000
    #: Largest HTTP request body (forms, API), bytes.
    max_body_bytes: int = 65_536
    #: Packets waiting to be sent to one connection before it counts as a slow consumer
    #: and is disconnected.
    max_queued_packets: int = 1000
    #: Bytes waiting to be sent to one connection before it counts as a slow consumer and
    #: is disconnected (its send queue; what its transport buffers is bounded by flow
    #: control to 64 KiB plus one frame).
    max_queued_bytes: int = 4 * 1024 * 1024
    #: Bytes waiting in all connections' send queues together (a room message queued for
    #: many counts once); past it the connection holding the most is disconnected.
    max_queued_bytes_total: int = 256 * 1024 * 1024
    #: Seconds an engine.io session may stay open without completing a Socket.IO connect.
    connect_timeout: float = 10.0
    #: Engine.IO heartbeat: a ping every ``ping_interval`` s; a client that does not answer
    #: within ``ping_timeout`` s is disconnected.
    ping_interval: float = 25.0
    ping_timeout: float = 20.0


def redacted(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _env_default(environ: Mapping[str, str], name: str, default: object) -> object:
    return environ.get(ENV_PREFIX + name.upper(), default)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The CLI, with each flag's default taken from its ``CHATAPP_<NAME>`` variable."""
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m chatapp",
        description="Run the chatapp server: the chat pages, the JSON API and Socket.IO "
        "on one port. Every flag can also be set as an environment variable "
        "CHATAPP_<FLAG> (e.g. CHATAPP_PORT=9000); flags win.",
    )

    def env(name: str, default: object) -> object:
        return _env_default(environ, name, default)

    parser.add_argument(
        "--host", default=env("host", d.host), help=f"address to listen on (default {d.host})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env("port", d.port),
        help=f"TCP port to listen on; 0 picks a free one (default {d.port})",
    )
    parser.add_argument(
        "--db",
        default=env("db", d.db),
        help="where history is kept: a SQLite file path or sqlite:///path, "
        f"or a postgresql:// URL (default ./{d.db})",
    )
    parser.add_argument(
        "--log-level",
        default=env("log_level", d.log_level),
        type=str.lower,
        choices=LOG_LEVELS,
        help=f"logging threshold (default {d.log_level})",
    )
    parser.add_argument(
        "--message-burst",
        type=float,
        default=env("message_burst", d.message_burst),
        help="messages a connection may send at once before being rate limited "
        f"(default {d.message_burst:g})",
    )
    parser.add_argument(
        "--message-rate",
        type=float,
        default=env("message_rate", d.message_rate),
        help=f"sustained messages per second per connection (default {d.message_rate:g})",
    )
    parser.add_argument(
        "--allowed-origins",
        default=env("allowed_origins", ""),
        help="comma-separated extra origins allowed to connect to Socket.IO, or '*' for any "
        "(default: only the page's own origin)",
    )
    parser.add_argument(
        "--redis-url",
        default=env("redis_url", d.redis_url),
        help="redis://, rediss:// or unix:// URL: fan-out and presence shared by several "
        "chatapp processes (default: none, one process)",
    )
    parser.add_argument(
        "--redis-prefix",
        default=env("redis_prefix", d.redis_prefix),
        help="prefix of chatapp's Redis keys and fan-out channel; processes of one chat "
        f"must share it (default {d.redis_prefix})",
    )
    parser.add_argument(
        "--presence-ttl",
        type=float,
        default=env("presence_ttl", d.presence_ttl),
        help="with Redis: seconds after which the users of a process that stopped "
        f"answering are shown as gone (default {d.presence_ttl:g})",
    )
    parser.add_argument(
        "--transports",
        default=env("transports", ",".join(d.transports)),
        help="Engine.IO transports accepted: 'polling,websocket' (default) or 'websocket' "
        "(for several processes behind a load balancer without sticky sessions)",
    )
    parser.add_argument(
        "--typing-timeout",
        type=float,
        default=env("typing_timeout", d.typing_timeout),
        help="seconds after which a typing indicator that was not renewed is cleared "
        f"(default {d.typing_timeout:g})",
    )
    parser.add_argument(
        "--access-token",
        default=env("access_token", d.access_token),
        help="make the server private: pages, API and Socket.IO require this token or "
        "password (prefer the CHATAPP_ACCESS_TOKEN variable: flags show in ps) "
        "(default: none, open to anyone who can reach it)",
    )
    parser.add_argument(
        "--trust-proxy",
        action="store_true",
        default=_truthy(env("trust_proxy", "")),
        help="behind a reverse proxy: take the client address from X-Forwarded-For and "
        "the public origin from X-Forwarded-Proto/-Host (default: off, never trusted)",
    )
    for name, kind, default, text in _LIMITS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=env(name, default),
            help=f"{text} (default {default:g})"
            if kind is float
            else f"{text} (default {default})",
        )
    return parser


def _show(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


_DEFAULTS = Settings()
#: Limits and timeouts: (field, type, default, help). Each must be >= its minimum below.
_LIMITS: tuple[tuple[str, type, float, str], ...] = (
    (
        "max_connections_per_ip",
        int,
        _DEFAULTS.max_connections_per_ip,
        "simultaneous Socket.IO connections from one IP address; 0 for no limit",
    ),
    (
        "event_burst",
        float,
        _DEFAULTS.event_burst,
        "events of any kind a connection may send at once before being rate limited",
    ),
    ("event_rate", float, _DEFAULTS.event_rate, "sustained events per second per connection"),
    (
        "ip_burst",
        float,
        _DEFAULTS.ip_burst,
        "cost units one client address may spend at once, all its connections and API "
        "requests together (a message, typing or rename costs 1, a history page of N "
        "messages 1 + N/10)",
    ),
    ("ip_rate", float, _DEFAULTS.ip_rate, "cost units per second per client address"),
    (
        "max_frame_bytes",
        int,
        _DEFAULTS.max_frame_bytes,
        "largest Socket.IO frame in bytes; a larger one closes the connection",
    ),
    ("max_body_bytes", int, _DEFAULTS.max_body_bytes, "largest HTTP request body in bytes"),
    (
        "max_queued_packets",
        int,
        _DEFAULTS.max_queued_packets,
        "packets queued for a connection that does not read before it is disconnected",
    ),
    (
        "max_queued_bytes",
        int,
        _DEFAULTS.max_queued_bytes,
        "bytes queued for a connection that does not read before it is disconnected",
    ),
    (
        "max_queued_bytes_total",
        int,
        _DEFAULTS.max_queued_bytes_total,
        "bytes queued for all connections together; past it the connection holding the "
        "most is disconnected",
    ),
    (
        "connect_timeout",
        float,
        _DEFAULTS.connect_timeout,
        "seconds a transport may stay open without a Socket.IO connect",
    ),
    ("ping_interval", float, _DEFAULTS.ping_interval, "seconds between heartbeats"),
    (
        "ping_timeout",
        float,
        _DEFAULTS.ping_timeout,
        "seconds a client has to answer a heartbeat before it is disconnected",
    ),
)
#: The smallest accepted value of each limit. Frames must carry a 2000-character text
#: even when every character is JSON-escaped (a surrogate pair is 12 bytes).
_MINIMUMS: dict[str, float] = {
    "max_connections_per_ip": 0,
    "event_burst": 1,
    "event_rate": 0.001,
    "ip_burst": 11,  # the dearest request: a history page of 100
    "ip_rate": 0.001,
    "max_frame_bytes": 65_536,
    "max_body_bytes": 1024,
    "max_queued_packets": 10,
    "max_queued_bytes": 65_536,
    "max_queued_bytes_total": 1_048_576,
    "connect_timeout": 0.1,
    "ping_interval": 0.1,
    "ping_timeout": 0.1,
}


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Parse CLI flags (over ``CHATAPP_*`` variables) into a Settings.

    Bad values exit through argparse with a usage line and status 2.
    """
    environ = os.environ if environ is None else environ
    parser = build_parser(environ)
    ns = parser.parse_args(argv)
    # argparse applies `type` only to values from the command line or string defaults;
    # environment values arrive as strings, so convert them here with clear errors.
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        if not hasattr(ns, f.name):
            continue
        values[f.name] = getattr(ns, f.name)
    try:
        values["port"] = int(str(values["port"]))
        values["message_burst"] = float(str(values["message_burst"]))
        values["message_rate"] = float(str(values["message_rate"]))
        values["typing_timeout"] = float(str(values["typing_timeout"]))
        values["presence_ttl"] = float(str(values["presence_ttl"]))
        for name, kind, _, _ in _LIMITS:
            values[name] = kind(str(values[name]))
    except ValueError as exc:
        parser.error(f"invalid number in a CHATAPP_* variable: {exc}")
    if str(values["log_level"]).lower() not in LOG_LEVELS:
        parser.error(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
    values["log_level"] = str(values["log_level"]).lower()
    if not 0 <= int(str(values["port"])) <= 65535:
        parser.error("--port must be between 0 and 65535")
    if float(str(values["message_burst"])) < 1 or float(str(values["message_rate"])) <= 0:
        parser.error("--message-burst must be >= 1 and --message-rate > 0")
    if float(str(values["typing_timeout"])) <= 0:
        parser.error("--typing-timeout must be > 0")
    if float(str(values["presence_ttl"])) < 1:
        parser.error("--presence-ttl must be >= 1 second")
    if not PREFIX_RE.fullmatch(str(values["redis_prefix"])):
        parser.error("--redis-prefix must be 1-64 of A-Z a-z 0-9 _ - . :")
    redis_url = str(values["redis_url"])
    if redis_url and urlsplit(redis_url).scheme not in REDIS_SCHEMES:
        parser.error("--redis-url must start with redis://, rediss:// or unix://")
    transports = tuple(t.strip() for t in str(values["transports"]).split(",") if t.strip())
    if not transports or not set(transports) <= {"polling", "websocket"}:
        parser.error("--transports must be 'polling,websocket' or 'websocket'")
    values["transports"] = transports
    for name, minimum in _MINIMUMS.items():
        if float(str(values[name])) < minimum:
            parser.error(f"--{name.replace('_', '-')} must be >= {minimum:g}")
    values["trust_proxy"] = bool(values["trust_proxy"])
    values["access_token"] = str(values["access_token"])
    origins = ns.allowed_origins
    values["allowed_origins"] = tuple(o.strip() for o in str(origins).split(",") if o.strip())
    return Settings(**values)  # type: ignore[arg-type]
