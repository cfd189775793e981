"""Where the templates, static files and the npm-installed Socket.IO client live.

An installed wheel carries them inside the package (``chatapp/static``, ...); a source
checkout has them at the top level and the client in ``node_modules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CLIENT_FILES = ("socket.io.esm.min.js", "socket.io.min.js")
INSTALL_HINT = "run `npm ci` in the chatapp source directory (then reinstall the package)"


@dataclass(frozen=True, slots=True)
class Resources:
    templates: Path
    static: Path
    vendor: Path  # directory holding CLIENT_FILES

    @property
    def missing_client_files(self) -> list[str]:
        return [f for f in CLIENT_FILES if not (self.vendor / f).is_file()]


def locate() -> Resources:
    if (PACKAGE_DIR / "templates").is_dir():
        return Resources(
            templates=PACKAGE_DIR / "templates",
            static=PACKAGE_DIR / "static",
            vendor=PACKAGE_DIR / "static" / "vendor",
        )
    root = PACKAGE_DIR.parent
    return Resources(
        templates=root / "templates",
        static=root / "static",
        vendor=root / "node_modules" / "socket.io-client" / "dist",
    )
