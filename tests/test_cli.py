"""The command line: flags, environment variables, clear startup errors, clean stops."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import typing
from pathlib import Path

import aiohttp
import pytest

import chatapp
from chatapp import Settings, load_settings

from .support import ROOT, Server

#: The console script that ``pip install`` made for the test environment.
CONSOLE_SCRIPT = Path(sys.executable).with_name("chatapp")
#: An option of ``--help``: indented by two spaces (wrapped help text is indented more).
HELP_OPTION_RE = re.compile(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", re.MULTILINE)


README_FLAG_RE = re.compile(r"^\| `(--[a-z][a-z0-9-]*)` \|", re.MULTILINE)


def run_cli(*args: str, cwd=None, env=None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatapp", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_help_explains_every_flag() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--db", "--log-level", "--message-burst", "--message-rate"):
        assert flag in result.stdout
    assert "CHATAPP_" in result.stdout


def test_bad_flag_is_a_usage_error() -> None:
    result = run_cli("--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--port", "seventy"), "--port must be a whole number, not 'seventy'"),
        (("--port", "70000"), "--port must be between 0 and 65535"),
        (("--log-level", "loud"), "--log-level must be one of debug, info, warning"),
        (("--message-rate", "0"), "--message-rate must be > 0"),
    ],
)
def test_bad_values_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_one_line_and_creates_no_database(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port), cwd=tmp_path)  # the default ./chatapp.db
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"chatapp: error: port {port} on 127.0.0.1 is already in use "
        "(choose another with --port or CHATAPP_PORT)"
    ]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_database_that_cannot_be_opened_is_one_line_and_leaves_nothing(tmp_path) -> None:
    missing = tmp_path / "missing-dir" / "chat.db"
    result = run_cli("--port", "0", "--db", str(missing), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"chatapp: error: cannot open SQLite database '{missing}': unable to open database file"
    ]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    not_a_database = tmp_path / "chat.db"
    not_a_database.write_bytes(b"this is not a database")
    result = run_cli("--port", "0", "--db", str(not_a_database), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"chatapp: error: cannot open SQLite database '{not_a_database}': file is not a database"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.db"]
    assert not_a_database.read_bytes() == b"this is not a database"


def refuses_to_start_with(patch: str, tmp_path: Path) -> list[str]:
    """Run the server after ``patch`` (Python run first, in the same process, standing in
    for another release of a library); it must exit 2, leave no file, and say why: the
    lines of its stderr."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{patch}\nimport sys; from chatapp.cli import main; sys.exit(main(sys.argv[1:]))",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    return result.stderr.splitlines()


def test_a_library_without_the_hooks_the_limits_need_is_one_line_and_leaves_nothing(
    tmp_path,
) -> None:
    """A python-engineio whose aiohttp driver table lacks what chatapp checks requests
    through: the server refuses to start (it has no safe stock path for its limits)."""
    version = importlib.metadata.version("python-engineio")
    patch = (
        "import engineio.async_drivers.aiohttp as driver; del driver._async['translate_request']"
    )
    assert refuses_to_start_with(patch, tmp_path) == [
        f"chatapp: error: python-engineio {version} is not one chatapp can enforce its limits "
        "with: its aiohttp driver table (AsyncServer._async) has no 'translate_request'; "
        "install the versions .ci/constraints.txt lists"
    ]


def test_a_socketio_that_handles_no_engineio_event_is_one_line_and_leaves_nothing(
    tmp_path,
) -> None:
    """A python-socketio that handles engine.io's events other than through
    ``eio.handlers`` (what chatapp puts its connect, message and disconnect checks in
    front of): the server refuses to start."""
    patch = (
        "import socketio; init = socketio.AsyncServer.__init__\n"
        "def without(self, *a, **k):\n"
        "    init(self, *a, **k); del self.eio.handlers['message']\n"
        "socketio.AsyncServer.__init__ = without"
    )
    version = importlib.metadata.version("python-socketio")
    assert refuses_to_start_with(patch, tmp_path) == [
        f"chatapp: error: python-socketio {version} is not one chatapp can enforce its limits "
        "with: it handles no engine.io message event; "
        "install the versions .ci/constraints.txt lists"
    ]


def test_confusables_data_that_would_let_look_alikes_in_is_one_line_and_leaves_nothing(
    tmp_path,
) -> None:
    """A release of the confusables data that no longer tells "ann" from a look-alike
    apart: the server refuses to start (its handles would let impostors in)."""
    patch = "from confusable_homoglyphs import confusables; confusables.confusables_data = {}"
    version = importlib.metadata.version("confusable-homoglyphs")
    assert refuses_to_start_with(patch, tmp_path) == [
        f"chatapp: error: confusable-homoglyphs {version} does not tell look-alike handles "
        "together as chatapp needs ('ann' and '\u0430nn' are two handles); "
        "install the versions .ci/constraints.txt lists"
    ]


