"""livepilot's second relay run at raw's load (loadtest/scenarios/relay.py)."""

from __future__ import annotations

from typing import Any

from loadtest.report import Result
from loadtest.scenarios.relay import FIGURES, at_baseline_load


def _result(raw_valid: bool = True) -> Result:
    systems: dict[str, dict[str, Any]] = {
        "livepilot": {"valid": True, "feed_target": 200_000.0},
        "raw": {"valid": raw_valid, "feed_target": 80_000.0},
        "sio": {"valid": True, "feed_target": 28_000.0},
    }
    return Result("relay", {}, {}, FIGURES, systems)


async def test_livepilot_runs_again_at_raws_feed_rate_next_to_its_own_run() -> None:
    """The second run gets raw's feed rate and sits right after livepilot's column."""
    rates: list[float] = []

    async def measure(rate: float) -> dict[str, Any]:
        rates.append(rate)
        return {"valid": True, "feed_target": rate}

    result = _result()
    await at_baseline_load(result, "raw", measure)
    assert rates == [80_000.0]
    assert list(result.systems) == ["livepilot", "livepilot@raw", "raw", "sio"]
    assert "80,000/s" in result.systems["livepilot@raw"]["note"]


async def test_no_second_run_when_raws_run_is_invalid() -> None:
    """An invalid raw run's feed rate is not a load raw sustained: no comparison."""
    async def measure(rate: float) -> dict[str, Any]:
        raise AssertionError("must not run")

    result = _result(raw_valid=False)
    await at_baseline_load(result, "raw", measure)
    assert "livepilot@raw" not in result.systems


async def test_a_failing_second_run_is_recorded_as_invalid() -> None:
    """A second run that raises is an invalid column saying why, not a lost result."""
    async def measure(rate: float) -> dict[str, Any]:
        raise RuntimeError("server exited")

    result = _result()
    await at_baseline_load(result, "raw", measure)
    second = result.systems["livepilot@raw"]
    assert second["valid"] is False
    assert "server exited" in second["invalid_reason"]
