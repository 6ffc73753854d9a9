"""Structured logs: JSON lines, extras kept, secrets and bodies dropped."""

from __future__ import annotations

import json
import logging

from server.logs import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "livepilot", logging.INFO, __file__, 1, "session %s closed", ("abc",), None
    )
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_log_line_is_json_with_extras() -> None:
    """A record becomes one JSON object carrying its message and extra fields."""
    line = JsonFormatter().format(record(session="abc", code=4001))
    entry = json.loads(line)
    assert entry["msg"] == "session abc closed"
    assert (entry["level"], entry["session"], entry["code"]) == ("INFO", "abc", 4001)


def test_tokens_and_bodies_never_reach_the_log() -> None:
    """Fields named like a token or a message body are dropped from the line."""
    line = JsonFormatter().format(record(token="eyJhbGciOi.secret", body="{...}", code=1))
    assert "eyJ" not in line
    assert "{...}" not in line
    assert json.loads(line)["code"] == 1
