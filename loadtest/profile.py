"""Where a server spends its time during a run: py-spy attached to the server process.

With ``--profile``, py-spy samples the livepilot server (``--nonblocking``: the
server is never paused) for as long as the server runs, writing collapsed
stacks to ``<results>/profile-<scenario>-<system>.txt`` (``LOADTEST_PYSPY_GIL=1``: only
the thread holding the GIL, i.e. Python CPU time, no waits). :func:`summarize` turns
them into the functions with the most samples, inclusive and self, in % of all
samples (idle time in the event loop's ``select`` included, so the % of busy
time is ``100 - idle``).

    python -m loadtest.profile results/profile-fanout-livepilot.txt
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Final

__all__ = ["attach", "summarize"]

RATE_HZ: Final = 199
GIL_ENV: Final = "LOADTEST_PYSPY_GIL"
"""Set it to sample only the thread holding the GIL (Python CPU; hides I/O waits such
as the store's fsync, and C code that releases the GIL)."""
IDLE_MARKERS: Final = ("select (selectors.py", "run_forever", "_run_once", "poll (")


def attach(pid: int, out: Path, core: int | None) -> subprocess.Popen[bytes] | None:
    """Start py-spy on ``pid`` (on ``core`` when given); None if py-spy is missing."""
    beside = Path(sys.executable).parent / "py-spy"  # in the virtualenv, maybe not on PATH
    exe = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if exe is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--nonblocking",
        "--rate",
        str(RATE_HZ),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    if os.environ.get(GIL_ENV):
        cmd.append("--gil")
    taskset = shutil.which("taskset")
    if core is not None and taskset is not None:
        cmd = [taskset, "-c", str(core), *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    return stack.split(";"), int(count)


def _name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:123)"; keep function and file.
    func, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{func} ({file})" if file else func


def summarize(path: Path, top: int = 25) -> dict[str, object]:
    """The ``top`` functions by inclusive and by self samples, in % of all samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        total += count
        names = [_name(f) for f in frames]
        if any(m in frames[-1] for m in IDLE_MARKERS):
            idle += count
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(n, round(100 * k / max(total, 1), 1)) for n, k in c.most_common(top)]

    return {
        "samples": total,
        "idle_pct": round(100 * idle / max(total, 1), 1),
        "inclusive": pct(inclusive),
        "self": pct(own),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarize a py-spy raw profile.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    s = summarize(args.path, args.top)
    print(f"{s['samples']} samples, idle {s['idle_pct']} %")
    for title in ("inclusive", "self"):
        print(f"\n{title}:")
        rows = s[title]
        assert isinstance(rows, list)
        for name, p in rows:
            print(f"  {p:5.1f} %  {name}")


if __name__ == "__main__":
    main()
