"""livepilot's second relay run at raw's load (loadtest/scenarios/relay.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from loadtest.cli import build_parser
from loadtest.report import Result
from loadtest.scenarios import relay
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


@pytest.mark.parametrize("missing", ["livepilot", "raw"])
async def test_no_second_run_without_both_systems(missing: str) -> None:
    """--systems without livepilot or without raw: nothing to compare, no second run."""

    async def measure(rate: float) -> dict[str, Any]:
        raise AssertionError("must not run")

    result = _result()
    del result.systems[missing]
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


class _Fake:
    """relay's capacity ramp and measured run, without servers: each system's
    capacity is fixed; a run records (system, feed rate, label) and gives a p99."""

    CAPACITY = {"livepilot": 400_000.0, "raw": 160_000.0, "sio": 60_000.0}

    def __init__(self) -> None:
        self.runs: list[tuple[str, float, str]] = []

    async def capacity(
        self, ctx: object, name: str, opts: object, sizes: object
    ) -> tuple[float, bool]:
        return self.CAPACITY[name], False

    async def measure(
        self,
        ctx: object,
        name: str,
        opts: object,
        sizes: object,
        feed_rate: float,
        *,
        label: str = "relay",
    ) -> dict[str, Any]:
        self.runs.append((name, feed_rate, label))
        p99 = {"livepilot": 30.0 if feed_rate > 100_000 else 5.0, "raw": 10.0, "sio": 40.0}
        return {"valid": True, "feed_target": feed_rate, "ack_p99_ms": p99[name]}


async def _run_relay(monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[Result, _Fake]:
    fake = _Fake()
    monkeypatch.setattr(relay, "capacity", fake.capacity)
    monkeypatch.setattr(relay, "measure", fake.measure)
    opts = build_parser().parse_args(["relay", *argv])
    ctx = SimpleNamespace(systems=["livepilot", "raw", "sio"])
    return await relay.run(ctx, opts), fake  # type: ignore[arg-type]


async def test_by_default_the_target_is_checked_at_raws_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each system at half its capacity, then livepilot at raw's feed, in its own work
    folder; ack p99 ≤ 2x raw is checked on that run (5 vs 10 ms), not on 30 vs 10 ms."""
    result, fake = await _run_relay(monkeypatch)
    assert fake.runs == [
        ("livepilot", 200_000.0, "relay"),
        ("raw", 80_000.0, "relay"),
        ("sio", 30_000.0, "relay"),
        ("livepilot", 80_000.0, "relay-same-load"),
    ]
    (p99,) = result.verdicts()
    assert (p99["subject"], p99["ratio"], p99["met"]) == ("livepilot@raw", 0.5, True)
    assert result.ratio("ack_p99_ms", "raw") == 3.0


async def test_with_one_feed_rate_for_all_there_is_no_second_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--feed-rate: every system at that rate, livepilot once, its run decides."""
    result, fake = await _run_relay(monkeypatch, "--feed-rate", "150000")
    assert [(name, rate) for name, rate, _ in fake.runs] == [
        ("livepilot", 150_000.0),
        ("raw", 150_000.0),
        ("sio", 150_000.0),
    ]
    (p99,) = result.verdicts()
    assert (p99["subject"], p99["ratio"], p99["met"]) == ("livepilot", 3.0, False)


async def test_without_the_second_run_there_is_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """--no-same-load: the loads differ, so the target is not judged on them."""
    result, fake = await _run_relay(monkeypatch, "--no-same-load")
    assert len(fake.runs) == 3
    (p99,) = result.verdicts()
    assert (p99["subject"], p99["met"]) == (None, None)
