"""The error table says what the wire does: every code in it is produced by some test,
except those it says are not sent, which none produces."""

from __future__ import annotations

from collections.abc import Set

import pytest

from protocol.error_table import NOT_SENT
from protocol.errors import CloseCode, Code
from tests.codes import PRODUCED, TABLE, full_run


def _names(codes: Set[int]) -> str:
    return ", ".join(
        f"{code} {(Code(code) if code < 1000 else CloseCode(code)).name}" for code in sorted(codes)
    )


def test_every_code_in_the_table_is_produced_by_some_test() -> None:
    """Over the whole suite (this test runs last) the server produced every error and
    close code of the table in some test, except those the table says it never sends
    (and none of those)."""
    # H6
    if not full_run():
        pytest.skip("checks what the whole suite produced; this run is only part of it")
    not_sent = set(NOT_SENT)
    missing = TABLE - PRODUCED - not_sent
    assert not missing, f"in the table, produced by no test: {_names(missing)}"
    sent_anyway = PRODUCED & not_sent
    assert not sent_anyway, f"the table says never sent, yet produced: {_names(sent_anyway)}"
