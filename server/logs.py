"""Structured JSON logs, one object per line.

Only what a log line needs: time, level, logger, message and the ``extra``
fields the call site passes. Never a token or a message body: call sites pass
ids and codes, and :data:`_FORBIDDEN` keys are dropped as a second line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Final

__all__ = ["JsonFormatter", "setup_logging"]

_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_FORBIDDEN: Final = frozenset(
    {"token", "body", "frame", "payload", "authorization", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _FORBIDDEN and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    """Send livepilot's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("livepilot", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
