"""Signing in to an account: server-side sign-ins (sessions) carried by a cookie.

A browser that signs in gets a random token in an HttpOnly, SameSite=Lax cookie (Secure
when the page came over HTTPS); the database keeps only the token's SHA-256 digest, with
where and when it signed in, so a person can see their sign-ins and end any of them, and
a copy of the database signs nobody in. Changing the password or removing the account
ends them all. Failed sign-ins are throttled per client address and per account.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import CIMultiDict

from .access import cookie_from_header, is_https, safe_next
from .accounts import AccountError, Accounts
from .bots import BOT_PREFIX, BOT_TOKEN_YEARS, is_bot_token
from .failures import FailureLimiter, TooManyFailures
from .handles import handle_keys
from .origins import client_ip
from .passwords import PasswordError, check_password
from .store import Account, AccountStore, SignIn
from .store.base import now_ms

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE_NAME = "chatapp_session"
#: How long a sign-in lasts (a person signs in again after it).
SIGN_IN_DAYS = 30
#: Failed sign-ins allowed per client address, and per account, within their windows.
MAX_FAILURES_PER_ADDRESS = 10
ADDRESS_WINDOW = 60.0
MAX_FAILURES_PER_ACCOUNT = 10
ACCOUNT_WINDOW = 300.0
#: Bytes of a User-Agent kept with a sign-in (enough to tell browsers apart).
MAX_AGENT = 200
#: The most bytes a sign-in form may have (a handle and a password).
MAX_FORM_BYTES = 4096
WRONG = "wrong handle or password"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def session_cookie(header: str) -> str | None:
    """The sign-in token in a ``Cookie`` header, if any."""
    return cookie_from_header(header, COOKIE_NAME)


class SignInRefused(Exception):
    """A sign-in that did not happen; ``str(exc)`` is what the person is told."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SignIns:
    """Creates, finds and ends sign-ins."""

    def __init__(
        self,
        store: AccountStore,
        accounts: Accounts,
        banned: Callable[[str | None, str | None], str | None] | None = None,
    ) -> None:
        self._store = store
        self._accounts = accounts
        #: Why an account (by id) or an address may not sign in now; None if it may.
        self._banned = banned
        self._by_address = FailureLimiter(
            MAX_FAILURES_PER_ADDRESS, ADDRESS_WINDOW, "to sign in (from this address)"
        )
        self._by_account = FailureLimiter(
            MAX_FAILURES_PER_ACCOUNT, ACCOUNT_WINDOW, "to sign in (to this account)"
        )

    async def sign_in(
        self, handle: str, password: str, address: str, agent: str
    ) -> tuple[str, Account]:
        """Check the password and start a sign-in: (its token, the account);
        SignInRefused if the password is wrong or too many attempts failed."""
        account = await self.check(handle, password, address)
        token, _ = await self.start(account, address, agent)
        return token, account

    async def check(self, handle: str, password: str, address: str) -> Account:
        """The account if ``password`` is its password; SignInRefused if it is not or too
        many attempts failed (from this address, or at this account)."""
        # Throttled by the account's key, so its look-alikes and cases share one budget.
        account_key = handle_keys(handle)[0] if handle else ""
        try:
            self._by_address.check(address)
            self._by_account.check(account_key)
        except TooManyFailures as exc:
            raise SignInRefused(str(exc), 429) from None
        account = await self._accounts.authenticate(handle, password)
        if account is None:
            self._by_address.failed(address)
            self._by_account.failed(account_key)
            log.info("%s failed to sign in as %r", address, handle[:64])
            raise SignInRefused(WRONG, 401)
        refusal = self._banned(account.id, address) if self._banned is not None else None
        if refusal is not None:
            raise SignInRefused(refusal, 403)
        return account

    async def start(self, account: Account, address: str, agent: str) -> tuple[str, SignIn]:
        """A new sign-in of ``account`` (whose password was checked, or which was just
        made): its token, for the cookie, and the sign-in."""
        token = secrets.token_urlsafe(32)
        now = now_ms()
        sign_in = SignIn(
            id=secrets.token_hex(8),
            account_id=account.id,
            created=now,
            expires=now + SIGN_IN_DAYS * 86_400_000,
            address=address,
            agent=agent.encode("utf-8", "replace")[:MAX_AGENT].decode("utf-8", "ignore"),
        )
        await self._store.add_sign_in(sign_in, token_hash(token))
        log.info("%s signed in as %s (sign-in %s)", address, account.handle, sign_in.id)
        return token, sign_in

    async def change_password(
        self, account: Account, current: str, new: str, address: str, agent: str
    ) -> str:
        """Replace ``account``'s password if ``current`` is it (throttled as signing in):
        every sign-in of the account ends, and this browser gets a new one (its token)."""
        await self.check(account.handle, current, address)
        await self._accounts.set_password(account.handle, await self._accounts.hash(new))
        token, _ = await self.start(account, address, agent)
        return token

    async def proxy_account(self, value: str) -> Account | None:
        """The account an authenticating proxy names (single sign-on), made on first
        sight; None if the name cannot be a handle or looks like another account's."""
        try:
            found = await self._accounts.find(value)
            if found is not None:
                return found[0]
            account = await self._accounts.add(value, None)
        except AccountError as exc:
            found = await self._accounts.find(value)  # made meanwhile by another process?
            if found is not None:
                return found[0]
            log.warning("the proxy named %r, who cannot be signed in: %s", value[:64], exc)
            return None
        log.info("%s signed in through the proxy for the first time", account.handle)
        return account

    async def start_bot(self, account: Account) -> str:
        """A new token for bot ``account``: a sign-in that lasts until revoked."""
        token = BOT_PREFIX + secrets.token_urlsafe(32)
        now = now_ms()
        sign_in = SignIn(
            id=secrets.token_hex(8),
            account_id=account.id,
            created=now,
            expires=now + BOT_TOKEN_YEARS * 365 * 86_400_000,
            address="-",
            agent="bot token",
        )
        await self._store.add_sign_in(sign_in, token_hash(token))
        return token

    async def bot(self, token: object) -> tuple[SignIn, Account] | None:
        """The bot a bot token belongs to, if it has not been revoked."""
        if not is_bot_token(token):
            return None
        assert isinstance(token, str)
        found = await self.find(token)
        return found if found is not None and found[1].role == "bot" else None

    async def find(self, token: str | None) -> tuple[SignIn, Account] | None:
        """The sign-in ``token`` belongs to, and its account, if it has not ended."""
        if not token or len(token) > 100:
            return None
        return await self._store.find_sign_in(token_hash(token), now_ms())

    async def sign_out(self, sign_in: SignIn, ids: list[str] | None = None) -> int:
        """End ``sign_in``'s account's sign-ins named by ``ids`` (all when None)."""
        return await self._store.remove_sign_ins(sign_in.account_id, ids, now_ms())

    async def live(self, ids: set[str]) -> set[str]:
        """Which of the sign-ins ``ids`` have not ended (by any process, or the CLI)."""
        return await self._store.live_sign_ins(sorted(ids), now_ms())

    async def of(self, account: Account) -> list[SignIn]:
        return await self._store.list_sign_ins(account.id, now_ms())


