"""Token bucket and abuse meter (pure: time is a parameter)."""

from __future__ import annotations

from server.hub.ratelimit import AbuseMeter, TokenBucket


def test_bucket_allows_a_burst_then_the_rate() -> None:
    """A full bucket lets `burst` messages through at once, then refills at `rate`."""
    # H6
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)
    assert bucket.take(0.5)  # 1 token refilled after 0.5 s at 2/s
    assert bucket.take(10.0)
    assert [bucket.take(10.0) for _ in range(3)] == [True, True, False]  # capped at burst


def test_bucket_ignores_time_going_backwards() -> None:
    """A clock step backwards refills nothing (and does not break the bucket)."""
    bucket = TokenBucket(rate=1.0, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(4.0)
    assert bucket.take(5.5) is False
    assert bucket.take(6.1)


def test_abuse_is_sustained_refusals_within_the_window() -> None:
    """`limit` refusals within `window` seconds is abuse; spread-out ones are not."""
    # H6
    meter = AbuseMeter(limit=3, window=10.0)
    assert not meter.refused(0.0)
    assert not meter.refused(11.0)
    assert not meter.refused(12.0)
    assert meter.refused(13.0)
