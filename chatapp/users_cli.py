"""``python -m chatapp users ...``: manage accounts from the command line, on the database
the server uses (``--db``/``CHATAPP_DB``), with the server stopped or running.

A password is never taken from the command line (other users of the machine see it in the
process list, and it stays in shell history): it is asked for twice on a terminal, or read
as the first line of standard input when that is not a terminal (a script, a pipe).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from .accounts import Accounts
from .commands import Commands, Refused
from .passwords import PasswordError, Passwords, check_password
from .settings import redacted
from .signup import INVITE_DAYS, Invites
from .store import Account, open_store


def _commands(prog: str) -> Commands:
    commands = Commands(
        prog,
        "Manage accounts in the database of --db (or CHATAPP_DB), whether the server is "
        "running or not. Passwords are asked for on the terminal, or read as the first line "
        "of standard input when it is not a terminal; never from the command line.",
    )
    add = commands.add("add", "Create an account; its password is asked for.", "handle")
    add.add_argument("--admin", action="store_true", help="make it an admin")
    add.add_argument("--display-name", metavar="NAME", help="shown name (default: the handle)")
    commands.add("list", "List the accounts: handle, role, display name, id, created.")
    commands.add("set-password", "Set an account's password; it is asked for.", "handle")
    commands.add("remove", "Delete an account and free its handle (its messages stay).", "handle")
    invite = commands.add(
        "invite",
        "Make a single-use invite link (a path: open it at the server's address) to create "
        "an account on the page, whatever --sign-up says.",
    )
    invite.add_argument("--admin", action="store_true", help="the account will be an admin")
    invite.add_argument(
        "--days", type=float, default=INVITE_DAYS, help=f"good for (default {INVITE_DAYS})"
    )
    commands.add("promote", "Make an account an admin.", "handle")
    commands.add("demote", "Make an admin a member.", "handle")
    return commands


def read_password(prompt: str, stdin: TextIO | None = None) -> str:
    """A new password: asked twice on a terminal, else the first line of ``stdin``."""
    stdin = sys.stdin if stdin is None else stdin
    if stdin.isatty():
        password = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != password:
            raise Refused("the two passwords differ")
    else:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
    try:
        return check_password(password)
    except PasswordError as exc:
        raise Refused(str(exc)) from None


def _shown(account: Account) -> str:
    created = datetime.fromtimestamp(account.created / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    return "\t".join(
        [account.handle, account.role, account.display_name, account.id, created + " UTC"]
    )


async def _run(
    args: argparse.Namespace, db: str, out: Callable[[str], None], passwords: Passwords
) -> None:
    store = open_store(db)
    await store.open()
    try:
        accounts = Accounts(store, passwords)
        command = args.command
        if command == "list":
            listed = await accounts.all()
            for account in listed:
                out(_shown(account))
            if not listed:
                out(f"no accounts in {redacted(db)}")
            return
        if command == "invite":
            days: float = args.days
            if not 0 < days <= 365:
                raise Refused("--days must be more than 0 and at most 365")
            role = "admin" if getattr(args, "admin", False) else "member"
            path, _ = await Invites(store).create(role, days=days)
            out(f"an invite for one {role} account, good for {days:g} days:")
            out(path)
            return
        handle: str = args.handle
        if command == "add":
            role = "admin" if getattr(args, "admin", False) else "member"
            display_name = getattr(args, "display_name", None)
            handle = await accounts.check_available(handle, display_name)
            hashed = await passwords.hash(read_password(f"Password for {handle}: "))
            account = await accounts.add(handle, hashed, role=role, display_name=display_name)
            out(f"added {account.handle} ({account.role}, {account.id})")
        elif command == "set-password":
            account = await accounts.get(handle)
            hashed = await passwords.hash(read_password(f"New password for {account.handle}: "))
            await accounts.set_password(account.handle, hashed)
            out(f"password of {account.handle} changed")
        elif command == "remove":
            account = await accounts.remove(handle)
            out(f"removed {account.handle} ({account.id})")
        elif command in ("promote", "demote"):
            account = await accounts.get(handle)
            if account.role == "bot":
                raise Refused(f"{account.handle} is a bot: bots are not members or admins")
            role = "admin" if command == "promote" else "member"
            await accounts.set_role(account.handle, role)
            out(f"{account.handle} is now {'an admin' if role == 'admin' else 'a member'}")
    finally:
        await store.close()


def main(argv: Sequence[str], prog: str) -> int:
    """``users``: the exit status."""

    async def job(args: argparse.Namespace, db: str) -> None:
        await _run(args, db, print, Passwords())

    return _commands(prog).run(argv, job)
