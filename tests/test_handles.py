"""Handles: the rules a handle follows, and which handles are one handle."""

from __future__ import annotations

import pytest
from confusable_homoglyphs import confusables  # type: ignore[import-untyped]

from chatapp import handles
from chatapp.handles import ConfusablesMismatch, check_confusables, handle_keys, parse_handle
from chatapp.protocol import ProtocolError


def same(a: str, b: str) -> bool:
    return bool(set(handle_keys(a)) & set(handle_keys(b)))


@pytest.mark.parametrize("handle", ["ann", "Zoë", "李雷", "ann_b-2.x", "O'Brien", "a" * 32])
def test_a_handle_may_be_any_visible_name_without_spaces_or_at(handle: str) -> None:
    assert parse_handle(handle) == handle


def test_a_handle_is_trimmed_and_nfc_normalised() -> None:
    assert parse_handle("  Zoe\u0308 ") == "Zo\u00eb"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("ann b", "invalid handle: must not contain spaces or @"),
        ("ann\u00a0b", "invalid handle: must not contain spaces or @"),
        ("ann@x", "invalid handle: must not contain spaces or @"),
        ("", "invalid handle: must be 1-32 characters"),
        ("a" * 33, "invalid handle: must be 1-32 characters"),
        ("ann\u200b", "invalid handle: must not contain invisible or text-direction characters"),
        ("\u202eevil", "invalid handle: must not contain invisible or text-direction characters"),
        ("ann\x07", "invalid handle: must not contain control characters"),
        (7, "invalid handle: must be a string"),
    ],
)
def test_a_handle_that_breaks_a_rule_is_refused_saying_which(value: object, error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_handle(value)
    assert str(caught.value) == error


@pytest.mark.parametrize(
    "other",
    [
        "Ann",
        "ANN",
        "\u0430nn",  # Cyrillic a
        "\uff41nn",  # fullwidth a
        "\U0001d41ann",  # mathematical bold a
    ],
)
def test_a_look_alike_or_another_case_is_the_same_handle(other: str) -> None:
    assert same("ann", other)


@pytest.mark.parametrize(
    ("first", "other"),
    [
        ("bill", "biII"),  # capital I looks like l
        ("bill", "bi11"),  # so does the digit one
        ("bill", "BILL"),
        ("bill", "b\u0131ll"),  # dotless i
        ("paypal", "p\u0430yp\u0430l"),
        ("morn", "rnorn"),  # "rn" looks like "m"
        ("joe", "j\u043e\u0435"),
    ],
)
def test_confusable_handles_are_one_handle(first: str, other: str) -> None:
    assert same(first, other)
    assert same(other, first)


@pytest.mark.parametrize(
    ("first", "other"), [("ann", "anne"), ("bob", "rob"), ("zo\u00eb", "zoe"), ("sam", "fam")]
)
def test_handles_that_look_different_stay_apart(first: str, other: str) -> None:
    assert not same(first, other)


def test_the_installed_confusables_data_is_what_handles_rely_on() -> None:
    check_confusables()


def test_confusables_data_that_no_longer_tells_look_alikes_together_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A release of the data package that drew other classes (or changed its shape) must
    stop the server rather than let look-alikes register."""
    handles._prototypes.cache_clear()
    monkeypatch.setattr(confusables, "confusables_data", {})
    try:
        with pytest.raises(ConfusablesMismatch, match="are two handles"):
            check_confusables()
        monkeypatch.setattr(confusables, "confusables_data", {"a": [{"x": "b"}]})
        handles._prototypes.cache_clear()
        with pytest.raises(ConfusablesMismatch, match="KeyError"):
            check_confusables()
    finally:
        handles._prototypes.cache_clear()
