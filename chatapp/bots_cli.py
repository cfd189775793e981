"""``python -m chatapp bots ...``: bot accounts and their tokens, from the command line, on
the database the server uses (``--db``/``CHATAPP_DB``), with the server stopped or running.

A token is shown once, as the last line ``bots add`` and ``bots token`` print; the
database keeps only its digest. Revoking ends every token of the bot, and disconnects its
open connections within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from .accounts import AccountError, Accounts
from .handles import ConfusablesMismatch, check_confusables
from .passwords import Passwords
from .settings import add_flags, redacted, settings_from
from .signin import SignIns
from .store import StoreError, open_store
from .store.base import now_ms
from .users_cli import EXIT_ERROR, EXIT_REFUSED


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        argument_default=argparse.SUPPRESS,
        description="Manage bot accounts and their tokens in the database of --db (or "
        "CHATAPP_DB), whether the server is running or not.",
    )
    add_flags(parser, ("db",))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, named: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help, description=help, argument_default=argparse.SUPPRESS
        )
        add_flags(sub, ("db",))
        if named:
            sub.add_argument("name", metavar="NAME", help="the bot's handle")
        return sub

    add = command("add", "Create a bot; prints its token as the last line.")
    add.add_argument("--display-name", metavar="NAME", help="shown name (default: NAME)")
    command("list", "List the bots: handle, display name, id, tokens.", False)
    command("token", "Give a bot another token; prints it as the last line.")
    command("revoke", "End every token of a bot (its open connections are disconnected).")
    return parser


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
    parser = _parser(prog)
    args = parser.parse_args(argv)
    settings = settings_from(parser, args, only=("db",))
    try:
        check_confusables()
        asyncio.run(_run(args, settings.db, print))
    except AccountError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (StoreError, ConfusablesMismatch) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0
