"""Print the README's table of settings, made from chatapp.settings; ``--write`` puts it in
README.md between its markers (tests/test_settings.py checks that they agree)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chatapp.settings import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- settings table: begin (tools/settings_table.py --write) -->\n"
END = "<!-- settings table: end -->\n"


def readme_table(readme: str) -> str:
    """The table between the markers of ``readme``."""
    return readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    if not parser.parse_args().write:
        sys.stdout.write(markdown_table())
        return
    readme = README.read_text()
    old = readme_table(readme)
    README.write_text(readme.replace(BEGIN + old + END, BEGIN + markdown_table() + END))


if __name__ == "__main__":
    main()
