"""The error table: errors.md lists every code with its range and retryable flag."""

from __future__ import annotations

from protocol.error_table import (
    ERROR_RANGES,
    NOT_SENT,
    ON_THE_WIRE,
    error_range,
    errors_markdown,
)
from protocol.errors import CloseCode, Code, describe, is_retryable


def test_errors_markdown_lists_every_code_with_range_and_flag() -> None:
    """errors.md has one row per code, with its range, retryable flag, and how it
    reaches the client when that is not a plain error or close frame."""
    text = errors_markdown()
    for code in [*Code, *CloseCode]:
        rng = error_range(code)
        assert rng is not None
        wire = NOT_SENT.get(code) or ON_THE_WIRE.get(code, "")
        row = (
            f"| {int(code)} | `{code.name}` | {rng.label} | "
            f"{'yes' if is_retryable(code) else 'no'} | {describe(code)} | {wire} |"
        )
        assert row in text.splitlines(), row


def test_errors_markdown_says_what_the_handshake_and_the_websocket_layer_send() -> None:
    """errors.md says a refused handshake is HTTP 403 (not 4502/4505) and bad UTF-8 in a
    text frame closes with 1007 (not error 104)."""
    # H6
    text = errors_markdown()
    assert "| 4502 | `FORBIDDEN` |" in text
    assert "never a close frame" in text.split("| 4502 |")[1].splitlines()[0]
    assert "HTTP 403" in text.split("| 4505 |")[1].splitlines()[0]
    assert "1007" in text.split("| 104 |")[1].splitlines()[0]
    assert "| close 1007 |" in text
    assert "| HTTP 403 at the handshake |" in text
    for rng in ERROR_RANGES:
        assert f"| {rng.label} | {rng.title} |" in text
