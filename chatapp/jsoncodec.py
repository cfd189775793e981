"""The JSON module python-socketio and python-engineio use for packets (their ``json=``).

orjson encodes and decodes several times faster than the standard library. The libraries
call ``dumps(data, separators=(",", ":"))`` and expect ``str``; orjson's output is already
compact and is bytes, so it is decoded. Whatever orjson refuses (a lone surrogate, NaN,
an integer past 64 bits, an object of another type) falls back to engine.io's own module,
so every input accepted without orjson still is; the one difference is that orjson reads
integer literals past 64 bits as floats (engine.io's module refuses those over 100 digits).
Without orjson installed, engine.io's module is used.
"""

from __future__ import annotations

import json
from typing import Any

from engineio import json as eio_json

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps it optional
    orjson = None  # type: ignore[assignment]


class OrjsonCodec:
    """``dumps``/``loads`` with the standard library's signatures, backed by orjson."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return str(eio_json.dumps(obj, **kwargs))

    @staticmethod
    def loads(s: str | bytes, **kwargs: Any) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return eio_json.loads(s, **kwargs)


def packet_json() -> Any:
    """The module-like object to hand to ``socketio.AsyncServer(json=...)``."""
    return OrjsonCodec if orjson is not None else eio_json


def dumps_text(obj: Any) -> str:
    """``obj`` as compact JSON text, non-ASCII characters as themselves (not ``\\uXXXX``
    escapes, which take up to 12 bytes for one emoji): for the JSON API's responses."""
    if orjson is not None:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:
            pass
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def encoded_size(obj: Any) -> int:
    """Bytes ``obj`` takes as the UTF-8 JSON the server sends."""
    if orjson is not None:
        try:
            return len(orjson.dumps(obj))
        except TypeError:
            pass
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
