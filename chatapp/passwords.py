"""Passwords, stored only as argon2id hashes (argon2-cffi, RFC 9106's parameters)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: Bytes of a password, UTF-8; longer ones are refused rather than hashed (a hash of a
#: megabyte costs the server, not the guesser).
MAX_PASSWORD_BYTES = 1024
MIN_PASSWORD = 8
PASSWORD_RULE = (
    f"invalid password: must be {MIN_PASSWORD} or more characters "
    f"and at most {MAX_PASSWORD_BYTES} bytes"
)


class PasswordError(ValueError):
    """A password that cannot be used; ``str(exc)`` says why, for the person choosing it."""


def check_password(password: str) -> str:
    """``password`` if it may be set; raises :class:`PasswordError` otherwise."""
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        raise PasswordError("invalid password: must be valid text") from None
    if len(password) < MIN_PASSWORD or size > MAX_PASSWORD_BYTES:
        raise PasswordError(PASSWORD_RULE)
    return password


class Passwords:
    """Hashes and verifies passwords off the event loop (argon2id takes tens of
    milliseconds and 64 MiB by design: a guesser pays it for every guess)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        # argon2-cffi's defaults are RFC 9106's second recommended option (argon2id,
        # t=3, m=64 MiB, p=4); kept as the library moves them forward.
        self._hasher = hasher or PasswordHasher()

    def hash_now(self, password: str) -> str:
        """The hash to store for ``password`` (blocking; for the command line)."""
        return str(self._hasher.hash(check_password(password)))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hash_now, password)

    def verify_now(self, stored: str, password: str) -> bool:
        """Whether ``password`` is the one ``stored`` was made from (blocking)."""
        if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            return False
        try:
            return bool(self._hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str, password: str) -> bool:
        return await asyncio.to_thread(self.verify_now, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with weaker parameters than today's."""
        try:
            return bool(self._hasher.check_needs_rehash(stored))
        except InvalidHashError:
            return True
