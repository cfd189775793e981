"""``python -m chatapp bots ...``: bot accounts and their tokens, from the command line, on
the database the server uses (``--db``/``CHATAPP_DB``), with the server stopped or running.

A token is shown once, as the last line ``bots add`` and ``bots token`` print; the
database keeps only its digest. Revoking ends every token of the bot, and disconnects its
open connections within a second.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from .accounts import AccountError, Accounts
from .commands import Commands
from .passwords import Passwords
from .settings import redacted
from .signin import SignIns
from .store import open_store
from .store.base import now_ms


def _commands(prog: str) -> Commands:
    commands = Commands(
        prog,
        "Manage bot accounts and their tokens in the database of --db (or CHATAPP_DB), "
        "whether the server is running or not.",
    )
    add = commands.add("add", "Create a bot; prints its token as the last line.", "name")
    add.add_argument("--display-name", metavar="NAME", help="shown name (default: NAME)")
    commands.add("list", "List the bots: handle, display name, id, tokens.")
    commands.add("token", "Give a bot another token; prints it as the last line.", "name")
    commands.add(
        "revoke", "End every token of a bot (its open connections are disconnected).", "name"
    )
    return commands


async def _run(args: argparse.Namespace, db: str, out: Callable[[str], None]) -> None:
    store = open_store(db)
    await store.open()
    try:
        accounts = Accounts(store, Passwords())
        sign_ins = SignIns(store, accounts)
        if args.command == "list":
            bots = [a for a in await accounts.all() if a.role == "bot"]
            for bot in bots:
                tokens = len(await store.list_sign_ins(bot.id, now_ms()))
                out("\t".join([bot.handle, bot.display_name, bot.id, f"{tokens} token(s)"]))
            if not bots:
                out(f"no bots in {redacted(db)}")
            return
        name: str = args.name
        if args.command == "add":
            bot = await accounts.add(
                name, None, role="bot", display_name=getattr(args, "display_name", None)
            )
            out(f"added bot {bot.handle} ({bot.id}); its token (shown once):")
            out(await sign_ins.start_bot(bot))
            return
        bot = await accounts.get(name)
        if bot.role != "bot":
            raise AccountError(f"{bot.handle} is not a bot")
        if args.command == "token":
            out(f"a new token of {bot.handle} (shown once):")
            out(await sign_ins.start_bot(bot))
        elif args.command == "revoke":
            ended = await store.remove_sign_ins(bot.id, None, now_ms())
            out(f"revoked {ended} token(s) of {bot.handle}")
    finally:
        await store.close()


def main(argv: Sequence[str], prog: str) -> int:
    """``bots``: the exit status."""

    async def job(args: argparse.Namespace, db: str) -> None:
        await _run(args, db, print)

    return _commands(prog).run(argv, job)
