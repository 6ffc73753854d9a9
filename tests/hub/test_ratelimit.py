"""Token buckets, shared budgets, the frame limiter and the abuse meter (pure: time
is a parameter)."""

from __future__ import annotations

from protocol.model import Actor
from server.hub.ratelimit import BAD_FRAME_COST, AbuseMeter, Budgets, FrameLimiter, TokenBucket
from tests.actors import ANN, ANN_ELSEWHERE


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


def test_charge_puts_the_bucket_in_debt() -> None:
    """A charge after the fact may overdraw the bucket; nothing passes until it is repaid."""
    # H6
    bucket = TokenBucket(rate=1.0, burst=5, now=0.0)
    assert bucket.take(0.0)
    bucket.charge(0.0, 9.0)  # 5 - 1 - 9 = -5
    assert not bucket.take(5.9)
    assert bucket.take(6.0)
    assert bucket.wait(6.0) == 1.0


def test_bad_frames_cost_more_than_good_ones() -> None:
    """A frame that fails to decode costs BAD_FRAME_COST tokens, a good one 1."""
    # H6
    burst = 100
    good = FrameLimiter(TokenBucket(1.0, burst, 0.0), None)
    assert sum(good.admit(0.0) is None for _ in range(200)) == burst
    bad = FrameLimiter(TokenBucket(1.0, burst, 0.0), None)
    passed = 0
    while bad.admit(0.0) is None:
        bad.penalize(0.0)
        passed += 1
    assert passed == burst // BAD_FRAME_COST


def test_connections_of_one_actor_share_its_budget() -> None:
    """Each connection has its own bucket, and the actor's is shared: many connections
    together get the actor's rate, not many times the connection's."""
    # H6
    budgets: Budgets[Actor] = Budgets(rate=1.0, burst=10, max_open=5)
    shared = [budgets.open(ANN, 0.0) for _ in range(3)]
    assert shared[0] is not None
    assert all(bucket is shared[0] for bucket in shared)
    limiters = [FrameLimiter(TokenBucket(100.0, 100, 0.0), bucket) for bucket in shared]
    verdicts = [limiter.admit(0.0) for limiter in limiters for _ in range(5)]
    assert verdicts.count(None) == 10
    assert set(verdicts) == {None, "actor"}
    assert budgets.open(ANN_ELSEWHERE, 0.0) is not shared[0]  # the agency is in the key
    own = FrameLimiter(TokenBucket(1.0, 2, 0.0), budgets.open(ANN_ELSEWHERE, 0.0))
    assert [own.admit(0.0) for _ in range(3)] == [None, None, "connection"]


def test_connections_beyond_the_cap_are_refused_until_one_closes() -> None:
    """At `max_open` connections an actor's next one is refused; a close frees a slot."""
    # H6
    budgets: Budgets[Actor] = Budgets(rate=1.0, burst=10, max_open=2)
    assert budgets.open(ANN, 0.0) is not None
    assert budgets.open(ANN, 0.0) is not None
    assert budgets.open(ANN, 0.0) is None
    assert budgets.open(ANN_ELSEWHERE, 0.0) is not None
    budgets.close(ANN, 1.0)
    assert budgets.open(ANN, 1.0) is not None


def test_reconnecting_does_not_refill_the_budget() -> None:
    """An actor's spent budget outlives its connections until it has refilled; then the
    entry is forgotten (memory stays bounded)."""
    # H6
    budgets: Budgets[Actor] = Budgets(rate=1.0, burst=10, max_open=2)
    bucket = budgets.open(ANN, 0.0)
    assert bucket is not None
    assert all(bucket.take(0.0) for _ in range(10))
    budgets.close(ANN, 0.0)
    again = budgets.open(ANN, 1.0)
    assert again is bucket
    assert again.take(1.0)
    assert not again.take(1.0)
    budgets.close(ANN, 1.0)
    budgets.forget_idle(10.9)
    assert len(budgets) == 1  # not full yet
    budgets.forget_idle(11.0)
    assert len(budgets) == 0


def test_one_off_takes_answer_how_long_to_wait() -> None:
    """A request takes from its key's bucket: 0 when allowed, else the seconds to wait;
    the key is forgotten once full again."""
    # H6
    budgets: Budgets[Actor] = Budgets(rate=0.5, burst=2)
    assert budgets.take(ANN, 0.0) == 0.0
    assert budgets.take(ANN, 0.0) == 0.0
    assert budgets.take(ANN, 0.0) == 2.0
    assert budgets.take(ANN_ELSEWHERE, 0.0) == 0.0
    assert budgets.take(ANN, 2.0) == 0.0
    budgets.forget_idle(6.0)
    assert len(budgets) == 0
