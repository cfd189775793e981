"""chatapp: a self-hosted real-time chat server."""

from .app import create_app
from .settings import Settings, load_settings
from .version import __version__

__all__ = ["Settings", "__version__", "create_app", "load_settings"]
