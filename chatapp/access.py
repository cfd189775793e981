"""Optional access control for private deployments: one shared token (or password).

With ``--access-token`` set, a browser proves it knows the token once, through the login
form, and then carries a signed cookie; bots send the token itself, as ``auth.token`` on
Socket.IO or ``Authorization: Bearer`` on the JSON API. Without it, nothing here applies.

The cookie is ``<expiry>.<HMAC-SHA256(key, expiry)>`` with the key derived from the token:
every process that shares the token accepts it, restarts keep people logged in, and
changing the token logs everyone out. The token itself is never put in a cookie, a URL
or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web

from .bots import is_bot_token
from .failures import FailureLimiter, TooManyFailures
from .origins import client_ip

log = logging.getLogger(__name__)

COOKIE_NAME = "chatapp_access"
COOKIE_MAX_AGE = 30 * 24 * 3600
#: Failed token checks allowed per client address within FAILURE_WINDOW seconds; past
#: that, every token check from that address is refused until the window ends.
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
#: Paths served without the token: what the login page itself needs, and health checks.
PUBLIC_PATHS = frozenset(
    {"/login", "/static/login.css", "/static/favicon.svg", "/healthz", "/readyz"}
)

#: The cookie's expiry: seconds since the epoch, as ASCII digits.
_EXPIRY_RE = re.compile(r"[0-9]{1,12}")

TOKEN_REQUIRED = "access token required"
TOKEN_INVALID = "invalid access token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class AccessControl:
    """Checks the shared token and the cookies that vouch for it."""

    def __init__(self, token: str, trust_proxy: bool = False) -> None:
        self.enabled = bool(token)
        self.trust_proxy = trust_proxy
        self._token_digest = _digest(token)
        self._key = hmac.new(b"chatapp access cookie v1", token.encode(), hashlib.sha256).digest()
        self._failures = FailureLimiter(MAX_FAILURES, FAILURE_WINDOW, "the access token")

    # -- the token ----------------------------------------------------------------------

    def check_token(self, candidate: object, ip: str) -> bool:
        """Whether ``candidate`` is the token; raises TooManyFailures while throttled."""
        self._failures.check(ip)
        ok = isinstance(candidate, str) and hmac.compare_digest(
            _digest(candidate), self._token_digest
        )
        if not ok:
            self._failures.failed(ip)
        return ok

    # -- the cookie ---------------------------------------------------------------------

    def _sign(self, expires: int) -> str:
        mac = hmac.new(self._key, str(expires).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def make_cookie(self, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + COOKIE_MAX_AGE
        return f"{expires}.{self._sign(expires)}"

    def check_cookie(self, value: str | None) -> bool:
        if not value or len(value) > 200:
            return False
        expires_text, _, signature = value.partition(".")
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not _EXPIRY_RE.fullmatch(expires_text):
            return False
        expires = int(expires_text)
        return expires > time.time() and hmac.compare_digest(
            signature.encode(), self._sign(expires).encode()
        )

    # -- the entry points ---------------------------------------------------------------

    def refuse_connect(self, environ: dict[str, Any], auth: Any) -> str | None:
        """Why a Socket.IO connection may not open (None: it may)."""
        if not self.enabled:
            return None
        token = auth.get("token") if isinstance(auth, dict) else None
        if is_bot_token(token):
            return None  # a bot's own token passes: the connect handler checks it
        if token is None:
            if self.check_cookie(cookie_from_header(environ.get("HTTP_COOKIE", ""), COOKIE_NAME)):
                return None
            return TOKEN_REQUIRED
        try:
            return (
                None if self.check_token(token, environ.get("REMOTE_ADDR", "?")) else TOKEN_INVALID
            )
        except TooManyFailures as exc:
            return str(exc)

    def request_allowed(self, request: web.BaseRequest) -> bool:
        """An HTTP request carrying a valid cookie or ``Authorization: Bearer <token>``."""
        if self.check_cookie(request.cookies.get(COOKIE_NAME)):
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token or is_bot_token(token.strip()):
            return False  # a bot's token is not a failed guess at the access token
        try:
            return self.check_token(token.strip(), client_ip(request, self.trust_proxy))
        except TooManyFailures:
            return False


def cookie_from_header(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (Socket.IO's handshake has no
    parsed cookies), if any."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def safe_next(value: str | None) -> str:
    """A local path to go back to after logging in; anything else becomes ``/``."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 0x20 for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def is_https(request: web.BaseRequest, trust_proxy: bool) -> bool:
    if trust_proxy:
        proto = request.headers.get("X-Forwarded-Proto", "")
        if proto:
            return proto.split(",")[0].strip().lower() == "https"
    return request.secure


