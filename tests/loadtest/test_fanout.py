"""loadtest.scenarios.fanout: the rates a ramp offers."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from typing import Any

import pytest

from loadtest.report import Result
from loadtest.scenarios.fanout import FIGURES, Ramp, summarize


def walk(ramp: Ramp, capacity: float) -> list[float]:
    """The rates offered to a server that sustains every rate up to ``capacity``."""
    rates: list[float] = []
    rate: float | None = ramp.rate
    while rate is not None:
        rates.append(round(rate))
        rate = ramp.next(rate <= capacity)
    return rates


def test_the_coarse_ramp_climbs_by_its_factor_while_sustained() -> None:
    """Without refinement the ramp multiplies by its factor and stops at the first failure."""
    assert walk(Ramp(1000, 2, 10, refine=0), capacity=5000) == [1000, 2000, 4000, 8000]


def test_the_first_failure_sends_the_ramp_back_to_climb_finer() -> None:
    """After the first step not sustained, the ramp climbs from the last sustained
    rate by the finer factor, and stops at the first finer step not sustained."""
    rates = walk(Ramp(1000, 2, 10, refine=1.25), capacity=6000)
    assert rates == [1000, 2000, 4000, 8000, 5000, 6250]


def test_refining_stops_below_the_rate_that_failed() -> None:
    """The finer climb never offers the rate that already failed (or one above it)."""
    ramp = Ramp(1000, 2, 10, refine=1.25)
    rates = walk(ramp, capacity=7900)
    # 7812 is sustained; the next, 9766, is past 8000, which failed: the ramp ends.
    assert rates == [1000, 2000, 4000, 8000, 5000, 6250, 7812]
    assert ramp.refining


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [
        (500, [1000]),  # nothing sustained: nothing to go back to
        (10**9, [1000, 2000, 4000]),  # never saturated within max_steps
    ],
)
def test_no_refinement_without_a_sustained_step_and_a_failure(
    capacity: float, expected: Sequence[int]
) -> None:
    """Refinement needs a sustained step below a failed one."""
    assert walk(Ramp(1000, 2, 3, refine=1.1), capacity) == expected


def test_a_finer_factor_no_finer_than_the_gap_does_not_refine() -> None:
    """When the finer step would reach the failed rate anyway, the ramp just ends."""
    assert walk(Ramp(1000, 1.05, 10, refine=1.1), capacity=1060) == [1000, 1050, 1102]


def _left_and_remaining(ramp: Ramp, capacity: float) -> list[tuple[bool, int, int]]:
    """At each step: refining?, steps_left(), and how many steps really followed."""
    rates = walk(copy.deepcopy(ramp), capacity)
    seen: list[tuple[bool, int, int]] = []
    rate: float | None = ramp.rate
    while rate is not None:
        seen.append((ramp.refining, ramp.steps_left(), len(rates) - len(seen)))
        rate = ramp.next(rate <= capacity)
    return seen


def test_steps_left_counts_the_coarse_steps_of_a_ramp_never_saturated() -> None:
    """Never saturated: steps_left is exactly the coarse steps still to come."""
    seen = _left_and_remaining(Ramp(1000, 2, 6, refine=1.25), capacity=10**9)
    assert [left for _, left, _ in seen] == [remaining for _, _, remaining in seen]
    assert [left for _, left, _ in seen] == [6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize("capacity", [5000, 6000, 7900])
def test_steps_left_while_refining_bounds_the_finer_climb(capacity: float) -> None:
    """Refining: steps_left counts the finer steps up to the failed rate, never fewer
    than follow (exact when the server sustains all of them)."""
    seen = _left_and_remaining(Ramp(1000, 2, 6, refine=1.25), capacity)
    refining = [(left, remaining) for r, left, remaining in seen if r]
    assert refining
    assert all(left >= remaining for left, remaining in refining)
    if capacity == 7900:  # 5000, 6250, 7812 sustained; 9766 not offered (8000 failed)
        assert refining == [(3, 3), (2, 2), (1, 1)]


def _step(
    target: float,
    delivered: float,
    server_cpu: float,
    *,
    sustained: bool = True,
    valid: bool = True,
) -> dict[str, Any]:
    return {
        "target": target,
        "delivered": delivered,
        "sustained": sustained,
        "valid": valid,
        "contended": False,
        "server_cpu": server_cpu,
        "loadgen_cpu": 50.0 if valid else 96.0,
        "latency": {"p99_ms": 5.0},
    }


def test_a_ramp_the_load_generator_could_not_finish_keeps_its_per_cpu_figure() -> None:
    """Saturated load generator: the run is invalid (capacity only a lower bound), but
    deliveries per server CPU-second at the best sustained step still counts."""
    steps = [
        _step(100_000, 100_000, 50.0),
        _step(160_000, 158_000, 80.0),
        _step(220_000, 190_000, 90.0, valid=False),
    ]
    out = summarize(steps, argparse.Namespace(max_steps=20))
    assert out["valid"] is False
    assert out["capacity_lower_bound"] == 158_000
    assert out["per_cpu"] == 158_000 / 0.8
    lp = {"valid": True, "capacity": 400_000.0, "per_cpu": 404_000.0}
    result = Result("fanout", {}, {}, FIGURES, {"livepilot": lp, "raw": out})
    assert result.value("raw", "capacity") is None
    assert result.ratio("per_cpu", "raw") == 404_000 / (158_000 / 0.8)
    verdicts = {(v["figure"], v["target"]): v["met"] for v in result.verdicts()}
    assert verdicts[("capacity", "≥ 0.8x raw")] is None
    assert verdicts[("per_cpu", "≥ 0.8x raw")] is True


def test_no_per_cpu_figure_without_a_sustained_step() -> None:
    """Nothing sustained: no figure to compare on."""
    out = summarize(
        [_step(100_000, 50_000, 99.0, sustained=False)], argparse.Namespace(max_steps=20)
    )
    assert out["valid"] is False
    assert out["per_cpu"] is None