def test_version_is_the_installed_distributions() -> None:
    for command in ([sys.executable, "-m", "chatapp"], [str(CONSOLE_SCRIPT)]):
        result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"chatapp {importlib.metadata.version('chatapp')}\n"


def test_version_from_a_source_checkout_that_is_not_installed(tmp_path) -> None:
    # The test environment's libraries without chatapp's own installation, and the checkout
    # on sys.path: what `PYTHONPATH=. python -m chatapp` sees in a clone never installed.
    libs = tmp_path / "libs"
    libs.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.startswith(("chatapp", "_editable_impl_chatapp")):
            (libs / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{libs}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", *args],  # -S: no site-packages, so no installed chatapp
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=30,
        )

    probe = run("-c", "import importlib.metadata as m; m.version('chatapp')")
    assert "PackageNotFoundError" in probe.stderr  # really not installed there
    result = run("-m", "chatapp", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"chatapp {chatapp.__version__}\n"


def test_help_and_errors_name_the_command_as_it_was_invoked() -> None:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: chatapp [")
    assert "python -m" not in result.stdout
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "--port", "70000"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: chatapp [")
    assert result.stderr.splitlines()[-1] == ("chatapp: error: --port must be between 0 and 65535")
    assert run_cli("--help").stdout.startswith("usage: python -m chatapp [")


def test_readme_table_lists_exactly_the_flags_of_help() -> None:
    shown = set(HELP_OPTION_RE.findall(run_cli("--help").stdout)) - {"--help", "--version"}
    assert {"--host", "--port", "--typing-timeout"} <= shown  # the pattern finds them
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Running it") :]
    table = table[: table.index("\n## ")]
    listed = README_FLAG_RE.findall(table)
    assert len(listed) == len(set(listed)), "a flag is listed twice"
    assert sorted(shown - set(listed)) == [], "flags of --help missing from README.md"
    assert sorted(set(listed) - shown) == [], "README.md lists flags that do not exist"


def test_a_bad_environment_variable_is_reported_by_its_name() -> None:
    result = run_cli(env={**os.environ, "CHATAPP_PORT": "abc"})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "python -m chatapp: error: CHATAPP_PORT must be a whole number, not 'abc'"
    )


#: A value each validated setting refuses, besides the not-a-number of every number.
OUT_OF_RANGE = [
    ("port", "70000"),
    ("log_level", "loud"),
    ("message_burst", "0"),
    ("message_rate", "0"),
    ("redis_url", "http://127.0.0.1/"),
    ("redis_prefix", "two words"),
    ("presence_ttl", "0"),
    ("transports", "carrier-pigeon"),
    ("typing_timeout", "0"),
    ("max_connections_per_ip", "-1"),
    ("event_burst", "0"),
    ("event_rate", "0"),
    ("max_frame_bytes", "1000"),
    ("max_body_bytes", "10"),
    ("max_queued_packets", "1"),
    ("connect_timeout", "0"),
    ("ping_interval", "0"),
    ("ping_timeout", "0"),
]


NUMBERS = [
    (name, "many") for name, kind in typing.get_type_hints(Settings).items() if kind in (int, float)
]


@pytest.mark.parametrize(("name", "value"), OUT_OF_RANGE + NUMBERS)
def test_a_bad_value_is_reported_where_it_came_from(
    name: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flag, variable = "--" + name.replace("_", "-"), "CHATAPP_" + name.upper()

    def error(argv: list[str], environ: dict[str, str]) -> str:
        with pytest.raises(SystemExit) as exited:
            load_settings(argv, environ)
        assert exited.value.code == 2
        return capsys.readouterr().err.splitlines()[-1]

    from_env = error([], {variable: value})
    assert variable in from_env and flag not in from_env, from_env
    from_argv = error([flag, value], {})
    assert flag in from_argv and variable not in from_argv, from_argv


async def test_environment_variables_configure_it(tmp_path, make_client) -> None:
    server = Server(tmp_path, env={"CHATAPP_DB": str(tmp_path / "env.db"), "CHATAPP_PORT": "0"})
    server.args = []
    server.command = lambda: [sys.executable, "-m", "chatapp"]  # type: ignore[method-assign]
    await server.start()
    try:
        await make_client().connect(server.url)
        assert (tmp_path / "env.db").exists()
        assert "-wal" in " ".join(p.name for p in tmp_path.iterdir())  # WAL mode
    finally:
        assert await server.stop() == 0


async def test_default_database_is_chatapp_db_in_the_working_directory(tmp_path) -> None:
    server = Server(tmp_path)
    server.command = lambda: [sys.executable, "-m", "chatapp", "--port", "0"]  # type: ignore[method-assign]
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert (tmp_path / "chatapp.db").exists()
    finally:
        assert await server.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stops_cleanly_and_disconnects_clients(start_server, make_client, sig) -> None:
    server = await start_server()
    client = make_client()
    await client.connect(server.url)
    assert (await client.send("before stop"))["ok"]
    assert await server.stop(sig) == 0
    await client.wait_for("disconnect")
    assert "stopped" in server.log()


async def test_sigterm_while_messages_are_being_sent_loses_no_acked_message(
    start_server, make_client, tmp_path
) -> None:
    server = await start_server("--message-burst", "100000", "--message-rate", "100000")
    client = make_client()
    await client.connect(server.url, room="busy")
    acked: list[int] = []

    async def send_forever() -> None:
        n = 0
        while True:
            ack = await client.send(f"m{n}")
            acked.append(ack["message"]["id"])
            n += 1

    task = asyncio.create_task(send_forever())
    await client.wait_for("message", count=20)
    assert await server.stop() == 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    again = await start_server()
    reader = make_client()
    welcome = await reader.connect(again.url, room="busy", since=0)
    stored = [m["id"] for m in welcome["history"]]
    assert set(acked) <= set(stored)
    assert stored == list(range(1, len(stored) + 1))


def test_a_flag_wins_over_a_bad_variable() -> None:
    settings = load_settings(["--port", "9000"], {"CHATAPP_PORT": "abc"})
    assert settings.port == 9000


TOKEN = "correct horse battery staple"


async def test_start_up_log_says_whether_the_server_is_open_or_private(
    start_server, tmp_path
) -> None:
    (tmp_path / "open").mkdir()
    (tmp_path / "private").mkdir()
    opened = await start_server(workdir=tmp_path / "open")
    private = await start_server(workdir=tmp_path / "private", env={"CHATAPP_ACCESS_TOKEN": TOKEN})

    def access_lines(server: Server) -> list[str]:
        lines = server.log().splitlines()
        return [line.split(" chatapp: ", 1)[1] for line in lines if " server: " in line]

    assert access_lines(opened) == [
        "open server: anyone who can reach it can read and post "
        "(set CHATAPP_ACCESS_TOKEN to make it private)"
    ]
    assert access_lines(private) == [
        "private server: pages, the JSON API and Socket.IO need the access token"
    ]
    assert TOKEN not in private.log()


async def test_http_requests_are_logged_only_at_debug(start_server, tmp_path) -> None:
    (tmp_path / "info").mkdir()
    (tmp_path / "debug").mkdir()
    quiet = await start_server("--log-level", "info", workdir=tmp_path / "info")
    loud = await start_server(workdir=tmp_path / "debug")  # the harness's debug
    async with aiohttp.ClientSession() as http:
        for server in (quiet, loud):
            async with http.get(server.url + "/healthz") as resp:
                assert resp.status == 200
    # Stopped, each has written all its lines.
    assert await quiet.stop() == 0
    assert await loud.stop() == 0
    assert "GET /healthz" not in quiet.log(), quiet.log()
    assert '"GET /healthz HTTP/1.1" 200' in loud.log()


async def test_joins_and_leaves_are_logged_at_info_not_at_warning(
    start_server, make_client, tmp_path
) -> None:
    (tmp_path / "info").mkdir()
    (tmp_path / "warning").mkdir()
    info = await start_server("--log-level", "info", workdir=tmp_path / "info")
    warning = await start_server("--log-level", "warning", workdir=tmp_path / "warning")
    for server in (info, warning):
        client = make_client()
        await client.connect(server.url, room="alpha", name="ann")
        await client.close()
    # Stopped, each has written all its lines.
    assert await info.stop() == 0
    assert await warning.stop() == 0
    assert re.search(
        r" INFO chatapp\.handlers: \S+ joined alpha as 'ann' from 127\.0\.0\.1$",
        info.log(),
        re.MULTILINE,
    ), info.log()
    assert re.search(r" INFO chatapp\.handlers: \S+ left alpha \(", info.log()), info.log()
    assert " joined " not in warning.log() and " left " not in warning.log(), warning.log()
