"""Packaging as a user meets it: `pip install .` (the README's set-up), and `python -m build`
(an sdist, then a wheel built from that sdist) installed into a fresh virtual environment,
then the installed ``chatapp`` run from a directory outside the checkout.

The README's set-up installs with ``-c .ci/constraints.txt``, the lock of the versions tested
together; the wheel installs with plain ``pip install``, as a user's ``pip install chatapp``
does: the real resolver against the configured index, so a dependency range that cannot be
met fails here. It stays reasonably quick because pip's cache already holds what installing
the test environment (``.ci/test``) downloaded moments before. The lock files themselves are
checked against pyproject.toml's ranges.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import aiohttp
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from .conftest import require_service
from .support import ROOT, Server

#: What of the npm client the sdist carries: the files the wheel needs, and their license.
NPM_CLIENT = ROOT / "node_modules" / "socket.io-client"
SDIST_NPM_FILES = [
    "node_modules/socket.io-client/LICENSE",
    "node_modules/socket.io-client/dist/socket.io.esm.min.js",
    "node_modules/socket.io-client/dist/socket.io.min.js",
    "node_modules/socket.io-client/package.json",
]


def pins(path: Path) -> dict[NormalizedName, str]:
    """A lock file's ``name==version`` lines, by normalised name."""
    pinned = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = version.strip()
    return pinned


