"""The machine side of a run: core pinning, CPU accounting of both sides, machine facts.

The server process is started under ``taskset -c 0`` and this process (the load
generator) pins itself to core 1, when ``taskset`` exists and there are at least
two cores. :class:`CpuMeter` reads both processes' CPU time around a measured
window; a window in which the load generator used more than
:data:`LOADGEN_SATURATED` of its core measured the load generator, not the
server, and is marked invalid.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import psutil

__all__ = [
    "LOADGEN_SATURATED",
    "CpuMeter",
    "CpuSample",
    "Pinning",
    "machine",
    "pinning",
]

LOADGEN_SATURATED: Final = 90.0
"""Load-generator CPU (% of one core) above which a measurement is invalid."""
CONTENDED: Final = 25.0
"""% of a pinned core used by other processes above which a window is "contended"."""


@dataclass(frozen=True, slots=True)
class Pinning:
    """Where the server and the load generator run."""

    server_prefix: tuple[str, ...]
    """Command prefix pinning a server process (empty: not pinned)."""
    server_core: int | None
    loadgen_core: int | None


@contextlib.contextmanager
def pinning(enabled: bool = True) -> Iterator[Pinning]:
    """Pin this process to core 1 and have servers started on core 0, then restore."""
    taskset = shutil.which("taskset")
    ncores = os.cpu_count() or 1
    if not enabled or taskset is None or ncores < 2 or not hasattr(os, "sched_setaffinity"):
        yield Pinning((), None, None)
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        yield Pinning((taskset, "-c", "0"), 0, 1)
    finally:
        os.sched_setaffinity(0, before)


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU use over one window, in % of one core."""

    server: float
    loadgen: float
    seconds: float
    server_core: float | None = None
    """How busy the server's core was, whoever used it (other processes too)."""
    loadgen_core: float | None = None
    """How busy the load generator's core was, whoever used it."""

    @property
    def valid(self) -> bool:
        """False when the load generator saturated its core."""
        return self.loadgen < LOADGEN_SATURATED

    @property
    def contended(self) -> bool:
        """Other processes kept a core of the run busy: the numbers are noisy."""
        return any(
            busy is not None and busy - own > CONTENDED
            for busy, own in ((self.server_core, self.server), (self.loadgen_core, self.loadgen))
        )

    def reason(self) -> str:
        """Why the window is invalid."""
        return f"the load generator saturated its core ({self.loadgen:.0f} % of it)"

    def as_dict(self) -> dict[str, float | bool | None]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 1)

        return {
            "server_cpu": r(self.server),
            "loadgen_cpu": r(self.loadgen),
            "server_core_busy": r(self.server_core),
            "loadgen_core_busy": r(self.loadgen_core),
            "seconds": round(self.seconds, 3),
            "valid": self.valid,
            "contended": self.contended,
        }


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


class CpuMeter:
    """CPU seconds of the server process and of this process between start and stop."""

    def __init__(self, server_pid: int | None, pin: Pinning | None = None) -> None:
        self._server = psutil.Process(server_pid) if server_pid is not None else None
        self._self = psutil.Process()
        self._pin = pin
        self._t0 = self._s0 = self._l0 = 0.0
        self._cores: list[tuple[float, float]] = []

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._s0 = _cpu(self._server)
        self._l0 = _cpu(self._self)
        self._cores = _core_times()

    def stop(self) -> CpuSample:
        wall = max(time.monotonic() - self._t0, 1e-9)
        server = (_cpu(self._server) - self._s0) / wall * 100
        loadgen = (_cpu(self._self) - self._l0) / wall * 100
        cores = _core_times()

        def busy(core: int | None) -> float | None:
            if core is None or core >= len(cores) or core >= len(self._cores):
                return None
            (b0, t0), (b1, t1) = self._cores[core], cores[core]
            return (b1 - b0) / max(t1 - t0, 1e-9) * 100

        pin = self._pin
        return CpuSample(
            server=server,
            loadgen=loadgen,
            seconds=wall,
            server_core=busy(pin.server_core if pin else None),
            loadgen_core=busy(pin.loadgen_core if pin else None),
        )

    def rss(self) -> int:
        """The server's resident set size in bytes."""
        return int(self._server.memory_info().rss) if self._server is not None else 0


def _core_times() -> list[tuple[float, float]]:
    """(busy, total) seconds of each core."""
    out = []
    for t in psutil.cpu_times(percpu=True):
        total = sum(t)
        idle = t.idle + getattr(t, "iowait", 0.0)
        out.append((total - idle, total))
    return out


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_steal() -> tuple[float, float]:
    """(steal, total) CPU seconds of the whole machine so far: steal is time the
    hypervisor gave other guests while this one had work (Linux; 0 elsewhere)."""
    t = psutil.cpu_times()
    return float(getattr(t, "steal", 0.0)), float(sum(t))


def steal_percent(before: tuple[float, float], after: tuple[float, float]) -> float:
    """% of the machine's CPU time stolen by the hypervisor between two readings."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total * 100, 1) if total > 0 else 0.0


def machine() -> dict[str, object]:
    """What the numbers were measured on, including how busy the machine was."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - in the extra
        loop = "asyncio"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg": [round(x, 2) for x in load],
        "event_loop": loop,
        **_source(),
    }


def _source() -> dict[str, object]:
    """The commit measured, and whether the server's code differed from it."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "server", "protocol"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "server_changes": [line[3:] for line in dirty if line.strip()]}
