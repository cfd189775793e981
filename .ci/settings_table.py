"""Print the README's table of settings, made from chatapp.settings; ``--write`` puts it in
README.md between its markers (tests/test_settings.py checks that they agree).

Run as ``.venv/bin/python .ci/settings_table.py --write``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's chatapp, whatever the venv has installed

from chatapp.settings import TABLE_BEGIN, TABLE_END, markdown_table  # noqa: E402

README = ROOT / "README.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    if not parser.parse_args().write:
        sys.stdout.write(markdown_table())
        return
    readme = README.read_text()
    start, end = readme.index(TABLE_BEGIN) + len(TABLE_BEGIN), readme.index(TABLE_END)
    README.write_text(readme[:start] + markdown_table() + readme[end:])


if __name__ == "__main__":
    main()
