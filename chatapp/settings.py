"""The one place chatapp's configuration comes from: CLI flags over ``CHATAPP_*`` variables."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from .version import version

ENV_PREFIX = "CHATAPP_"
PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
REDIS_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
HOST_NAME_RE = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,252})")


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
    #: Host names the server answers to besides IP addresses and ``localhost`` ("*" for
    #: any): a name nobody listed is refused, which is what stops DNS rebinding.
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
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
    #: Largest Socket.IO frame and polling body (engine.io ``max_http_buffer_size``, which
    #: clients are told as ``maxPayload``), bytes. Above the longest text even when every
    #: character is JSON-escaped, so an over-long text gets ``{ok: false}``, not a drop.
    max_frame_bytes: int = 65_536
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
    #: Simultaneous TCP connections (HTTP and websockets) from one peer address (0: no
    #: limit). Behind a proxy every connection comes from the proxy's address.
    max_tcp_connections_per_ip: int = 128
    #: Seconds a client has to send a complete request head, from the connection's start
    #: or from the end of the previous response on it.
    header_timeout: float = 10.0
    #: Seconds a client has to send a request's whole body once its head arrived.
    body_timeout: float = 10.0


def redacted(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True, slots=True)
class _FromEnv:
    """A flag's default taken from its ``CHATAPP_*`` variable. Not a ``str``, so argparse
    leaves it alone (it converts string defaults with the flag's ``type`` and would report
    a bad value under the flag's name); ``load_settings`` checks it under the variable's."""

    variable: str
    text: str

    def __str__(self) -> str:
        return self.text


def _env_default(environ: Mapping[str, str], name: str, default: object) -> object:
    variable = ENV_PREFIX + name.upper()
    return _FromEnv(variable, environ[variable]) if variable in environ else default


def build_parser(
    environ: Mapping[str, str], prog: str = "python -m chatapp"
) -> argparse.ArgumentParser:
    """The CLI, with each flag's default taken from its ``CHATAPP_<NAME>`` variable.

    ``prog`` is the command as the user typed it, for usage lines and errors.
    """
    d = Settings()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the chatapp server: the chat pages, the JSON API and Socket.IO "
        "on one port. Every flag can also be set as an environment variable "
        "CHATAPP_<FLAG> (e.g. CHATAPP_PORT=9000); flags win.",
    )

    parser.add_argument("--version", action="version", version=f"chatapp {version()}")

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
        "--allowed-hosts",
        default=env("allowed_hosts", ""),
        help="comma-separated host names this server answers to besides IP addresses and "
        "localhost (which always work), or '*' for any; requests for other names are "
        "refused, which stops DNS rebinding (default: none)",
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
        "largest Socket.IO frame or polling body in bytes (clients are told it as "
        "maxPayload); a larger one closes the connection",
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
    (
        "ping_interval",
        float,
        _DEFAULTS.ping_interval,
        "seconds between heartbeats, a whole number (clients are told it in whole seconds)",
    ),
    (
        "ping_timeout",
        float,
        _DEFAULTS.ping_timeout,
        "seconds a client has to answer a heartbeat before it is disconnected",
    ),
    (
        "max_tcp_connections_per_ip",
        int,
        _DEFAULTS.max_tcp_connections_per_ip,
        "simultaneous TCP connections (pages, API, Socket.IO) from one IP address, "
        "behind a proxy the proxy's; 0 for no limit",
    ),
    (
        "header_timeout",
        float,
        _DEFAULTS.header_timeout,
        "seconds a client has to send a complete request head (also how long an idle "
        "keep-alive connection stays open)",
    ),
    (
        "body_timeout",
        float,
        _DEFAULTS.body_timeout,
        "seconds a client has to send a request's body",
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
    "ping_interval": 1,
    "ping_timeout": 0.1,
    "max_tcp_connections_per_ip": 0,
    "header_timeout": 0.1,
    "body_timeout": 0.1,
}


def load_settings(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    prog: str = "python -m chatapp",
) -> Settings:
    """Parse CLI flags (over ``CHATAPP_*`` variables) into a Settings.

    Bad values exit through argparse with a usage line and status 2.
    """
    environ = os.environ if environ is None else environ
    parser = build_parser(environ, prog)
    ns = parser.parse_args(argv)
    values: dict[str, object] = {}
    # Where each value from the environment came from, for error messages.
    variables: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        if not hasattr(ns, f.name):
            continue
        value = getattr(ns, f.name)
        if isinstance(value, _FromEnv):
            variables[f.name] = value.variable
            value = value.text
        values[f.name] = value

    def source(name: str) -> str:
        """The flag or the variable a setting's value came from."""
        return variables.get(name, "--" + name.replace("_", "-"))

    def convert(name: str, kind: type) -> None:
        # Flags arrive converted by argparse; values from the environment as text.
        try:
            values[name] = kind(str(values[name]))
        except ValueError:
            parser.error(f"{source(name)}: invalid {kind.__name__} value: {values[name]!r}")

    convert("port", int)
    convert("message_burst", float)
    convert("message_rate", float)
    convert("typing_timeout", float)
    convert("presence_ttl", float)
    for name, kind, _, _ in _LIMITS:
        convert(name, kind)
    if str(values["log_level"]).lower() not in LOG_LEVELS:
        parser.error(f"{source('log_level')} must be one of {', '.join(LOG_LEVELS)}")
    values["log_level"] = str(values["log_level"]).lower()
    if not 0 <= int(str(values["port"])) <= 65535:
        parser.error(f"{source('port')} must be between 0 and 65535")
    if float(str(values["message_burst"])) < 1:
        parser.error(f"{source('message_burst')} must be >= 1")
    if float(str(values["message_rate"])) <= 0:
        parser.error(f"{source('message_rate')} must be > 0")
    if float(str(values["typing_timeout"])) <= 0:
        parser.error(f"{source('typing_timeout')} must be > 0")
    if float(str(values["presence_ttl"])) < 1:
        parser.error(f"{source('presence_ttl')} must be >= 1 second")
    if not PREFIX_RE.fullmatch(str(values["redis_prefix"])):
        parser.error(f"{source('redis_prefix')} must be 1-64 of A-Z a-z 0-9 _ - . :")
    redis_url = str(values["redis_url"])
    if redis_url and urlsplit(redis_url).scheme not in REDIS_SCHEMES:
        parser.error(f"{source('redis_url')} must start with redis://, rediss:// or unix://")
    transports = tuple(t.strip() for t in str(values["transports"]).split(",") if t.strip())
    if not transports or not set(transports) <= {"polling", "websocket"}:
        parser.error(f"{source('transports')} must be 'polling,websocket' or 'websocket'")
    values["transports"] = transports
    for name, minimum in _MINIMUMS.items():
        if float(str(values[name])) < minimum:
            parser.error(f"{source(name)} must be >= {minimum:g}")
    if float(str(values["ping_interval"])) % 1:
        # python-engineio tells clients the interval in whole seconds, cut down: told 0 s
        # for 0.3, a client drops the connection as soon as its ping timeout passes.
        parser.error(f"{source('ping_interval')} must be a whole number of seconds")
    values["trust_proxy"] = bool(values["trust_proxy"])
    values["access_token"] = str(values["access_token"])
    origins = str(values["allowed_origins"])
    values["allowed_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
    hosts = tuple(h.strip().lower().rstrip(".") for h in str(values["allowed_hosts"]).split(","))
    bad = [h for h in hosts if h and h != "*" and not HOST_NAME_RE.fullmatch(h)]
    if bad:
        parser.error(
            f"{source('allowed_hosts')}: {bad[0]!r} is not a host name (no scheme, port or path)"
        )
    values["allowed_hosts"] = tuple(h for h in hosts if h)
    return Settings(**values)  # type: ignore[arg-type]
