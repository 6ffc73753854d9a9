"""The systems under test: livepilot and the two baselines."""

from __future__ import annotations

from collections.abc import Callable

from loadtest.systems.base import System
from loadtest.systems.baselines import RawSystem, SioSystem
from loadtest.systems.livepilot import LivepilotSystem

__all__ = ["DEFAULT_SYSTEMS", "SYSTEMS", "LivepilotSystem", "RawSystem", "SioSystem", "System"]


def _livepilot_memory() -> System:
    system = LivepilotSystem(data="memory")
    system.name = "livepilot-mem"
    return system


SYSTEMS: dict[str, Callable[[], System]] = {
    "livepilot": LivepilotSystem,
    "raw": RawSystem,
    "sio": SioSystem,
    "livepilot-mem": _livepilot_memory,
}
"""Every system by name: livepilot, the baselines it is compared with, and livepilot
on its in-memory store (``:memory:``, no fsync: for diagnosis, not a baseline)."""
DEFAULT_SYSTEMS = ("livepilot", "raw", "sio")
