"""The garbage-collector tuning of the server process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import server.gctune
from server.cli import main
from server.gctune import MIDDLE_THRESHOLD, YOUNG_THRESHOLD

_PROBE = """
import gc, json
from server.gctune import tune_gc
before = gc.get_threshold()
tune_gc()
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def test_tune_gc_freezes_startup_and_raises_the_young_threshold() -> None:
    """tune_gc freezes what exists and collects the young generation less often."""
    # A process of its own: the tuning is process-wide.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    probe = json.loads(out)
    assert probe["before"][0] < YOUNG_THRESHOLD
    assert probe["after"] == [YOUNG_THRESHOLD, MIDDLE_THRESHOLD, probe["before"][2]]
    assert probe["frozen"] > 1000  # the modules, classes and functions start-up made


def test_serve_tunes_the_collector_after_building_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`livepilot serve` builds the app, then tunes the collector, then serves."""
    calls: list[str] = []

    class FakeServer:
        def run(self, sockets: object = None) -> None:
            calls.append("run")

    def fake_build(settings: object) -> FakeServer:
        calls.append("build")
        return FakeServer()

    monkeypatch.setattr("server.serve.build_server", fake_build)
    monkeypatch.setattr(server.gctune, "tune_gc", lambda: calls.append("tune"))
    monkeypatch.setattr("server.logs.setup_logging", lambda level: None)  # process-wide too
    monkeypatch.delenv("LIVEPILOT_REDIS_URL", raising=False)
    assert main(["serve", "--dev", "--port", "0", "--data-path", ":memory:"]) == 0
    assert calls == ["build", "tune", "run"]
