"""The runtime: storage, access and hub, wired from the settings."""

from __future__ import annotations

from pathlib import Path

from server.config import load_settings
from server.runtime import open_runtime


async def test_the_hub_gets_its_room_settings(tmp_path: Path) -> None:
    """Snapshot interval, history retention and the idle time of rooms reach the hub."""
    settings = load_settings(
        {},
        data_path=str(tmp_path / "db.sqlite"),
        snapshot_interval=7,
        history_retention=11,
        room_idle_s=2.5,
    )
    async with open_runtime(settings) as runtime:
        hub = runtime.hub
        assert (hub.snapshot_interval, hub.history_retention, hub.room_idle_ms) == (7, 11, 2500)
