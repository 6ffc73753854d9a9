"""Backoff: the reconnect delays."""

from __future__ import annotations

from typing import Any

import pytest

from client import Backoff


def test_backoff_grows_caps_and_jitters() -> None:
    """Backoff doubles from initial, caps at max_delay and scales by the jitter draw."""
    backoff = Backoff(initial=0.5, factor=2.0, max_delay=4.0, jitter=0.5)
    assert [backoff.delay(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(2, 0.999999) == pytest.approx(1.0, rel=1e-5)
    assert backoff.delay(10_000, 0.0) == 4.0
    full = Backoff(initial=1.0, jitter=1.0)
    assert full.delay(0, 0.75) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"factor": 0.5}, {"jitter": 1.5}, {"max_attempts": 0}],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    """Negative delays, shrinking factors, jitter outside [0, 1], zero attempts are refused."""
    with pytest.raises(ValueError, match="must"):
        Backoff(**kwargs)
