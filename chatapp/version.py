"""chatapp's version: the installed distribution's, or this source tree's."""

from __future__ import annotations

from importlib import metadata

#: This source tree's version; the build takes the distribution's from here.
__version__ = "0.1.0"


def version() -> str:
    """The installed distribution's version, or this tree's when it runs uninstalled (a
    source checkout on ``sys.path``)."""
    try:
        return metadata.version("chatapp")
    except metadata.PackageNotFoundError:
        return __version__
