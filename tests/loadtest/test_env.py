"""loadtest.env: what a run records about the machine."""

from __future__ import annotations

from loadtest.env import cpu_steal, steal_percent


def test_steal_percent_is_the_stolen_share_of_cpu_time_between_readings() -> None:
    """Steal between two readings, as a share of all CPU time in between."""
    assert steal_percent((10.0, 1000.0), (35.0, 1100.0)) == 25.0
    assert steal_percent((10.0, 1000.0), (10.0, 1100.0)) == 0.0
    assert steal_percent((10.0, 1000.0), (10.0, 1000.0)) == 0.0  # no time passed


def test_cpu_steal_reads_a_running_total() -> None:
    """The machine's steal and total CPU seconds only grow."""
    first = cpu_steal()
    second = cpu_steal()
    assert 0.0 <= first[0] <= first[1]
    assert second[0] >= first[0]
    assert second[1] >= first[1]