def access_middleware(
    access: AccessControl, is_bot: Callable[[str], Awaitable[bool]] | None = None
) -> Any:
    """Pages redirect to the login form, the API answers 401, unless access is granted:
    by the cookie, the access token, or (``is_bot``) a bot's own token."""

    # Not a coroutine: it returns the handler's awaitable (aiohttp awaits it), so that no
    # frame of it stays suspended for as long as a websocket lives.
    @web.middleware
    def require_access(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        path = request.path
        if (
            not access.enabled
            or path in PUBLIC_PATHS
            # Socket.IO refuses at connect, with a reason the client can show.
            or path.startswith("/socket.io/")
            or access.request_allowed(request)
        ):
            return handler(request)
        token = _bearer(request)
        if is_bot is not None and token is not None and is_bot_token(token):
            return _bot_gate(request, handler, is_bot, token)
        return _refuse(request, path)

    return require_access


def _bearer(request: web.BaseRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _bot_gate(
    request: web.Request, handler: Handler, is_bot: Callable[[str], Awaitable[bool]], token: str
) -> web.StreamResponse:
    """A request with a bot's token passes a private server's gate, once checked."""
    if await is_bot(token):
        return await handler(request)
    return await _refuse(request, request.path)


async def _refuse(request: web.Request, path: str) -> web.StreamResponse:
    """What a request without access gets: 401 from the API, the login form for pages."""
    if path.startswith("/api/") or path == "/metrics":  # read by programs, not people
        return web.json_response(
            {"error": TOKEN_REQUIRED},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="chatapp"'},
        )
    if request.method in ("GET", "HEAD"):
        target = "/login?next=" + quote(request.path_qs, safe="/")
        raise web.HTTPSeeOther(target)
    return web.Response(status=401, text=TOKEN_REQUIRED)


def _login_form(
    request: web.Request, next_path: str, error: str | None = None, status: int = 200
) -> web.Response:
    return aiohttp_jinja2.render_template(
        "login.html", request, {"next": next_path, "error": error}, status=status
    )


def setup_login(app: web.Application, access: AccessControl) -> None:
    """``GET /login`` shows the form, ``POST /login`` checks it and sets the cookie."""

    async def login_page(request: web.Request) -> web.Response:
        next_path = safe_next(request.query.get("next"))
        if not access.enabled or access.check_cookie(request.cookies.get(COOKIE_NAME)):
            raise web.HTTPSeeOther(next_path)
        return _login_form(request, next_path)

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        next_path = safe_next(str(form.get("next", "")))
        if not access.enabled:
            raise web.HTTPSeeOther(next_path)
        ip = client_ip(request, access.trust_proxy)
        try:
            ok = access.check_token(str(form.get("token", "")), ip)
        except TooManyFailures as exc:
            return _login_form(request, next_path, str(exc), status=429)
        if not ok:
            log.info("%s entered a wrong access token", ip)
            return _login_form(request, next_path, "That is not the access token.", status=401)
        log.info("%s logged in with the access token", ip)
        response = web.HTTPSeeOther(next_path)
        response.set_cookie(
            COOKIE_NAME,
            access.make_cookie(),
            max_age=COOKIE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=is_https(request, access.trust_proxy),
        )
        raise response

    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login)
