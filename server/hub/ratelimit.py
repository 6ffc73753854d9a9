"""Rate limiting: token buckets, the budgets actors share, and a meter of sustained abuse.

Pure: the caller passes the time (seconds, monotonic), so tests need no clock.
What each frame costs, and why, is decision 0021.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

__all__ = ["BAD_FRAME_COST", "AbuseMeter", "Budgets", "FrameLimiter", "TokenBucket"]

BAD_FRAME_COST: Final = 10.0
"""What a frame the decoder refuses costs in all (1 before decoding, the rest after):
no working client sends one, and each costs an error reply (decision 0021)."""

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """Allows ``rate`` messages per second on average and bursts of ``burst``."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def _refill(self, now: float) -> float:
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        return self._tokens

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means: refuse this message."""
        if self._refill(now) >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def charge(self, now: float, cost: float) -> None:
        """Spend ``cost`` tokens after the fact, into debt if need be: nothing more
        passes until the debt is paid back at ``rate``."""
        self._refill(now)
        self._tokens -= cost

    def full_at(self) -> float:
        """When the bucket is full again if nothing more is taken (it then is as new)."""
        if self.rate <= 0:
            return float("inf") if self._tokens < self.burst else self._last
        return self._last + max(0.0, self.burst - self._tokens) / self.rate

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0 if one is there now)."""
        tokens = self._refill(now)
        if tokens >= 1.0:
            return 0.0
        return (1.0 - tokens) / self.rate if self.rate > 0 else float("inf")


class _Budget:
    __slots__ = ("bucket", "open", "scheduled")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.open = 0
        self.scheduled = False


class Budgets(Generic[K]):
    """One token bucket per key (an actor), shared by all its connections or requests,
    and the count of its open connections, capped at ``max_open``.

    A key's entry is forgotten once it has no connection open and its bucket is
    full again: a new bucket would be the same, so reconnecting gains nothing,
    and memory stays bounded by the keys active within a refill time.
    """

    __slots__ = ("_due", "_entries", "_order", "burst", "max_open", "rate")

    def __init__(self, rate: float, burst: int, max_open: int | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.max_open = max_open
        self._entries: dict[K, _Budget] = {}
        self._due: list[tuple[float, int, K]] = []  # (full_at, order, key): keys never compared
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, key: K, now: float) -> _Budget:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Budget(TokenBucket(self.rate, self.burst, now))
        return entry

    def open(self, key: K, now: float) -> TokenBucket | None:
        """Admit one more connection of ``key``: the bucket it shares, or None at the cap."""
        self.forget_idle(now)
        entry = self._entry(key, now)
        if self.max_open is not None and entry.open >= self.max_open:
            return None
        entry.open += 1
        return entry.bucket

    def close(self, key: K, now: float) -> None:
        """One connection of ``key`` closed."""
        entry = self._entries.get(key)
        if entry is not None and entry.open > 0:
            entry.open -= 1
            self._schedule(key, entry)
        self.forget_idle(now)

    def take(self, key: K, now: float) -> float:
        """One request of ``key`` (no connection held): 0 if allowed, else the seconds
        until it would be."""
        self.forget_idle(now)
        entry = self._entry(key, now)
        bucket = entry.bucket
        wait = 0.0 if bucket.take(now) else bucket.wait(now)
        self._schedule(key, entry)
        return wait

    def _schedule(self, key: K, entry: _Budget) -> None:
        if entry.open == 0 and not entry.scheduled:
            entry.scheduled = True
            heapq.heappush(self._due, (entry.bucket.full_at(), next(self._order), key))

    def forget_idle(self, now: float) -> None:
        """Forget every key with no connection open whose bucket is full by ``now``."""
        due = self._due
        while due and due[0][0] <= now:
            _, _, key = heapq.heappop(due)
            entry = self._entries.get(key)
            if entry is None:
                continue
            entry.scheduled = False
            if entry.open > 0:
                continue  # scheduled again when its last connection closes
            if entry.bucket.full_at() <= now:
                del self._entries[key]
            else:  # taken from since it was scheduled
                self._schedule(key, entry)


class FrameLimiter:
    """What one connection may send: its own bucket, then its actor's shared one.

    Every frame is charged before it is decoded; a frame the decoder refuses is
    charged the rest of :data:`BAD_FRAME_COST` after (:meth:`penalize`).
    """

    __slots__ = ("actor", "own")

    def __init__(self, own: TokenBucket, actor: TokenBucket | None) -> None:
        self.own = own
        self.actor = actor

    def admit(self, now: float) -> str | None:
        """Charge one frame: None if it passes, else the limit that refused it
        (``"connection"`` or ``"actor"``)."""
        if not self.own.take(now):
            return "connection"
        if self.actor is not None and not self.actor.take(now):
            return "actor"
        return None

    def penalize(self, now: float) -> None:
        """The admitted frame did not decode: charge it the rest of its cost."""
        self.own.charge(now, BAD_FRAME_COST - 1.0)
        if self.actor is not None:
            self.actor.charge(now, BAD_FRAME_COST - 1.0)


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
