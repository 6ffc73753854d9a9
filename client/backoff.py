"""Reconnect delays: bounded exponential backoff with jitter."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before each reconnect attempt.

    Attempt ``n`` (0-based) waits ``min(max_delay, initial * factor**n)`` scaled
    by a random factor in ``[1 - jitter, 1]``: ``jitter=0`` is no jitter,
    ``jitter=1`` is "full jitter". After ``max_attempts`` consecutive failed
    attempts the client gives up (``None``: never).
    """

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5
    max_attempts: int | None = 12

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")

    def delay(self, attempt: int, rand: float) -> float:
        """The delay in seconds before attempt ``attempt``; ``rand`` is uniform in [0, 1)."""
        try:
            grown = self.initial * self.factor ** max(attempt, 0)
        except OverflowError:  # a long outage: the cap applies
            grown = self.max_delay
        return min(self.max_delay, grown) * (1.0 - self.jitter * rand)
