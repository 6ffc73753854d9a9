"""The error and close code table: unique, described, and ranged as documented."""

from __future__ import annotations

import re

import pytest

from protocol import errors
from protocol.errors import CloseCode, Code, describe, is_retryable
from protocol.schema import ERROR_RANGES, error_range

ALL_CODES = [*Code, *CloseCode]


def documented_ranges() -> set[tuple[int, int]]:
    """The ``low-high`` ranges in protocol/errors.py's docstring table."""
    assert errors.__doc__
    return {(int(a), int(b)) for a, b in re.findall(r"``(\d+)-(\d+)``", errors.__doc__)}


def test_codes_are_unique_across_code_and_close_code() -> None:
    """No number means two things: no aliases within an enum, no overlap between them."""
    assert len(Code.__members__) == len(Code)
    assert len(CloseCode.__members__) == len(CloseCode)
    assert len({int(code) for code in ALL_CODES}) == len(ALL_CODES)


@pytest.mark.parametrize("code", ALL_CODES, ids=lambda c: f"{c.__class__.__name__}.{c.name}")
def test_every_code_has_a_message(code: Code | CloseCode) -> None:
    """describe() knows every code."""
    assert describe(code) != "unknown code"
    assert describe(code).strip()


def test_an_unknown_code_is_described_as_unknown() -> None:
    """describe() of a number outside the table says so."""
    assert describe(999) == "unknown code"


def test_the_range_table_is_the_documented_one() -> None:
    """protocol.schema's range table (used for the docs) matches errors.py's docstring."""
    assert {(r.low, r.high) for r in ERROR_RANGES} == documented_ranges()


@pytest.mark.parametrize("code", list(Code), ids=lambda c: c.name)
def test_every_code_is_in_a_documented_error_range(code: Code) -> None:
    """Every Code lies in one of the documented error ranges."""
    rng = error_range(code)
    assert rng is not None
    assert rng.kind == "error"
    assert (rng.low, rng.high) in documented_ranges()


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name)
def test_close_codes_are_in_the_application_range(code: CloseCode) -> None:
    """Close codes are 4000-4999, the range RFC 6455 leaves to applications."""
    assert 4000 <= code <= 4999
    rng = error_range(code)
    assert rng is not None
    assert rng.kind == "close"


def test_is_retryable_follows_the_documented_ranges() -> None:
    """Transient errors (500-599) retry, closes 4000-4499 reconnect; nothing else does."""
    retryable = {(500, 599), (4000, 4499)}
    for low, high in documented_ranges():
        for probe in (low, (low + high) // 2, high):
            assert is_retryable(probe) is ((low, high) in retryable), probe
    for outside in (0, 99, 499, 600, 3999, 5000):
        assert not is_retryable(outside)


@pytest.mark.parametrize("code", ALL_CODES, ids=lambda c: f"{c.__class__.__name__}.{c.name}")
def test_every_code_retries_as_its_range_says(code: Code | CloseCode) -> None:
    """A code is retryable exactly when its range is."""
    rng = error_range(code)
    assert rng is not None
    assert is_retryable(code) is rng.retryable


def test_codes_outside_every_range_have_no_range() -> None:
    """error_range() of a number in no documented range is None."""
    for number in (0, 400, 450, 600, 3999, 5000):
        assert error_range(number) is None
