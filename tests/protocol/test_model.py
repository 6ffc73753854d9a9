"""Value types of the protocol."""

from __future__ import annotations

from protocol.model import LiveSummary


def test_conversion_is_orders_per_peak_viewer() -> None:
    """The dashboard's conversion is orders / peak viewers."""
    summary = LiveSummary(live_id="l1", started_at=0, orders=3, peak_viewers=12)
    assert summary.conversion == 0.25


def test_conversion_without_viewers_is_zero() -> None:
    """A LIVE nobody watched converts at 0, not a division by zero."""
    assert LiveSummary(live_id="l1", started_at=0, orders=0).conversion == 0.0
