"""`pip install .` into a fresh virtual environment, then `python -m chatapp` elsewhere."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import aiohttp

from .support import ROOT, Server


async def test_installed_package_serves_pages_and_the_client(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT)],
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
