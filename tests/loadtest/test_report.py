"""The result table's ratios and verdicts (loadtest/report.py, loadtest/markdown.py)."""

from __future__ import annotations

import json
from typing import Any

from loadtest.markdown import table
from loadtest.report import Figure, Result, Target, ratio_columns, same_load

P99 = Figure("ack_p99_ms", "ack p99", "ms", (Target("<=", 2.0, "raw", same_load=True),))
RATE = Figure("rate", "rate", "/s", (Target(">=", 0.8, "raw"),))


def _run(ms: float, rate: float = 100.0, *, valid: bool = True) -> dict[str, Any]:
    return {"valid": valid, "ack_p99_ms": ms, "rate": rate}


def _result(**systems: dict[str, Any]) -> Result:
    named = {k.replace("_at_", "@"): v for k, v in systems.items()}
    return Result("relay", {}, {"commit": "abc"}, [P99, RATE], named)


def test_ratio_columns_add_each_same_load_run_after_livepilots_own() -> None:
    """livepilot ÷ each baseline first, then livepilot@baseline ÷ that baseline."""
    names = ["livepilot", same_load("raw"), "raw", "sio"]
    assert ratio_columns(names) == [
        ("livepilot", "raw"),
        ("livepilot", "sio"),
        ("livepilot@raw", "raw"),
    ]
    assert ratio_columns(["raw", "sio"]) == []


def test_a_same_load_target_is_checked_on_the_same_load_run() -> None:
    """ack p99 ≤ 2x raw: 30 ms at twice the traffic is not the figure; 6 ms at raw's is."""
    result = _result(livepilot=_run(30.0), livepilot_at_raw=_run(6.0), raw=_run(10.0))
    p99 = result.verdicts()[0]
    assert p99["subject"] == "livepilot@raw"
    assert p99["ratio"] == 0.6
    assert p99["met"] is True
    assert result.ratio("ack_p99_ms", "raw") == 3.0  # livepilot's own run, still reported


def test_at_one_feed_rate_for_all_livepilots_own_run_decides() -> None:
    """Every system at one --feed-rate: livepilot's own run is the same-load run."""
    result = _result(livepilot=_run(30.0), raw=_run(10.0))
    result.params["feed_rate"] = 4000.0
    p99 = result.verdicts()[0]
    assert (p99["subject"], p99["ratio"], p99["met"]) == ("livepilot", 3.0, False)


def test_without_a_same_load_run_the_target_gets_no_verdict() -> None:
    """Each at its own capacity and no livepilot@raw: the loads differ, no verdict,
    and the table says why."""
    result = _result(livepilot=_run(3.0), raw=_run(10.0))
    p99 = result.verdicts()[0]
    assert (p99["subject"], p99["ratio"], p99["met"]) == (None, None, None)
    text = table(json.loads(json.dumps(result.to_json())))
    assert "≤ 2x raw (no run at the same load) (no valid value)" in text
    assert "same_load_ratios" not in result.to_json()


def test_an_invalid_same_load_run_gives_no_verdict() -> None:
    """An invalid livepilot@raw is not replaced by livepilot's own run: no ratio."""
    result = _result(livepilot=_run(3.0), livepilot_at_raw=_run(3.0, valid=False), raw=_run(10.0))
    p99 = result.verdicts()[0]
    assert (p99["subject"], p99["ratio"], p99["met"]) == ("livepilot@raw", None, None)


def test_other_targets_keep_livepilots_own_run() -> None:
    """A target without same_load ignores livepilot@raw."""
    result = _result(
        livepilot=_run(1.0, 90.0), livepilot_at_raw=_run(1.0, 10.0), raw=_run(1.0, 100.0)
    )
    rate = result.verdicts()[1]
    assert (rate["subject"], rate["ratio"], rate["met"]) == ("livepilot", 0.9, True)


def test_json_and_markdown_carry_the_same_load_ratio() -> None:
    """The JSON keys livepilot@raw's ratio by its name; the Markdown table shows it and
    names the run the verdict was checked on."""
    result = _result(livepilot=_run(30.0), livepilot_at_raw=_run(5.0), raw=_run(10.0))
    data = json.loads(json.dumps(result.to_json()))
    assert data["ratios"]["ack_p99_ms"] == {"raw": 3.0}
    assert data["same_load_ratios"]["ack_p99_ms"] == {"raw": 0.5}
    text = table(data)
    head = "| figure | livepilot | livepilot@raw | raw | livepilot ÷ raw | livepilot@raw ÷ raw |"
    assert head in text
    assert "| ack p99 (ms) | 30.0 | 5 | 10.0 | 3 | 0.5 | ≤ 2x raw (livepilot@raw) **met** |" in text


def test_markdown_reads_results_written_before_same_load_runs() -> None:
    """An older JSON (no subject in its verdicts) still renders as before."""
    result = _result(livepilot=_run(30.0), raw=_run(10.0))
    result.params["feed_rate"] = 4000.0
    data = json.loads(json.dumps(result.to_json()))
    for v in data["targets"]:
        del v["subject"]
    assert "| ack p99 (ms) | 30.0 | 10.0 | 3 | ≤ 2x raw **missed** |" in table(data)


def test_a_figure_measured_before_the_run_went_invalid_still_counts() -> None:
    """valid_figures: that figure keeps its ratio and is not marked invalid; the
    run's other figures are."""
    raw = {"valid": False, "valid_figures": ["rate"], "ack_p99_ms": 1.0, "rate": 50.0}
    result = _result(livepilot=_run(2.0, 100.0), raw=raw)
    result.params["feed_rate"] = 1.0
    assert result.ratio("rate", "raw") == 2.0
    assert result.ratio("ack_p99_ms", "raw") is None
    text = table(json.loads(json.dumps(result.to_json())))
    assert "| rate (/s) | 100 | 50.0 | 2 | ≥ 0.8x raw **met** |" in text
    assert "| ack p99 (ms) | 2 | 1 (invalid) | - |" in text
