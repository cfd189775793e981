"""A wheel built from the project carries the pages and the Socket.IO client, so that
``pip install`` of it works on a machine without Node."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp

from tests.conftest import ServerFactory, require_service
from tests.support import ROOT

CLIENT_DIST = ROOT / "node_modules" / "socket.io-client" / "dist"


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("chatapp-*.whl")
    return wheel


async def test_wheel_contains_the_client_and_serves_it_without_node_modules(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    require_service(
        (CLIENT_DIST / "socket.io.esm.min.js").is_file(),
        "node_modules/socket.io-client is missing (run npm ci)",
    )
    wheel = await asyncio.to_thread(build_wheel, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for required in (
            "chatapp/static/vendor/socket.io.esm.min.js",
            "chatapp/static/vendor/socket.io.min.js",
            "chatapp/static/chat.js",
            "chatapp/static/chat.css",
            "chatapp/static/ui/timeline.js",
            "chatapp/templates/chat.html",
            "chatapp/templates/base.html",
            "chatapp/templates/404.html",
        ):
            assert required in names, f"{required} missing from {wheel.name}"
        assert not any(n.startswith("node_modules/") for n in names)
        esm = zf.read("chatapp/static/vendor/socket.io.esm.min.js")
        assert esm == (CLIENT_DIST / "socket.io.esm.min.js").read_bytes()
        site = tmp_path / "site"
        zf.extractall(site)

    # Run the unpacked wheel (ahead of this checkout on sys.path): no node_modules there.
    run = tmp_path / "run"
    run.mkdir()
    server = await start_server(workdir=run, env={"PYTHONPATH": str(site)})
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/static/vendor/socket.io.esm.min.js") as resp:
            assert resp.status == 200
            assert await resp.read() == esm
        async with http.get(server.url + "/r/team") as resp:
            assert resp.status == 200
            assert 'data-room="team"' in await resp.text()
        async with http.get(server.url + "/static/ui/timeline.js") as resp:
            assert resp.status == 200
    assert "browser client is missing" not in server.log()
    probe = subprocess.run(
        [sys.executable, "-c", "import chatapp.resources as r; print(r.locate().vendor)"],
        env={"PYTHONPATH": str(site)},
        cwd=run,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == str(site / "chatapp" / "static" / "vendor")
