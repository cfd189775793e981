"""``python -m chatapp users``: operators manage accounts on the server's database, stopped
or running, on SQLite and PostgreSQL; passwords never come from the command line."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from chatapp.accounts import Accounts
from chatapp.passwords import Passwords
from chatapp.store import open_store

from .support import Client, Server


def users(*args: str, stdin: str = "", env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "chatapp", "users", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


async def login(db: str, handle: str, password: str) -> str | None:
    """The role of the account ``password`` logs in to, as the server would check it."""
    store = open_store(db)
    await store.open()
    try:
        account = await Accounts(store, Passwords()).authenticate(handle, password)
    finally:
        await store.close()
    return None if account is None else account.role


async def test_add_list_promote_demote_remove(db: str) -> None:
    added = users("add", "Ann", "--admin", "--db", db, stdin="ann's password\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added Ann (admin, u:")
    # CHATAPP_DB works as the server's does; --display-name names the shown name.
    bob = users(
        "add", "bob", "--display-name", "Bob B", stdin="bob's password\n", env={"CHATAPP_DB": db}
    )
    assert bob.returncode == 0, bob.stderr
    listed = users("list", "--db", db)
    rows = [line.split("\t")[:3] for line in listed.stdout.splitlines()]
    assert rows == [["Ann", "admin", "Ann"], ["bob", "member", "Bob B"]]
    assert await login(db, "ann", "ann's password") == "admin"
    assert users("demote", "ANN", "--db", db).stdout == "Ann is now a member\n"
    assert users("promote", "bob", "--db", db).stdout == "bob is now an admin\n"
    assert await login(db, "ann", "ann's password") == "member"
    assert await login(db, "bob", "bob's password") == "admin"
    removed = users("remove", "bob", "--db", db)
    assert removed.returncode == 0 and removed.stdout.startswith("removed bob (u:")
    assert await login(db, "bob", "bob's password") is None
    assert [line.split("\t")[0] for line in users("list", "--db", db).stdout.splitlines()] == [
        "Ann"
    ]


async def test_set_password_replaces_the_old_one(db: str) -> None:
    assert users("add", "ann", "--db", db, stdin="first password\n").returncode == 0
    changed = users("set-password", "ann", "--db", db, stdin="second password\n")
    assert (changed.returncode, changed.stdout) == (0, "password of ann changed\n")
    assert await login(db, "ann", "first password") is None
    assert await login(db, "ann", "second password") == "member"


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (("add", "\u0430nn"), "password 2\n", "the handle '\u0430nn' is taken"),
        (("add", "ANN"), "password 2\n", "the handle 'ANN' is taken"),
        (("add", "b o b"), "password 2\n", "invalid handle: must not contain spaces or @"),
        (("add", "bob"), "short\n", "invalid password: must be 8 or more characters"),
        (("add", "bob"), "", "invalid password: must be 8 or more characters"),
        (("set-password", "nobody"), "password 2\n", "no account with the handle 'nobody'"),
        (("remove", "nobody"), "", "no account with the handle 'nobody'"),
        (("promote", "nobody"), "", "no account with the handle 'nobody'"),
    ],
)
def test_a_refused_request_says_why_and_changes_nothing(
    tmp_path: Path, args: tuple[str, ...], stdin: str, error: str
) -> None:
    db = str(tmp_path / "chat.db")
    assert users("add", "ann", "--db", db, stdin="ann's password\n").returncode == 0
    before = users("list", "--db", db).stdout
    result = users(*args, "--db", db, stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.startswith(f"python -m chatapp users: error: {error}"), result.stderr
    assert users("list", "--db", db).stdout == before


def test_a_password_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "chat.db")
    result = users("add", "ann", "--password", "hunter22", "--db", db, stdin="x\n")
    assert result.returncode == 2
    assert "unrecognized arguments: --password hunter22" in result.stderr
    assert not Path(db).exists()


def test_on_a_terminal_the_password_is_asked_twice(tmp_path: Path) -> None:
    db = str(tmp_path / "chat.db")

    def run(*answers: str) -> tuple[int, str]:
        command = [sys.executable, "-m", "chatapp", "users", "add", "ann", "--db", db]
        pid, fd = pty.fork()
        if pid == 0:  # the child: its standard input and output are the terminal
            os.execv(sys.executable, command)
        output = b""

        def read_until(text: bytes | None) -> None:
            nonlocal output
            while text is None or text not in output:
                ready, _, _ = select.select([fd], [], [], 30)
                assert ready, f"no {text!r} in {output!r}"
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # the child exited: the terminal is gone
                    chunk = b""
                if not chunk:
                    assert text is None, f"no {text!r} in {output!r}"
                    return
                output += chunk

        # getpass flushes what was typed ahead of its prompt: answer each prompt in turn.
        for prompt, answer in zip([b"Password for ann: ", b"Again: "], answers, strict=True):
            read_until(prompt)
            os.write(fd, answer.encode() + b"\n")
        read_until(None)
        os.close(fd)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), output.decode(errors="replace")

    code, output = run("one password", "another one")
    assert code == 1 and "the two passwords differ" in output
    code, output = run("the password", "the password")
    assert code == 0, output
    assert "Password for ann: " in output and "Again: " in output
    assert "the password" not in output  # not echoed
    assert asyncio.run(login(db, "ann", "the password")) == "member"


async def test_accounts_change_while_the_server_runs_on_the_same_database(
    start_server,
) -> None:
    server: Server = await start_server()
    added = await asyncio.to_thread(
        users, "add", "ann", "--db", server.db, stdin="ann's password\n"
    )
    assert added.returncode == 0, added.stderr
    bob = Client()
    try:
        await bob.connect(server.url, room="lobby", name="bob")
        assert (await bob.send("still serving"))["ok"]
    finally:
        await bob.close()
    assert await login(server.db, "ann", "ann's password") == "member"
    assert server.bad_log_lines() == []
