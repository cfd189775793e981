"""The one place chatapp's configuration comes from: CLI flags over ``CHATAPP_*`` variables.

Each setting is declared once, as a field of :class:`Settings` made by :func:`setting`: its
default, help, parser and checks. The command line (:func:`build_parser`), the environment
(:func:`load_settings`) and the README's table (:func:`markdown_table`) all come from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .version import version

T = TypeVar("T")

ENV_PREFIX = "CHATAPP_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRANSPORTS = ("polling", "websocket")
#: The fast paths (chatapp/fastpaths.py), by name.
FAST_PATHS = ("detach", "heartbeat", "direct", "rooms", "events")
REDIS_SCHEMES = ("redis", "rediss", "unix")
PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
HOST_NAME_RE = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,252})")
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")
#: The longest timeout or interval accepted, seconds: far past any sensible value, and
#: short of the sizes where a slip of units (milliseconds for seconds) would hide.
MAX_SECONDS = 86_400.0


class Invalid(ValueError):
    """A value a setting refuses; the message follows the flag's or variable's name."""


# -- parsers: text (from a flag or a variable) to a value, or Invalid ------------------------


def _text(text: str) -> str:
    return text


def _nonempty(text: str) -> str:
    if not text.strip():
        raise Invalid("must not be empty")
    return text


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise Invalid(f"must be true or false (or 1/0, yes/no, on/off), not {text!r}")


def _number(
    kind: type[int] | type[float], low: float, high: float = math.inf, above: bool = False
) -> Callable[[str], float]:
    """A number in [low, high], or in (low, high] when ``above``."""

    def parse(text: str) -> float:
        if not text.strip():
            raise Invalid("must not be empty")
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise Invalid(f"must be {what}, not {text!r}") from None
        if not math.isfinite(value):
            raise Invalid(f"must be a finite number, not {text!r}")
        if above and value <= low:
            raise Invalid(f"must be > {low:g}")
        if not low <= value <= high:
            if math.isinf(high):
                raise Invalid(f"must be >= {low:g}")
            raise Invalid(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _seconds(low: float, above: bool = False) -> Callable[[str], float]:
    return _number(float, low, MAX_SECONDS, above)


def _count(low: int) -> Callable[[str], float]:
    return _number(int, low)


def _rate(low: float, above: bool = False) -> Callable[[str], float]:
    return _number(float, low, above=above)


#: An HTTP header name (RFC 9110 token characters).
HEADER_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
#: Who may create an account on the page (``--sign-up``).
SIGN_UP_POLICIES = ("open", "invite", "closed")
#: Who may mention everyone in a room (``--mention-all``).
MENTION_ALL = ("everyone", "members", "admins")


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise Invalid(f"must be one of {', '.join(LOG_LEVELS)}, not {text!r}")
    return level


def _header_name(text: str) -> str:
    name = text.strip()
    if name and not HEADER_NAME_RE.fullmatch(name):
        raise Invalid(f"must be an HTTP header name, e.g. X-Forwarded-User, not {text!r}")
    return name


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in choices:
            raise Invalid(f"must be one of {', '.join(choices)}, not {text!r}")
        return word

    return parse


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _transports(text: str) -> tuple[str, ...]:
    chosen = _items(text)
    if not chosen or not set(chosen) <= set(TRANSPORTS):
        raise Invalid("must be 'polling,websocket' or 'websocket'")
    return chosen


def _fast_paths(text: str) -> tuple[str, ...]:
    word = text.strip().lower()
    if word in TRUE:
        return FAST_PATHS
    if word in FALSE:
        return ()
    chosen = _items(word)
    unknown = [name for name in chosen if name not in FAST_PATHS]
    if not chosen or unknown:
        raise Invalid(f"must be on, off or some of {','.join(FAST_PATHS)}, not {text!r}")
    return tuple(name for name in FAST_PATHS if name in chosen)


def _hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower().rstrip(".") for h in text.split(","))
    for host in hosts:
        if host and host != "*" and not HOST_NAME_RE.fullmatch(host):
            raise Invalid(f"must list host names (no scheme, port or path), not {host!r}")
    return tuple(h for h in hosts if h)


def _redis_url(text: str) -> str:
    if text and urlsplit(text).scheme not in REDIS_SCHEMES:
        raise Invalid("must start with redis://, rediss:// or unix://")
    return text


def _redis_prefix(text: str) -> str:
    if not PREFIX_RE.fullmatch(text):
        raise Invalid("must be 1-64 of A-Z a-z 0-9 _ - . :")
    return text


def _ping_interval(text: str) -> float:
    value = _seconds(1)(text)
    if value % 1:
        # python-engineio tells clients the interval in whole seconds, cut down: told 0 s
        # for 0.3, a client drops the connection as soon as its ping timeout passes.
        raise Invalid("must be a whole number of seconds")
    return value


# -- the declaration ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """How one setting is given and checked (the metadata of a :class:`Settings` field)."""

    help: str
    parse: Callable[[str], Any]
    #: How the default reads in ``--help`` and the README, when its plain form would not do.
    shown: str | None = None


def setting(
    default: T,
    help: str,
    parse: Callable[[str], Any] = _nonempty,
    *,
    shown: str | None = None,
) -> T:
    """A :class:`Settings` field: its flag is ``--name-with-dashes``, its variable
    ``CHATAPP_NAME``; ``parse`` turns their text into the value or raises :class:`Invalid`."""
    spec = Spec(help, parse, shown)
    return dataclasses.field(default=default, metadata={"setting": spec})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything chatapp can be told at start. Immutable once built."""

    host: str = setting("127.0.0.1", "address to listen on (`0.0.0.0` for the LAN)")
    port: int = setting(8080, "TCP port; `0` picks a free one", _number(int, 0, 65535))
    db: str = setting(
        "chatapp.db",
        "where history is kept: a SQLite file (or `sqlite:///path`), in WAL mode, or a "
        "`postgresql://` URL (add `?options=-csearch_path%3Dname` for a schema of its own)",
    )
    log_level: str = setting(
        "info",
        "logging threshold: " + ", ".join(LOG_LEVELS) + " (debug adds a line per HTTP request)",
        _log_level,
    )
    message_burst: float = setting(
        10.0, "messages one connection may send at once before being rate limited", _rate(1)
    )
    message_rate: float = setting(
        1.0, "sustained messages per second per connection", _rate(0, above=True)
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        "host names the server answers to besides IP addresses and `localhost`, "
        "comma-separated, or `*`; other names get `403` (this stops DNS rebinding). List the "
        "name people use in the URL, e.g. `chat.lan`",
        _hosts,
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        "extra origins allowed to use Socket.IO and the JSON API, comma-separated, or `*`",
        _items,
        shown="(own origin)",
    )
    redis_url: str = setting(
        "",
        "`redis://`, `rediss://` or `unix://` URL: several processes share fan-out and "
        "presence (docs/deploy.md)",
        _redis_url,
    )
    #: Namespace of every Redis key and of the fan-out channel.
    redis_prefix: str = setting(
        "chatapp",
        "prefix of the Redis keys and fan-out channel; processes of one chat share it, "
        "separate chats on one Redis each use their own",
        _redis_prefix,
    )
    presence_ttl: float = setting(
        20.0,
        "with Redis: seconds until the users of a process that stopped answering (killed, "
        "frozen, cut off from Redis) are shown as gone",
        _seconds(1),
    )
    #: Long-polling needs sticky sessions behind a load balancer.
    transports: tuple[str, ...] = setting(
        TRANSPORTS,
        "Engine.IO transports accepted: `polling,websocket`, or `websocket` alone for load "
        "balancers without sticky sessions",
        _transports,
    )
    typing_timeout: float = setting(
        5.0,
        "seconds after which a typing indicator that was not renewed is cleared",
        _seconds(0, above=True),
    )
    access_token: str = setting(
        "",
        "make the server private: pages, API and Socket.IO need this token (set it as "
        "`CHATAPP_ACCESS_TOKEN`: flags show in `ps`); unset for an open server",
        _nonempty,
    )
    trust_proxy: bool = setting(
        False,
        "behind a reverse proxy: client address from `X-Forwarded-For`, public origin from "
        "`X-Forwarded-Proto`/`-Host`",
        _boolean,
    )
    retention_days: float = setting(
        0.0,
        "days of history kept (`0`: all of it); older messages are deleted from the database, "
        "and so from every API and catch-up, at start and hourly. An admin can set a room's "
        "own (`PUT /api/rooms/{room}/retention`)",
        _number(float, 0, 36_500),
    )
    sso_header: str = setting(
        "",
        "behind `--trust-proxy` only: the request header in which the authenticating proxy "
        "(oauth2-proxy, Authelia, Authentik...) names the signed-in user, e.g. "
        "`X-Forwarded-User`; that person is signed in, their account made on first sight. "
        "The proxy must set it on every request, replacing what the client sent",
        _header_name,
    )
    sign_up: str = setting(
        "invite",
        "who may create an account on the page: `open` (anyone), `invite` (whoever has an "
        "admin's single-use invite link) or `closed` (only the `users add` command)",
        _choice(SIGN_UP_POLICIES),
    )
    mention_all: str = setting(
        "everyone",
        "who may mention everyone in a room (`@room`, `@here`): `everyone`, `members` "
        "(accounts, not guests) or `admins`",
        _choice(MENTION_ALL),
    )
    edit_window: float = setting(
        0.0,
        "seconds after sending during which its author may edit a message; `0`: no limit",
        _number(float, 0),
    )
    files_dir: str = setting(
        "",
        "directory of uploaded files; empty: next to the SQLite database (`<database>-files`), "
        "or `chatapp-files` in the working directory with PostgreSQL. Every process of one "
        "server must see the same directory",
        _text,
    )
    upload_max_bytes: int = setting(
        25 * 1024 * 1024,
        "largest file one may attach to a message, in bytes (25 MiB); `0`: no uploads",
        _count(0),
    )
    upload_quota_bytes: int = setting(
        500 * 1024 * 1024,
        "bytes of files one account, or one address for guests, may attach per 24 hours (500 MiB)",
        _count(0),
    )
    metrics: bool = setting(
        False,
        "serve Prometheus metrics at `/metrics` (with `--access-token`, only to those the "
        "token lets in, as the API)",
        _boolean,
    )
    guests: bool = setting(
        True,
        "let people chat without an account, under a name of their choosing (never a "
        "handle or its look-alike); `false`: everyone signs in",
        _boolean,
    )
    fast_paths: tuple[str, ...] = setting(
        FAST_PATHS,
        "speed-ups that rely on the libraries' internals, each run only once its self-check "
        "passed at start-up: `on`, `off` (the libraries' public API only) or the ones to run, "
        "e.g. `heartbeat` (see docs/architecture.md)",
        _fast_paths,
    )
    max_connections_per_ip: int = setting(
        20, "simultaneous Socket.IO connections from one address (`0`: no limit)", _count(0)
    )
    max_rooms_per_connection: int = setting(
        50,
        "rooms one Socket.IO connection may be in at once (the one it connected to and those "
        "it subscribed to); it may subscribe to that many at once, then one a second",
        _count(1),
    )
    event_burst: float = setting(
        40.0,
        "events of any kind (message, typing, history, rename...) one connection may send at once",
        _rate(1),
    )
    event_rate: float = setting(20.0, "sustained events per second per connection", _rate(0.001))
    #: Per process; costs are chatapp.budget's.
    ip_burst: float = setting(
        400.0,
        "cost units one client address may spend at once, all its connections and API "
        "requests together (a message, typing or rename costs 1, a history page of N "
        "1 + N/10, `/api/rooms` 11)",
        _rate(11),  # the dearest request: a history page of 100
    )
    ip_rate: float = setting(
        100.0, "cost units refilled per second per client address", _rate(0.001)
    )
    #: engine.io's ``max_http_buffer_size``. Frames must carry a 2000-character text even
    #: when every character is JSON-escaped (a surrogate pair is 12 bytes).
    max_frame_bytes: int = setting(
        65_536,
        "largest Socket.IO frame or polling body, bytes (clients are told it as "
        "`maxPayload`); a larger one closes that connection (a too-long text below it gets "
        "`{ok: false}`)",
        _count(65_536),
    )
    max_body_bytes: int = setting(
        65_536, "largest HTTP request body, bytes (the login form)", _count(1024)
    )
    max_queued_packets: int = setting(
        1000,
        "packets waiting for a client that does not read before it is disconnected (it "
        "catches up with `since`)",
        _count(10),
    )
    #: What its transport buffers is bounded by flow control to 64 KiB plus one frame.
    max_queued_bytes: int = setting(
        4 * 1024 * 1024,
        "bytes waiting for a client that does not read before it is disconnected (4 MiB)",
        _count(65_536),
    )
    #: A room message queued for many counts once.
    max_queued_bytes_total: int = setting(
        256 * 1024 * 1024,
        "bytes waiting for all clients together (256 MiB); past it the client holding the "
        "most is disconnected first",
        _count(1_048_576),
    )
    connect_timeout: float = setting(
        10.0, "seconds a transport may stay open without a Socket.IO connect", _seconds(0.1)
    )
    ping_interval: float = setting(
        25.0,
        "seconds between heartbeats, a whole number (the Engine.IO handshake tells clients "
        "whole seconds)",
        _ping_interval,
    )
    ping_timeout: float = setting(20.0, "seconds a client has to answer a heartbeat", _seconds(0.1))
    max_tcp_connections_per_ip: int = setting(
        128,
        "simultaneous TCP connections (pages, API, Socket.IO) from one address; more get a "
        "`503` (`0`: no limit). Behind a reverse proxy every connection comes from the "
        "proxy: set `0` there",
        _count(0),
    )
    header_timeout: float = setting(
        10.0,
        "seconds a client has to send a complete request head (also how long an idle "
        "keep-alive connection stays open)",
        _seconds(0.1),
    )
    body_timeout: float = setting(
        10.0, "seconds a client has to send a request's body", _seconds(0.1)
    )
    stop_timeout: float = setting(
        15.0,
        "seconds a stop (SIGTERM, Ctrl-C) may take: clients get 3 of them to take their "
        "close, requests under way and the goodbyes to Redis and the database the rest. Past "
        "it the server logs what it was still waiting on and exits with status 3",
        _seconds(0.1),
    )


