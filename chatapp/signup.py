"""Creating accounts from the page: by invite link, by open sign-up, and the first admin's
claim link.

``--sign-up`` decides who may: ``open`` (anyone, at ``/signup``), ``invite`` (whoever has
a single-use link an admin made, at ``/join/<token>``) or ``closed`` (only the ``users``
command). Whatever the policy, a server without an admin makes a claim link at start-up
(printed in the log): whoever opens it first becomes the admin, and it is good only while
there is no admin. Links hold a random token; the database keeps only its digest.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

import aiohttp_jinja2
from aiohttp import web

from .access import is_https
from .accounts import AccountError, Accounts
from .failures import FailureLimiter, TooManyFailures
from .origins import client_ip
from .passwords import PasswordError, Passwords, check_password
from .signin import COOKIE_NAME, SignIns, set_cookie
from .store import Account, AccountStore, Invite
from .store.base import now_ms

log = logging.getLogger(__name__)

#: How long an invite link is good for, unless told otherwise.
INVITE_DAYS = 7
#: Accounts one address may create by open sign-up within the window (spam).
MAX_SIGN_UPS_PER_ADDRESS = 5
SIGN_UP_WINDOW = 3600.0
MAX_FORM_BYTES = 4096


def invite_hash(token: str) -> str:
    return hashlib.sha256(b"chatapp invite\0" + token.encode("utf-8", "surrogatepass")).hexdigest()


def invite_path(token: str) -> str:
    return f"/join/{token}"


class Invites:
    """Makes invite links and the claim link; ``claim_path`` is this process's claim link
    while the server has no admin (set at start-up)."""

    def __init__(self, store: AccountStore) -> None:
        self._store = store
        self.claim_path: str | None = None

    async def create(
        self,
        role: str = "member",
        *,
        created_by: Account | None = None,
        days: float = INVITE_DAYS,
        claim: bool = False,
    ) -> tuple[str, Invite]:
        """A new invite: (its link's path, the invite)."""
        token = secrets.token_urlsafe(24)
        now = now_ms()
        invite = Invite(
            id=secrets.token_hex(8),
            role=role,
            claim=claim,
            created=now,
            expires=now + int(days * 86_400_000),
            created_by=created_by.id if created_by else None,
        )
        await self._store.add_invite(invite, invite_hash(token))
        return invite_path(token), invite

    async def make_claim(self) -> str | None:
        """A claim link if the server has no admin (None if it has one)."""
        if await self._store.has_admin():
            self.claim_path = None
        else:
            self.claim_path, _ = await self.create("admin", claim=True, days=INVITE_DAYS)
        return self.claim_path

    async def find(self, token: str) -> Invite | None:
        if not token or len(token) > 100:
            return None
        return await self._store.find_invite(invite_hash(token), now_ms())


def setup_sign_up(
    app: web.Application,
    *,
    policy: str,
    accounts: Accounts,
    passwords: Passwords,
    invites: Invites,
    sign_ins: SignIns,
    trust_proxy: bool,
) -> None:
    """The routes: ``/join/{token}`` (invites and the claim), ``/signup`` (open sign-up),
    ``POST /api/invites`` and ``POST /invite`` (an admin makes an invite link, as JSON or
    as a page)."""
    limiter = FailureLimiter(
        MAX_SIGN_UPS_PER_ADDRESS,
        SIGN_UP_WINDOW,
        "to create accounts",
        refusal="too many new accounts from your address",
    )

    def form(
        request: web.Request,
        action: str,
        *,
        invite: Invite | None = None,
        error: str | None = None,
        status: int = 200,
        values: dict[str, str] | None = None,
    ) -> web.Response:
        context = {
            "action": action,
            "admin": invite is not None and invite.role == "admin",
            "error": error,
            "handle": (values or {}).get("handle", ""),
            "display_name": (values or {}).get("display_name", ""),
        }
        return aiohttp_jinja2.render_template("signup.html", request, context, status=status)

    def gone(request: web.Request, reason: str) -> web.Response:
        return aiohttp_jinja2.render_template("404.html", request, {"reason": reason}, status=404)

    async def create(
        request: web.Request, action: str, token: str | None, invite: Invite | None
    ) -> web.Response:
        if (request.content_length or 0) > MAX_FORM_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_FORM_BYTES, actual_size=request.content_length or 0
            )
        data = await request.post()
        values = {k: str(data.get(k, "")) for k in ("handle", "display_name")}
        address = client_ip(request, trust_proxy)
        try:
            if token is None:
                limiter.check(address)
                # Counted before the awaits below, so that many posts at once from one
                # address cannot all pass the check; taken back if no account is made.
                limiter.failed(address)
            password = str(data.get("password", ""))
            if password != str(data.get("password_again", "")):
                raise AccountError("the two passwords differ")
            check_password(password)
            hashed = await passwords.hash(password)
            account = await accounts.add(
                values["handle"],
                hashed,
                role=invite.role if invite is not None else "member",
                display_name=values["display_name"].strip() or None,
                invite_hash=invite_hash(token) if token is not None else None,
            )
        except TooManyFailures as exc:
            return form(request, action, invite=invite, error=str(exc), status=429, values=values)
        except (AccountError, PasswordError) as exc:
            if token is None:
                limiter.forgive(address)
            return form(request, action, invite=invite, error=str(exc), status=400, values=values)
        how = "the claim link" if invite and invite.claim else "an invite" if invite else "sign-up"
        log.info("%s created the account %s (%s) by %s", address, account.handle, account.role, how)
        if invite is not None and invite.claim:
            invites.claim_path = None
        signed_in, _ = await sign_ins.start(account, address, request.headers.get("User-Agent", ""))
        response = web.HTTPSeeOther("/")
        set_cookie(response, signed_in, request, trust_proxy)
        raise response

    async def join_page(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        invite = await invites.find(token)
        if invite is None:
            return gone(request, "This invite link was used already, or has expired.")
        return form(request, invite_path(token), invite=invite)

    async def join(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        invite = await invites.find(token)
        if invite is None:
            return gone(request, "This invite link was used already, or has expired.")
        return await create(request, invite_path(token), token, invite)

    async def sign_up_page(request: web.Request) -> web.Response:
        if policy != "open":
            return gone(request, "This server makes accounts by invitation only.")
        return form(request, "/signup")

    async def sign_up(request: web.Request) -> web.Response:
        if policy != "open":
            return gone(request, "This server makes accounts by invitation only.")
        return await create(request, "/signup", None, None)

    def absolute(request: web.Request, path: str) -> str:
        scheme = "https" if is_https(request, trust_proxy) else "http"
        return f"{scheme}://{request.host}{path}"

    async def make_invite(request: web.Request) -> tuple[int, str, str | None, Invite | None]:
        """(status, error, the link's path, the invite) of an admin's request."""
        found = await sign_ins.find(request.cookies.get(COOKIE_NAME))
        if found is None:
            return 401, "not signed in", None, None
        account = found[1]
        if account.role != "admin":
            return 403, "only admins invite", None, None
        if policy == "closed":
            return 403, "sign-up is closed on this server", None, None
        path, invite = await invites.create(created_by=account)
        log.info("%s made invite %s", account.handle, invite.id)
        return 200, "", path, invite

    async def new_invite(request: web.Request) -> web.Response:
        status, error, path, invite = await make_invite(request)
        if path is None or invite is None:
            return web.json_response({"error": error}, status=status)
        return web.json_response(
            {"path": path, "url": absolute(request, path), "invite": invite.to_dict()}
        )

    async def invite_page(request: web.Request) -> web.Response:
        status, error, path, _ = await make_invite(request)
        url = absolute(request, path) if path is not None else None
        context = {"error": error, "link": url, "days": INVITE_DAYS}
        return aiohttp_jinja2.render_template("invite.html", request, context, status=status)

    app.router.add_get("/join/{token}", join_page)
    app.router.add_post("/join/{token}", join)
    app.router.add_get("/signup", sign_up_page)
    app.router.add_post("/signup", sign_up)
    app.router.add_post("/api/invites", new_invite)
    app.router.add_post("/invite", invite_page)
