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
    return parser


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
    origins = ns.allowed_origins
    values["allowed_origins"] = tuple(o.strip() for o in str(origins).split(",") if o.strip())
    return Settings(**values)  # type: ignore[arg-type]
