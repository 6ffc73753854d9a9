"""The error and close code table: its documented ranges, its rows, and errors.md.

Derived from :mod:`protocol.errors`, so the table cannot drift from the codes:
:mod:`protocol.schema` puts the rows in the AsyncAPI document
(``x-error-codes``) and writes the Markdown to ``docs/protocol/errors.md``.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NamedTuple

from protocol.errors import CloseCode, Code, describe, is_retryable
from protocol.messages import PROTOCOL_VERSION

__all__ = [
    "ERROR_RANGES", "NOT_SENT", "ON_THE_WIRE", "ErrorRange", "error_range", "error_rows",
    "errors_markdown",
]  # fmt: skip

JSONObject = dict[str, Any]


class ErrorRange(NamedTuple):
    """A range of codes and what a client does with a code in it."""

    low: int
    high: int
    kind: Literal["error", "close"]
    title: str
    advice: str

    @property
    def label(self) -> str:
        """``low-high``, as the docs write a range."""
        return f"{self.low}-{self.high}"

    @property
    def retryable(self) -> bool:
        """Whether codes of this range are retried (errors) or reconnected (closes)."""
        return is_retryable(self.low)


ERROR_RANGES: Final[tuple[ErrorRange, ...]] = (
    ErrorRange(
        100,
        199,
        "error",
        "bad request",
        "the frame or command is malformed; fix it, do not resend it unchanged",
    ),
    ErrorRange(200, 299, "error", "access", "who you are or what you may do; not retryable"),
    ErrorRange(
        300,
        399,
        "error",
        "room state",
        "the command does not fit the room as it is now (not live, not found, "
        "stale); re-read state, then decide again",
    ),
    ErrorRange(500, 599, "error", "transient", "retry the same command later (same command_id)"),
    ErrorRange(
        4000,
        4499,
        "close",
        "close, retryable",
        "reconnect (with backoff) and resume from your last seq",
    ),
    ErrorRange(
        4500, 4999, "close", "close, terminal", "do not reconnect with the same credentials"
    ),
)
"""The ranges documented in :mod:`protocol.errors` (a test keeps the two in step)."""


ON_THE_WIRE: Final[dict[int, str]] = {
    Code.NOT_AUTHENTICATED: "an `error` answering a first frame that is not `hello`, "
    "then close 4500",
    Code.INVALID_UTF8: (
        "in an HTTP body, or a string inside a MessagePack frame; a JSON text frame that "
        "is not UTF-8 never reaches the protocol: the WebSocket layer closes with 1007"
    ),
    CloseCode.BAD_TOKEN: (
        "after `hello`, a close frame; a bad token offered as a `livepilot.auth.` "
        "subprotocol is refused at the handshake with HTTP 403 instead"
    ),
    CloseCode.FORBIDDEN: (
        "never a close frame: a browser `Origin` not allowed is refused at the handshake "
        "with HTTP 403 (empty body)"
    ),
    CloseCode.UNSUPPORTED_PROTOCOL: (
        "never a close frame: a handshake offering no `livepilot.v1.*` subprotocol is "
        "refused with HTTP 403 (empty body)"
    ),
    CloseCode.RATE_LIMITED: (
        "sustained refusals for the actor's budget, which its other connections spend "
        "(refusals for this connection's own rate close with 4504)"
    ),
}
"""How a code reaches the client where that is not the plain `error`, `refused` or
close frame (what the server does, checked by the tests that produce each code)."""

NOT_SENT: Final[dict[int, str]] = {
    Code.NOT_JOINED: "not sent: a command needs no join (the grant is checked on each one)",
    Code.ACCESS_REVOKED: (
        "not sent as an error: access ending sends access_changed and takes the session "
        "out of that creator's room; later joins and commands are refused with 202"
    ),
    CloseCode.ACCESS_REVOKED: (
        "not sent: access ending closes no socket (decision 0015), it sends "
        "access_changed for that creator's room only; the number stays reserved"
    ),
    Code.HISTORY_TRUNCATED: (
        "not sent: a resume beyond the retained history gets a snapshot instead"
    ),
    Code.OVERLOADED: "not sent: this release has no overload detection",
    CloseCode.OVERLOADED: "not sent: this release has no overload detection",
}
"""Codes of the table that this server never sends, and what it does instead. The
numbers stay reserved for their meaning (``tests/test_error_codes.py`` fails should
one be sent, or should any other code never be)."""


def error_range(code: int) -> ErrorRange | None:
    """The documented range a code falls in, if any."""
    for rng in ERROR_RANGES:
        if rng.low <= code <= rng.high:
            return rng
    return None


def _all_codes() -> list[Code | CloseCode]:
    return [*Code, *CloseCode]


def error_rows() -> list[JSONObject]:
    """Every error and close code: code, name, kind, range, retryable, meaning, and
    how it reaches the client when that is not plain (``wire``, empty otherwise)."""
    rows: list[JSONObject] = []
    for code in _all_codes():
        rng = error_range(code)
        rows.append(
            {
                "code": int(code),
                "name": code.name,
                "kind": "close" if isinstance(code, CloseCode) else "error",
                "range": rng.label if rng else None,
                "retryable": is_retryable(code),
                "meaning": describe(code),
                "wire": NOT_SENT.get(code) or ON_THE_WIRE.get(code, ""),
            }
        )
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def errors_markdown() -> str:
    """The error and close code table as Markdown."""
    lines = [
        f"# livepilot protocol v{PROTOCOL_VERSION}: error and close codes",
        "",
        "<!-- Generated by `livepilot schema` from protocol/errors.py; do not edit. -->",
        "",
        "One stable number per meaning. The range a code falls in says what a client "
        "should do with it, so a client that meets a code it does not know yet still "
        "behaves correctly.",
        "",
        "| Range | Class | Retryable | What to do |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {rng.label} | {rng.title} | {_yes(rng.retryable)} | {_cell(rng.advice)} |"
        for rng in ERROR_RANGES
    ]
    sections = (
        ("Error codes", "Carried in the `code` field of `error` and `refused` messages.", "error"),
        ("Close codes", "WebSocket close codes the hub closes a session with.", "close"),
    )
    wire_column = "On the wire (when not a plain `error`, `refused` or close frame)"
    for title, intro, kind in sections:
        lines += [
            "",
            f"## {title}",
            "",
            intro,
            "",
            f"| Code | Name | Range | Retryable | Meaning | {wire_column} |",
            "|---:|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['code']} | `{row['name']}` | {row['range']} | "
            f"{_yes(row['retryable'])} | {_cell(row['meaning'])} | {_cell(row['wire'])} |"
            for row in error_rows()
            if row["kind"] == kind
        ]
    lines += [
        "",
        "## What else the wire carries",
        "",
        "Outside the protocol's own codes, a client meets these:",
        "",
        "| What | When |",
        "|---|---|",
        "| HTTP 403 at the handshake | a browser `Origin` not allowed, no `livepilot.v1.*` "
        "subprotocol offered, or a bad token offered as a subprotocol (before accept "
        "there is no close frame) |",
        "| close 1000 | normal closure (the client left) |",
        "| close 1007 | a text frame that is not valid UTF-8 (the WebSocket layer, before "
        "the protocol: no `error` 104) |",
        "| close 1009 | a frame over four times `max_message_bytes` (the WebSocket layer; "
        "up to that, a bigger frame than `max_message_bytes` gets `error` 105) |",
        "| HTTP 429 + `Retry-After` | an HTTP API write past the actor's budget (body: "
        "code 500 `RATE_LIMITED`) |",
    ]
    return "\n".join(lines) + "\n"
