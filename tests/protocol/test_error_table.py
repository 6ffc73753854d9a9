"""The error table: errors.md lists every code with its range and retryable flag."""

from __future__ import annotations

from protocol.error_table import ERROR_RANGES, error_range, errors_markdown
from protocol.errors import CloseCode, Code, describe, is_retryable


def test_errors_markdown_lists_every_code_with_range_and_flag() -> None:
    """errors.md has one row per code, with its range and retryable flag."""
    text = errors_markdown()
    for code in [*Code, *CloseCode]:
        rng = error_range(code)
        assert rng is not None
        row = (
            f"| {int(code)} | `{code.name}` | {rng.label} | "
            f"{'yes' if is_retryable(code) else 'no'} | {describe(code)} |"
        )
        assert row in text.splitlines(), row
    for rng in ERROR_RANGES:
        assert f"| {rng.label} | {rng.title} |" in text
