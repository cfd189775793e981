"""Accounts: registering a handle, its password, its role; what the server and the
``users`` command share."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence

from .handles import handle_keys, parse_handle
from .passwords import Passwords
from .protocol import ProtocolError, parse_name
from .store import ROLES, Account, AccountStore, HandleTaken, InviteInvalid
from .store.base import now_ms


class AccountError(ValueError):
    """A request about accounts that cannot be done; ``str(exc)`` says why."""


#: Handles one call of :meth:`Accounts.named` looks for in the database.
MAX_LOOKUPS = 50

INVITE_INVALID = "this invite link was used already, or has expired"


def _taken(handle: str) -> AccountError:
    return AccountError(f"the handle {handle!r} is taken (it, or one that looks like it)")


def new_account_id() -> str:
    return "u:" + secrets.token_hex(12)


class Accounts:
    """The accounts of one database."""

    def __init__(self, store: AccountStore, passwords: Passwords) -> None:
        self._store = store
        self._passwords = passwords
        #: What a login with no account to check against is checked against, so that it
        #: takes as long as one with an account (made when first needed).
        self._dummy_hash: str | None = None
        #: Every account by its handle case-folded, as of the last :meth:`refresh` (the
        #: server's, once a second) and with those :meth:`named` found since.
        self._by_handle: dict[str, Account] = {}

    async def refresh(self) -> None:
        """Take the accounts from the database (every process's, the CLI's) into memory,
        for :meth:`named`."""
        self._by_handle = {a.handle.casefold(): a for a in await self._store.list_accounts()}

    async def named(self, handles: Sequence[str]) -> dict[str, Account]:
        """The accounts of ``handles`` (each NFC and case-folded; a look-alike of a handle
        is not it), by handle: from memory, and those not there (an account made a moment
        ago by another process or the ``users`` command, or a handle that is nobody's),
        the first :data:`MAX_LOOKUPS` of them, from the database in one query."""
        found = {h: a for h in handles if (a := self._by_handle.get(h)) is not None}
        missing = [h for h in handles if h not in found][:MAX_LOOKUPS]
        if missing:
            keys = [handle_keys(h)[0] for h in missing]
            for account in await self._store.find_accounts(keys):
                handle = account.handle.casefold()
                if handle in missing:
                    found[handle] = self._by_handle[handle] = account
        return found

    async def add(
        self,
        handle: str,
        password_hash: str | None,
        *,
        role: str = "member",
        display_name: str | None = None,
        invite_hash: str | None = None,
    ) -> Account:
        """Register ``handle``; AccountError if it is invalid or taken (it, or one that
        looks like it: :func:`handles.handle_keys`). With ``invite_hash`` the invite of
        that token digest is used up by it (``role`` must be the invite's), or, if it
        cannot be used, nothing is registered."""
        handle, display = self._parse(handle, display_name)
        if role not in ROLES:
            raise AccountError(f"invalid role: must be one of {', '.join(ROLES)}")
        account = Account(
            id=new_account_id(), handle=handle, display_name=display, role=role, created=now_ms()
        )
        try:
            if invite_hash is None:
                await self._store.add_account(account, handle_keys(handle), password_hash)
            else:
                await self._store.redeem_invite(
                    invite_hash, now_ms(), account, handle_keys(handle), password_hash
                )
        except HandleTaken:
            raise _taken(handle) from None
        except InviteInvalid:
            raise AccountError(INVITE_INVALID) from None
        self._by_handle[account.handle.casefold()] = account
        return account

    async def hash(self, password: str) -> str:
        """The hash to store for a new ``password`` (PasswordError if it may not be set)."""
        return await self._passwords.hash(password)

    async def check_available(self, handle: str, display_name: str | None = None) -> str:
        """``handle`` as it would be registered, if it is valid and free now (to check
        before asking for a password); AccountError otherwise."""
        handle, _ = self._parse(handle, display_name)
        for key in handle_keys(handle):
            if await self._store.find_account(key) is not None:
                raise _taken(handle)
        return handle

    @staticmethod
    def _parse(handle: str, display_name: str | None) -> tuple[str, str]:
        try:
            handle = parse_handle(handle)
            return handle, parse_name(display_name) if display_name is not None else handle
        except ProtocolError as exc:
            raise AccountError(str(exc)) from None

    async def owner_of(self, name: str) -> Account | None:
        """The account whose handle ``name`` is, or looks like (a guest may not use it)."""
        for key in handle_keys(name):
            found = await self._store.find_account(key)
            if found is not None:
                return found[0]
        return None

    async def find(self, handle: str) -> tuple[Account, str | None] | None:
        """The account ``handle`` names, written in any case, with its password hash; None
        if there is none (a look-alike of a handle does not name it)."""
        # As a handle is registered: trimmed, NFC ("Zoë" typed decomposed is still Zoë).
        handle = unicodedata.normalize("NFC", handle.strip())
        found = await self._store.find_account(handle_keys(handle)[0])
        if found is None or found[0].handle.casefold() != handle.casefold():
            return None
        return found

    async def get(self, handle: str) -> Account:
        """The account ``handle`` names; AccountError if there is none."""
        found = await self.find(handle)
        if found is None:
            raise AccountError(f"no account with the handle {handle!r}")
        return found[0]

    async def all(self) -> list[Account]:
        return await self._store.list_accounts()

    async def set_password(self, handle: str, password_hash: str | None) -> Account:
        account = await self.get(handle)
        if not await self._store.set_password(account.id, password_hash):
            raise AccountError(f"no account with the handle {handle!r}")
        # Whoever signed in with the old password is signed out.
        await self._store.remove_sign_ins(account.id, None, now_ms())
        return account

    async def set_role(self, handle: str, role: str) -> Account:
        if role not in ROLES:
            raise AccountError(f"invalid role: must be one of {', '.join(ROLES)}")
        account = await self.get(handle)
        if not await self._store.set_role(account.id, role):
            raise AccountError(f"no account with the handle {handle!r}")
        return account

    async def remove(self, handle: str) -> Account:
        account = await self.get(handle)
        if not await self._store.remove_account(account.id):
            raise AccountError(f"no account with the handle {handle!r}")
        return account

    async def authenticate(self, handle: str, password: str) -> Account | None:
        """The account if ``password`` is its password; None otherwise (no such account,
        no password, or a wrong one: the caller cannot tell which, nor by the time taken)."""
        found = await self.find(handle)
        stored = found[1] if found is not None else None
        if found is None or stored is None:
            # As long as a real check, so a guesser cannot tell handles that exist.
            if self._dummy_hash is None:
                self._dummy_hash = await self._passwords.hash(secrets.token_urlsafe(16))
            await self._passwords.verify(self._dummy_hash, password)
            return None
        return found[0] if await self._passwords.verify(stored, password) else None
