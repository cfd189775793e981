"""What the account commands (``users``, ``bots``) share: a parser of subcommands that all
take ``--db``, and one way to run them, report a refusal or an error in one line, and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from .accounts import AccountError
from .handles import ConfusablesMismatch, check_confusables
from .settings import add_flags, settings_from
from .store import StoreError

#: Exit statuses: the request was refused (a taken handle, a wrong password twice...);
#: the database, the libraries or the command line could not be used.
EXIT_REFUSED = 1
EXIT_ERROR = 2


class Refused(Exception):
    """A request the command turns down; ``str(exc)`` says why."""


class Commands:
    """A parser whose subcommands all take ``--db``; :meth:`add` makes one."""

    def __init__(self, prog: str, description: str) -> None:
        self.parser = argparse.ArgumentParser(
            prog=prog, argument_default=argparse.SUPPRESS, description=description
        )
        add_flags(self.parser, ("db",))
        self._commands = self.parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True
        )

    def add(self, name: str, help: str, *positional: str) -> argparse.ArgumentParser:
        sub = self._commands.add_parser(
            name, help=help, description=help, argument_default=argparse.SUPPRESS
        )
        add_flags(sub, ("db",))
        for dest in positional:
            sub.add_argument(dest, metavar=dest.upper())
        return sub

    def run(
        self,
        argv: Sequence[str],
        job: Callable[[argparse.Namespace, str], Coroutine[Any, Any, None]],
    ) -> int:
        """Parse ``argv`` and run ``job(args, db)``: the exit status."""
        args = self.parser.parse_args(argv)
        settings = settings_from(self.parser, args, only=("db",))
        prog = self.parser.prog
        try:
            check_confusables()
            asyncio.run(job(args, settings.db))
        except (AccountError, Refused) as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except (StoreError, ConfusablesMismatch) as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        return 0