# -- HTTP -------------------------------------------------------------------------------------


def set_cookie(
    response: web.StreamResponse, token: str, request: web.Request, trust_proxy: bool
) -> None:
    """Give the browser its sign-in: HttpOnly (no script reads it), SameSite=Lax (no
    other site's form or script sends it), Secure when the page came over HTTPS."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=SIGN_IN_DAYS * 86_400,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=is_https(request, trust_proxy),
    )


def _as_handle(name: str) -> str:
    """``name`` as a handle is registered and found (``Accounts.find``)."""
    return unicodedata.normalize("NFC", name.strip())


def proxy_sign_in(sign_ins: SignIns, header: str) -> Any:
    """Single sign-on behind a trusted proxy: a request whose ``header`` names a user (and
    only one) is that user's; the browser gets a sign-in cookie for the account unless it
    has one (its Socket.IO connection and every page then use it)."""

    @web.middleware
    async def signed_in_by_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
        values = request.headers.getall(header, [])
        # Not for the static files a page loads beside it (each would start a sign-in of
        # its own before the page's cookie arrives), nor Socket.IO (the cookie is there).
        if (
            len(values) != 1
            or not values[0].strip()
            or request.path.startswith(("/socket.io/", "/static/"))
        ):
            return await handler(request)
        named = values[0].strip()
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        # Signed in already as whom the proxy names (the usual request): one lookup.
        if found is not None and found[1].handle.casefold() == _as_handle(named).casefold():
            return await handler(request)
        account = await sign_ins.proxy_account(named)
        if account is None:
            return await handler(request)
        if found is not None and found[1].id == account.id:
            return await handler(request)
        address = client_ip(request, True)
        token, _ = await sign_ins.start(account, address, request.headers.get("User-Agent", ""))
        # This request already counts as signed in: the page it renders shows the account.
        headers = CIMultiDict(request.headers)
        headers["Cookie"] = f"{COOKIE_NAME}={token}"
        request = request.clone(headers=headers)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            set_cookie(exc, token, request, trust_proxy=True)
            raise
        set_cookie(response, token, request, trust_proxy=True)
        return response

    return signed_in_by_proxy


def setup_sign_in(
    app: web.Application,
    sign_ins: SignIns,
    trust_proxy: bool,
    *,
    sign_up: str = "invite",
    guests: bool = True,
) -> None:
    """The sign-in routes:

    - ``GET /signin`` the form, ``POST /signin`` (``handle``, ``password``, ``next``);
    - ``POST /signout`` ends this browser's sign-in (``all=1``: every one of the account);
    - ``GET /api/me`` the account and its sign-ins (401 when not signed in);
    - ``POST /api/me/sign-ins/{id}/end`` ends one sign-in of the account.
    """

    async def current(request: web.Request) -> tuple[SignIn, Account] | None:
        return await sign_ins.find(request.cookies.get(COOKIE_NAME))

    def form(
        request: web.Request, next_path: str, error: str | None = None, status: int = 200
    ) -> web.Response:
        context = {
            "next": next_path,
            "error": error,
            "open": sign_up == "open",
            "guests": guests,
        }
        return aiohttp_jinja2.render_template("signin.html", request, context, status=status)

    async def sign_in_page(request: web.Request) -> web.Response:
        next_path = safe_next(request.query.get("next"))
        if await current(request) is not None:
            raise web.HTTPSeeOther(next_path)
        return form(request, next_path)

    async def sign_in(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_FORM_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_FORM_BYTES, actual_size=request.content_length or 0
            )
        data = await request.post()
        next_path = safe_next(str(data.get("next", "")))
        handle, password = str(data.get("handle", "")).strip(), str(data.get("password", ""))
        address = client_ip(request, trust_proxy)
        try:
            token, _ = await sign_ins.sign_in(
                handle, password, address, request.headers.get("User-Agent", "")
            )
        except SignInRefused as exc:
            return form(request, next_path, str(exc), status=exc.status)
        response = web.HTTPSeeOther(next_path)
        set_cookie(response, token, request, trust_proxy)
        raise response

    async def sign_out(request: web.Request) -> web.Response:
        data = await request.post()
        found = await current(request)
        if found is not None:
            sign_in, account = found
            everywhere = data.get("all") == "1"
            await sign_ins.sign_out(sign_in, None if everywhere else [sign_in.id])
            log.info("%s signed out%s", account.handle, " everywhere" if everywhere else "")
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE_NAME, path="/")
        raise response

    async def me(request: web.Request) -> web.Response:
        found = await current(request)
        if found is None:
            return web.json_response({"error": "not signed in"}, status=401)
        sign_in, account = found
        listed = await sign_ins.of(account)
        return web.json_response(
            {
                "account": account.to_dict(),
                "sign_in": sign_in.id,
                "sign_ins": [s.to_dict() for s in listed],
            }
        )

    async def end(request: web.Request) -> web.Response:
        found = await current(request)
        if found is None:
            return web.json_response({"error": "not signed in"}, status=401)
        ended = await sign_ins.sign_out(found[0], [request.match_info["id"]])
        if not ended:
            return web.json_response({"error": "no such sign-in"}, status=404)
        return web.json_response({"ok": True})

    def account_page(
        request: web.Request,
        found: tuple[SignIn, Account],
        listed: list[SignIn],
        *,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> web.Response:
        sign_in, account = found
        shown = [
            {
                "id": s.id,
                "agent": s.agent or "unknown browser",
                "address": s.address,
                "since": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(s.created / 1000)),
            }
            for s in listed
        ]
        context = {
            "account": account,
            "sign_ins": shown,
            "current": sign_in.id,
            "notice": notice,
            "error": error,
        }
        return aiohttp_jinja2.render_template("account.html", request, context, status=status)

    async def account(request: web.Request) -> web.Response:
        found = await current(request)
        if found is None:
            raise web.HTTPSeeOther("/signin?next=/account")
        return account_page(request, found, await sign_ins.of(found[1]))

    async def end_from_page(request: web.Request) -> web.Response:
        found = await current(request)
        if found is None:
            raise web.HTTPSeeOther("/signin?next=/account")
        ended = request.match_info["id"]
        await sign_ins.sign_out(found[0], [ended])
        if ended == found[0].id:  # this browser's own
            response = web.HTTPSeeOther("/")
            response.del_cookie(COOKIE_NAME, path="/")
            raise response
        raise web.HTTPSeeOther("/account")

    async def change_password(request: web.Request) -> web.Response:
        found = await current(request)
        if found is None:
            raise web.HTTPSeeOther("/signin?next=/account")
        if (request.content_length or 0) > MAX_FORM_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_FORM_BYTES, actual_size=request.content_length or 0
            )
        data = await request.post()
        account = found[1]
        new = str(data.get("password", ""))
        try:
            if new != str(data.get("password_again", "")):
                raise PasswordError("the two new passwords differ")
            check_password(new)
            address = client_ip(request, trust_proxy)
            agent = request.headers.get("User-Agent", "")
            token = await sign_ins.change_password(
                account, str(data.get("current", "")), new, address, agent
            )
        except (PasswordError, SignInRefused) as exc:
            status = exc.status if isinstance(exc, SignInRefused) else 400
            listed = await sign_ins.of(account)
            return account_page(request, found, listed, error=str(exc), status=status)
        response = web.HTTPSeeOther("/account")
        set_cookie(response, token, request, trust_proxy)
        raise response

    app.router.add_get("/account", account)
    app.router.add_post("/account/sign-ins/{id}/end", end_from_page)
    app.router.add_post("/account/password", change_password)
    app.router.add_get("/signin", sign_in_page, name="signin")
    app.router.add_post("/signin", sign_in)
    app.router.add_post("/signout", sign_out)
    app.router.add_get("/api/me", me)
    app.router.add_post("/api/me/sign-ins/{id}/end", end)
