"""Per-connection rate limiting: a token bucket, and a meter of sustained abuse.

Pure: the caller passes the time (seconds, monotonic), so tests need no clock.
"""

from __future__ import annotations

from collections import deque

__all__ = ["AbuseMeter", "TokenBucket"]


class TokenBucket:
    """Allows ``rate`` messages per second on average and bursts of ``burst``."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means: refuse this message."""
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class AbuseMeter:
    """Counts refusals in a sliding window; ``limit`` of them within ``window`` seconds
    is sustained abuse (the connection is then closed with a terminal code)."""

    __slots__ = ("_times", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def refused(self, now: float) -> bool:
        """Record one refusal; True when the window now holds ``limit`` refusals."""
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times) >= self.limit