def specs() -> list[tuple[str, Spec, object]]:
    """Every setting: (field name, spec, default), in declaration order."""
    return [(f.name, f.metadata["setting"], f.default) for f in dataclasses.fields(Settings)]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def variable(name: str) -> str:
    return ENV_PREFIX + name.upper()


def shown_default(spec: Spec, default: object) -> str:
    """The default as ``--help`` and the README show it."""
    if spec.shown is not None:
        return spec.shown
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        default = ",".join(default)
    if isinstance(default, float):
        default = f"{default:g}"
    return f"`{default}`" if default != "" else "(none)"


def redacted(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def build_parser(
    prog: str = "python -m chatapp",
    only: Sequence[str] | None = None,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """The CLI: a flag per setting (or per setting in ``only``), left out of the namespace
    when not given, so that :func:`load_settings` can fall back on the variable.

    ``prog`` is the command as the user typed it, for usage lines and errors.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        usage="%(prog)s [-h] [--version] [--FLAG VALUE ...]",
        argument_default=argparse.SUPPRESS,
        description=(
            description
            or "Run the chatapp server: the chat pages, the JSON API and Socket.IO on one "
            f"port. '{prog} migrate' brings the database's schema up to date and exits."
        )
        + " Every flag can also be set as an environment variable CHATAPP_<FLAG> "
        "(--db as CHATAPP_DB); a flag wins over its variable.",
    )
    parser.add_argument("--version", action="version", version=f"chatapp {version()}")
    add_flags(parser, only)
    return parser


def add_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """Add a flag per setting (or per setting in ``only``) to ``parser``."""
    for name, spec, default in specs():
        if only is not None and name not in only:
            continue
        text = f"{spec.help} (default {shown_default(spec, default)})".replace("%", "%%")
        if spec.parse is _boolean:
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag(name), metavar="VALUE", help=text)


def load_settings(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    prog: str = "python -m chatapp",
    only: Sequence[str] | None = None,
    description: str | None = None,
) -> Settings:
    """Parse CLI flags (over ``CHATAPP_*`` variables, over the defaults) into a Settings;
    ``only`` limits the flags and variables read to those settings.

    A bad value, from a flag or a variable, exits through argparse with a usage line naming
    it and status 2. A variable is not read when its flag is given.
    """
    parser = build_parser(prog, only, description)
    return settings_from(parser, parser.parse_args(argv), environ, only)


def settings_from(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    only: Sequence[str] | None = None,
) -> Settings:
    """The Settings of flags ``parser`` parsed into ``args`` (see :func:`add_flags`), over
    ``CHATAPP_*`` variables, over the defaults; a bad value exits through ``parser``."""
    environ = os.environ if environ is None else environ
    given = vars(args)
    values: dict[str, object] = {}
    for name, spec, _ in specs():
        if only is not None and name not in only:
            continue
        if name in given:
            source, raw = flag(name), given[name]
        elif variable(name) in environ:
            source, raw = variable(name), environ[variable(name)]
        else:
            continue
        if isinstance(raw, bool):  # --flag / --no-flag
            values[name] = raw
            continue
        try:
            values[name] = spec.parse(raw)
        except Invalid as exc:
            parser.error(f"{source} {exc}")
    return Settings(**values)  # type: ignore[arg-type]


def markdown_table() -> str:
    """The README's table of settings."""
    lines = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for name, spec, default in specs():
        shown = shown_default(spec, default)
        lines.append(f"| `{flag(name)}` | `{variable(name)}` | {shown} | {spec.help} |")
    return "\n".join(lines) + "\n"


#: The markers around the table in README.md (``.ci/settings_table.py --write`` fills it).
TABLE_BEGIN = "<!-- settings table: begin (python .ci/settings_table.py --write) -->\n"
TABLE_END = "<!-- settings table: end -->\n"


def readme_table(readme: str) -> str:
    """The settings table between the markers of ``readme`` (README.md's text)."""
    return readme[readme.index(TABLE_BEGIN) + len(TABLE_BEGIN) : readme.index(TABLE_END)]