def declared(*, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """pyproject.toml's dependencies, and those of ``extras``, that apply on this platform."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def test_the_lock_pins_every_dependency_within_its_range() -> None:
    locked = pins(ROOT / ".ci" / "constraints.txt")
    for req in declared(extras=("test",)):
        name = canonicalize_name(req.name)
        assert name in locked, f".ci/constraints.txt does not pin {req.name}"
        assert locked[name] in req.specifier, f"{name}=={locked[name]} is outside {req}"
    # Transitive dependencies too: walk what the locked distributions require (their
    # metadata, as installed here from this lock by .ci/test).
    environment = {str(k): str(v) for k, v in default_environment().items()}
    todo = [canonicalize_name(r.name) for r in declared(extras=("test",))]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in locked, f".ci/constraints.txt does not pin {name}, which the tests install"
        assert importlib.metadata.version(name) == locked[name], (
            f"{name} {importlib.metadata.version(name)} is installed, the lock has "
            f"{locked[name]}: reinstall with -c .ci/constraints.txt"
        )
        for line in importlib.metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**environment, "extra": ""}):
                todo.append(canonicalize_name(req.name))


def test_the_oldest_lock_pins_each_runtime_dependency_at_its_lower_bound() -> None:
    oldest = pins(ROOT / ".ci" / "constraints-oldest.txt")
    for req in declared():
        (lower,) = [s.version for s in req.specifier if s.operator == ">="]
        name = canonicalize_name(req.name)
        assert name in oldest and Version(oldest[name]) == Version(lower), (
            f".ci/constraints-oldest.txt: {name} is not at {lower}"
        )
    for req in declared(extras=("test",)):
        name = canonicalize_name(req.name)
        assert oldest[name] in req.specifier, f"{name}=={oldest[name]} is outside {req}"


def test_the_protocol_tests_that_ci_reruns_exist() -> None:
    listed = [
        line
        for line in (ROOT / ".ci" / "protocol-tests").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert listed
    for path in listed:
        assert (ROOT / path).is_file(), path


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run ``command``; fail the test with its output if it fails."""
    result = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


def python_build(kind: str, source: Path, out: Path) -> Path:
    """``python -m build --sdist|--wheel`` (isolated, as a packager runs it): the file made."""
    run(sys.executable, "-m", "build", kind, "--outdir", out, source)
    (made,) = out.iterdir()
    return made


async def serves_the_page_and_the_npm_client(
    workdir: Path, command: list[str], client: bytes
) -> None:
    """Start ``command --port 0`` in ``workdir``; the page and the client must be served."""
    workdir.mkdir()
    server = Server(workdir)
    server.command = lambda: [*command, "--port", "0"]  # type: ignore[method-assign]
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/r/packaged") as resp:
                assert resp.status == 200
                assert 'data-room="packaged"' in await resp.text()
            async with http.get(server.url + "/static/vendor/socket.io.esm.min.js") as resp:
                assert resp.status == 200
                assert await resp.read() == client  # the npm file, byte for byte
    finally:
        assert await server.stop() == 0, server.log()
    assert not server.bad_log_lines(), server.log()
    assert "browser client is missing" not in server.log()


async def test_installed_package_serves_pages_and_the_client(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            str(ROOT),
            "-c",
            str(ROOT / ".ci" / "constraints.txt"),
        ],
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = Server(elsewhere)
    server.command = lambda: [str(python), "-m", "chatapp", "--port", "0"]  # type: ignore[method-assign]
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/r/packaged") as resp:
                assert resp.status == 200
                assert 'data-room="packaged"' in await resp.text()
            async with session.get(server.url + "/static/vendor/socket.io.esm.min.js") as resp:
                assert resp.status == 200
            async with session.get(server.url + "/healthz") as resp:
                assert await resp.json() == {"status": "ok"}
        # It ran the installed copy, not this checkout.
        out = subprocess.run(
            [str(python), "-c", "import chatapp; print(chatapp.__file__)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=elsewhere,
        )
        assert str(env_dir) in out.stdout
        assert (elsewhere / "chatapp.db").exists()
    finally:
        assert await server.stop() == 0
    assert sys.executable != str(python)


@pytest.mark.timeout(900)
async def test_sdist_builds_a_wheel_that_installs_and_serves_without_node_modules(
    tmp_path: Path,
) -> None:
    require_service(
        (NPM_CLIENT / "dist" / "socket.io.esm.min.js").is_file(),
        "node_modules/socket.io-client is missing (run npm ci)",
    )
    npm_esm = (NPM_CLIENT / "dist" / "socket.io.esm.min.js").read_bytes()
    sdist = await asyncio.to_thread(python_build, "--sdist", ROOT, tmp_path / "sdist")
    # The wheel is built from the unpacked sdist, outside the checkout: nothing of the
    # checkout's node_modules can reach it, only the files the sdist carries.
    unpacked = tmp_path / "unpacked"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    carried = sorted(
        p.relative_to(source).as_posix()
        for p in (source / "node_modules").rglob("*")
        if p.is_file()
    )
    assert carried == SDIST_NPM_FILES
    wheel = await asyncio.to_thread(python_build, "--wheel", source, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("chatapp/static/vendor/socket.io.esm.min.js") == npm_esm
        licenses = [n.split("/licenses/", 1)[1] for n in zf.namelist() if "/licenses/" in n]
        assert licenses == ["node_modules/socket.io-client/LICENSE"]

    env_dir = tmp_path / "venv"
    await asyncio.to_thread(venv.create, env_dir, with_pip=True)
    python, script = env_dir / "bin" / "python", env_dir / "bin" / "chatapp"
    await asyncio.to_thread(run, python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    # The console script and `python -m`, started outside the checkout, run the installed
    # copy.
    await serves_the_page_and_the_npm_client(tmp_path / "script", [str(script)], npm_esm)
    await serves_the_page_and_the_npm_client(
        tmp_path / "module", [str(python), "-m", "chatapp"], npm_esm
    )
    where = run(python, "-c", "import chatapp; print(chatapp.__file__)", cwd=tmp_path / "module")
    assert Path(where.strip()).is_relative_to(env_dir)
    assert run(script, "--version") == f"chatapp {importlib.metadata.version('chatapp')}\n"

    # `pip install chatapp-*.tar.gz` builds a wheel from the sdist by itself.
    await asyncio.to_thread(
        run,
        *(python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", sdist),
        cwd=tmp_path,
    )
    await serves_the_page_and_the_npm_client(
        tmp_path / "from-sdist", [str(python), "-m", "chatapp"], npm_esm
    )
