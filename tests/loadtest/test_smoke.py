"""Every load-test scenario at a tiny size, against every system, so the harness
cannot rot: each must produce sane numbers, not merely run.

Loopback only, a few seconds per scenario, bounded (each run stops by itself).
Needs the ``loadtest`` extra (picows, uvloop, python-socketio, hdrhistogram,
rich, matplotlib, psutil), which the ``test`` extra includes: never skipped, so
the README's test command runs it (a missing module fails the collection).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from loadtest.cli import build_parser, run_scenario
from loadtest.scenarios import SCENARIOS

SYSTEMS = ("livepilot", "raw", "sio")
TINY: dict[str, list[str]] = {
    "fanout": [
        "--rooms",
        "1",
        "--consoles",
        "3",
        "--start",
        "150",
        "--factor",
        "2",
        "--max-steps",
        "2",
        "--step",
        "0.6",
        "--warmup",
        "0.2",
        "--max-p99-ms",
        "5000",
    ],
    "relay": [
        "--rooms",
        "1",
        "--consoles",
        "3",
        "--feed-rate",
        "150",
        "--command-rate",
        "30",
        "--duration",
        "1",
    ],
    "idle": ["--connections", "30", "--per-room", "10", "--hold", "0.3"],
    "durable": ["--rooms", "2", "--consoles", "2", "--duration", "1", "--warmup", "0.3"],
    "revoke": ["--consoles", "6", "--rooms", "2", "--rounds", "2", "--timeout", "5"],
}


def _options(scenario: str, tmp_path: Path) -> argparse.Namespace:
    argv = [scenario, *TINY[scenario], "--results", str(tmp_path), "--no-pin", "--quiet"]
    return build_parser().parse_args(argv)


def _check_files(tmp_path: Path, scenario: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / f"{scenario}.json").read_text())
    assert (tmp_path / f"{scenario}.png").stat().st_size > 1000
    assert data["scenario"] == scenario
    assert set(data["systems"]) == set(SYSTEMS)
    assert data["machine"]["nproc"] >= 1
    for name, figures in data["systems"].items():  # a system that failed says which error
        assert "error" not in str(figures.get("invalid_reason", "")).lower(), (name, figures)
    assert set(data["ratios"]) == {f["key"] for f in data["figures"]}
    return data


def _latency(summary: dict[str, Any]) -> None:
    assert summary["count"] > 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"] < 60_000
    assert summary["hdr"]


@pytest.mark.parametrize("scenario", list(TINY))
async def test_scenario_produces_sane_numbers(scenario: str, tmp_path: Path) -> None:
    assert set(TINY) == set(SCENARIOS)
    opts = _options(scenario, tmp_path)
    await run_scenario(SCENARIOS[scenario], opts, Console(quiet=True))
    data = _check_files(tmp_path, scenario)
    for name, s in data["systems"].items():
        if scenario == "fanout":
            assert s["steps"], name
            first = s["steps"][0]
            assert first["delivered"] > 0.5 * first["target"], (name, first)
            _latency(first["latency"])
            assert s["capacity"] is not None, (name, s)
            assert s["capacity"] > 0, (name, s)
            assert first["server_cpu"] >= 0, (name, first)  # 10 ms ticks: may read 0
        elif scenario == "relay":
            assert s["feed_rate"] > 0, (name, s)
            assert s["commands_sent"] > 0, (name, s)
            _latency(s["ack"])
            _latency(s["deliver"])
            assert s["dropped"] == 0, (name, s)
        elif scenario == "idle":
            assert s["connections"] == 30, (name, s)
            assert s["dropped"] == 0, (name, s)
            assert s["rss_after_mib"] > 5, (name, s)
            assert s["connect_per_s"] > 0, (name, s)
        elif scenario == "durable":
            assert s["rate"] > 0, (name, s)
            _latency(s["ack"])
        elif scenario == "revoke":
            assert s["closed"] == s["expected"] == 12, (name, s)
            _latency(s["latency"])
    if scenario != "idle":  # memory per connection is not a ratio worth asserting at 30
        fig = data["figures"][0]["key"]
        ratios = data["ratios"][fig]
        assert set(ratios) == {"raw", "sio"}


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_hubbench_measures_commands(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m loadtest.hubbench`` runs at a tiny size and reports sane numbers."""
    from loadtest import hubbench

    argv = ["--rooms", "2", "--consoles", "1", "--seconds", "0.5", "--warmup", "0.2"]
    assert hubbench.main([*argv, "--memory"] if store == "memory" else argv) == 0
    out = capsys.readouterr().out
    rate = float(out.split(" commands/s")[0].replace(",", ""))
    assert rate > 0
    assert ("SQLite writer thread" in out) == (store == "sqlite")
