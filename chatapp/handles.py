"""Account handles: the @name nobody else can take, or take a look-alike of.

A handle follows the rules of a display name (:func:`protocol.parse_name`: NFC, no
invisible or text-direction characters) and, since it is typed after ``@`` and shown
where a name is, has no spaces and no ``@``. Two handles are the same handle when they share
a key (:func:`handle_keys`): compared without case and by their confusable skeleton (Unicode
Technical Standard #39), so "ann", "Ann", "ANN" and "\u0430nn" (with a Cyrillic a) are one handle
and only its first owner has it.

The confusable classes come from Unicode's confusables data as the maintained
``confusable_homoglyphs`` package ships it; :func:`check_confusables` checks at start-up
that the installed data draws the classes this relies on.
"""

from __future__ import annotations

import functools
import importlib.metadata
import unicodedata
from typing import Any

from confusable_homoglyphs import confusables  # type: ignore[import-untyped]

from .protocol import ProtocolError, parse_name

MAX_HANDLE = 32

#: Characters the data wraps right-to-left entries in; they are not part of a glyph.
_MARKS = str.maketrans("", "", "\u200e\u200f")


class ConfusablesMismatch(RuntimeError):
    """The installed confusables data does not draw the classes handles rely on."""


def parse_handle(value: Any) -> str:
    """A handle as its owner writes it: a valid display name without spaces or ``@``;
    raises :class:`ProtocolError` saying what is wrong."""
    if not isinstance(value, str):
        raise ProtocolError("invalid handle: must be a string")
    try:
        handle = parse_name(value)
    except ProtocolError as exc:
        raise ProtocolError(str(exc).replace("invalid name", "invalid handle")) from None
    if len(handle) > MAX_HANDLE:
        raise ProtocolError(f"invalid handle: must be 1-{MAX_HANDLE} characters")
    if any(c == "@" or unicodedata.category(c).startswith("Z") for c in handle):
        raise ProtocolError("invalid handle: must not contain spaces or @")
    return handle


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each confusable character's class representative (its TR39 prototype).

    The data lists, for every character, the ones it can be confused with, in both
    directions: a prototype lists its whole class, a member lists its prototype. A
    class is each connected set; its representative is the member the most others point
    to (the prototype), the shortest and then the smallest on ties.
    """
    data: dict[str, list[dict[str, str]]] = confusables.confusables_data
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    degree: dict[str, int] = {}
    for char, entries in data.items():
        for entry in entries:
            other = entry["c"].translate(_MARKS)
            if other:
                parent[find(char)] = find(other)
                degree[other] = degree.get(other, 0) + 1
    members: dict[str, list[str]] = {}
    for node in parent:
        members.setdefault(find(node), []).append(node)
    prototypes: dict[str, str] = {}
    for group in members.values():
        best = min(group, key=lambda s: (-degree.get(s, 0), len(s), s))
        for node in group:
            if len(node) == 1 and node != best:
                prototypes[node] = best
    return prototypes


def skeleton(text: str) -> str:
    """``text``'s confusable skeleton (UTS #39): decomposed (NFD), each character replaced
    by its confusable class's representative, decomposed again."""
    prototypes = _prototypes()
    text = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in text))


def handle_keys(handle: str) -> tuple[str, ...]:
    """What two handles are compared by: handles that share a key are one handle.

    Without case, and by confusable skeleton, in both orders: "I" looks like "l" and is "i"
    without case, so "biII" is refused next to "bill" (its skeleton, case-folded, is
    "bill") as "BILL" is (it is "bill" case-folded). The first key is the one a login
    finds the account by.
    """
    first = skeleton(handle.casefold()).casefold()
    second = skeleton(handle).casefold()
    return (first,) if first == second else (first, second)


#: Handles each of which must be the same handle as the first of its group, on any data.
_SAME = (
    ("ann", "Ann", "ANN", "\u0430nn", "\uff41nn"),  # Cyrillic a, fullwidth a
    ("paypal", "p\u0430yp\u0430l", "\u0440aypal"),  # Cyrillic a and r
    ("bill", "bi11", "biII", "BILL", "b\u0131ll"),  # digit one, capital I, dotless i
    ("joe", "j\u043ee", "jo\u0435"),  # Cyrillic o and e
)
#: Handles that must stay apart.
_APART = (("ann", "anne"), ("bob", "rob"), ("zoë", "zoe"), ("李", "季"))


def check_confusables() -> None:
    """Raise :class:`ConfusablesMismatch` unless the installed data tells look-alikes
    together and different handles apart as handles rely on (the server and the ``users``
    command run this first: there is no other way to keep impostors out)."""
    try:
        for group in _SAME:
            first = set(handle_keys(group[0]))
            for other in group[1:]:
                if not first & set(handle_keys(other)):
                    raise ValueError(f"{group[0]!r} and {other!r} are two handles")
        for a, b in _APART:
            if set(handle_keys(a)) & set(handle_keys(b)):
                raise ValueError(f"{a!r} and {b!r} are one handle")
    except Exception as exc:  # a wrong class, or the data's shape changed
        version = importlib.metadata.version("confusable-homoglyphs")
        reason = str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}"
        raise ConfusablesMismatch(
            f"confusable-homoglyphs {version} does not tell look-alike handles together "
            f"as chatapp needs ({reason}); install the versions .ci/constraints.txt lists"
        ) from exc
