"""The value parsers behind :data:`server.config.OPTIONS`: a raw value -> a typed one.

A raw value is a string from the environment or a flag's value (or an already
typed override). Each parser returns the typed value or raises ``ValueError``
with a message that does not repeat secrets; :func:`server.config.load_settings`
names the variable or flag. The bounds they check against
(:data:`MIN_JWT_SECRET_BYTES`, :data:`LOG_LEVELS`) are re-exported by
:mod:`server.config`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "LOG_LEVELS", "MIN_JWT_SECRET_BYTES", "LogLevel", "Parser", "boolean", "integer",
    "log_level", "normalize_origin", "number", "optional_text", "origins", "redis_url",
    "secret", "text",
]  # fmt: skip

MIN_JWT_SECRET_BYTES = 32
"""Shortest HS256 secret accepted (RFC 7518 section 3.2: the key size of SHA-256)."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Parser = Callable[[object], object]
"""Raw value -> typed value, or ``ValueError`` with a message that repeats no secret."""


def integer(lo: int, hi: int) -> Parser:
    """A parser of integers from ``lo`` to ``hi`` (``_`` separators allowed)."""

    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"expected an integer from {lo} to {hi}")
        if isinstance(raw, str):
            try:
                value = int(raw.strip().replace("_", ""))
            except ValueError:
                raise ValueError(f"expected an integer from {lo} to {hi}, got {raw!r}") from None
        elif isinstance(raw, int):
            value = raw
        else:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}, got {value}")
        return value

    return parse


def number(lo: float, hi: float) -> Parser:
    """A parser of finite numbers above ``lo`` and at most ``hi``."""
    bound = f"above {lo:g} and at most {hi:g}"

    def parse(raw: object) -> float:
        if isinstance(raw, bool):
            raise ValueError(f"expected a number {bound}")
        if isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise ValueError(f"expected a number {bound}, got {raw!r}") from None
        elif isinstance(raw, int | float):
            value = float(raw)
        else:
            raise ValueError(f"expected a number {bound}")
        if not (math.isfinite(value) and lo < value <= hi):
            raise ValueError(f"expected a number {bound}, got {value:g}")
        return value

    return parse


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def boolean(raw: object) -> bool:
    """``true``/``false``, or 1/0, yes/no, on/off (any case)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"expected true/false (1/0, yes/no, on/off), got {raw!r}")
    raise ValueError("expected true or false")


def text(raw: object) -> str:
    """A non-empty string, stripped."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def secret(raw: object) -> str:
    """A secret of at least :data:`MIN_JWT_SECRET_BYTES` bytes, kept byte for byte."""
    # Not stripped: a secret is used byte for byte; never echoed in messages.
    if not isinstance(raw, str) or not raw:
        raise ValueError("must not be empty")
    if len(raw.encode()) < MIN_JWT_SECRET_BYTES:
        raise ValueError(f"must be at least {MIN_JWT_SECRET_BYTES} bytes long (RFC 7518)")
    return raw


def optional_text(raw: object) -> str | None:
    """A string, stripped; None (unset) when absent or blank."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw.strip() or None


def log_level(raw: object) -> LogLevel:
    """One of :data:`LOG_LEVELS`, in any case."""
    if isinstance(raw, str):
        word = raw.strip().upper()
        for level in LOG_LEVELS:
            if word == level:
                return level
    raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")


def redis_url(raw: object) -> str | None:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL; None (unset) when blank."""
    url = optional_text(raw)
    if url is None:
        return None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return url


def normalize_origin(origin: str) -> str:
    """An origin as compared: stripped, no trailing slash, lower case."""
    return origin.strip().rstrip("/").lower()


def origins(raw: object) -> tuple[str, ...]:
    """Comma-separated (or listed) ``http(s)`` origins or ``*``: normalized, deduplicated."""
    if isinstance(raw, str):
        items = [item for item in raw.split(",") if item.strip()]
    elif isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        items = [str(item) for item in raw]
    else:
        raise ValueError("expected a comma-separated list of origins")
    result: list[str] = []
    for item in items:
        origin = normalize_origin(item)
        if origin != "*":
            parts = urlsplit(origin)
            if (
                parts.scheme not in {"http", "https"}
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
                or parts.username is not None
            ):
                raise ValueError(
                    f"expected origins like https://console.example.com or *, got {item!r}"
                )
        if origin not in result:
            result.append(origin)
    return tuple(result)
