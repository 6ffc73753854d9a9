"""Results: the table (livepilot ÷ each baseline for every figure), JSON and a PNG plot.

A scenario returns a :class:`Result`: its parameters, the machine, one dict of
figures per system, and the :class:`Figure` rows to show. A system whose run was
invalid (its load generator saturated, or it failed) keeps its numbers in the
JSON, but the table shows them as invalid and computes no ratio from them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = [
    "Figure",
    "Result",
    "Target",
    "number",
    "on_subject",
    "ratio_columns",
    "same_load",
    "save",
    "show",
    "valid",
]

BASELINES = ("raw", "sio")


def same_load(baseline: str) -> str:
    """The name of livepilot's run at ``baseline``'s load (e.g. ``livepilot@raw``)."""
    return f"livepilot@{baseline}"


def ratio_columns(systems: Sequence[str]) -> list[tuple[str, str]]:
    """The (subject, baseline) pairs a table shows as ratios: livepilot ÷ each
    baseline, then each same-load run of livepilot ÷ its baseline."""
    if "livepilot" not in systems:
        return []
    pairs = [("livepilot", b) for b in BASELINES if b in systems]
    return pairs + [
        (same_load(b), b) for b in BASELINES if b in systems and same_load(b) in systems
    ]


@dataclass(frozen=True, slots=True)
class Target:
    """A goal: ``op value`` absolute, or ``op value x`` a baseline (``against``).

    ``same_load``: the ratio is taken from livepilot's run at the baseline's own
    load (:func:`same_load`): a latency ratio means something only between two
    systems carrying the same traffic. Without such a run, livepilot's own run
    counts only if every system ran at one feed rate (``params["feed_rate"]``);
    otherwise the target gets no verdict.
    """

    op: str
    value: float
    against: str | None = None
    same_load: bool = False

    def describe(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        if self.against is not None:
            return f"{sign} {self.value:g}x {self.against}"
        return f"{sign} {self.value:,.0f} {unit}".rstrip()

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        x = ratio if self.against is not None else value
        if x is None:
            return None
        return x >= self.value if self.op == ">=" else x <= self.value


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the table: ``key`` in each system's figures."""

    key: str
    label: str
    unit: str = ""
    targets: tuple[Target, ...] = ()


@dataclass
class Result:
    scenario: str
    params: dict[str, Any]
    machine: dict[str, Any]
    figures: Sequence[Figure]
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    plot: Callable[[Result, Any], None] | None = None

    def value(self, system: str, key: str) -> float | None:
        """A figure of a system, None when missing or invalid (see :func:`valid`)."""
        data = self.systems.get(system)
        if data is None or not valid(data, key):
            return None
        return number(data.get(key))

    def ratio(self, key: str, baseline: str, subject: str = "livepilot") -> float | None:
        """``subject``'s figure ÷ ``baseline``'s, None unless both are valid."""
        lp, base = self.value(subject, key), self.value(baseline, key)
        if lp is None or base is None or base == 0:
            return None
        return lp / base

    def subject(self, target: Target) -> str | None:
        """The livepilot run a target is checked on (see :attr:`Target.same_load`);
        None: this result has none it can be checked on."""
        if not (target.same_load and target.against is not None):
            return "livepilot"
        name = same_load(target.against)
        if name in self.systems:
            return name
        return "livepilot" if self.params.get("feed_rate") is not None else None

    def verdict(self, fig: Figure, target: Target) -> dict[str, Any]:
        """Whether this run met ``target``, and on which run of livepilot (``subject``)."""
        subject = self.subject(target)
        lp = ratio = None
        if subject is not None:
            lp = self.value(subject, fig.key)
            ratio = self.ratio(fig.key, target.against, subject) if target.against else None
        return {
            "figure": fig.key,
            "target": target.describe(fig.unit),
            "subject": subject,
            "value": lp,
            "ratio": ratio,
            "met": target.met(lp, ratio),
        }

    def verdicts(self) -> list[dict[str, Any]]:
        return [self.verdict(fig, t) for fig in self.figures for t in fig.targets]

    def to_json(self) -> dict[str, Any]:
        pairs = ratio_columns(list(self.systems))
        ratios = {
            f.key: {b: self.ratio(f.key, b) for who, b in pairs if who == "livepilot"}
            for f in self.figures
        }
        # livepilot@<baseline> ÷ <baseline>, keyed by the baseline, apart from the above.
        same = {
            f.key: {b: self.ratio(f.key, b, who) for who, b in pairs if who != "livepilot"}
            for f in self.figures
        }
        return {
            "scenario": self.scenario,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "params": self.params,
            "machine": self.machine,
            "figures": [{"key": f.key, "label": f.label, "unit": f.unit} for f in self.figures],
            "systems": self.systems,
            "ratios": ratios,
            **({"same_load_ratios": same} if any(same.values()) else {}),
            "targets": self.verdicts(),
        }


def valid(data: dict[str, Any], key: str) -> bool:
    """Whether a system's figure ``key`` counts: its run is valid, or the figure is
    one the run lists as measured before what made it invalid (``valid_figures``)."""
    return bool(data.get("valid", False)) or key in data.get("valid_figures", ())


def number(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or math.isnan(x):
        return None
    return float(x)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def show(result: Result, console: Console | None = None) -> None:
    """Print the table: each figure per system, then livepilot ÷ each baseline."""
    console = console or Console()
    names = list(result.systems)
    pairs = ratio_columns(names)
    table = Table(title=f"{result.scenario}  (load avg {result.machine.get('loadavg')})")
    table.add_column("figure")
    for name in names:
        table.add_column(name, justify="right")
    for who, b in pairs:
        table.add_column(f"{who} ÷ {b}", justify="right")
    table.add_column("target")
    for fig in result.figures:
        row = [f"{fig.label} ({fig.unit})" if fig.unit else fig.label]
        for name in names:
            data = result.systems[name]
            cell = _fmt(number(data.get(fig.key)))
            row.append(cell if valid(data, fig.key) else f"{cell} [red]invalid[/]")
        row += [_fmt(result.ratio(fig.key, b, who)) for who, b in pairs]
        goals = []
        for t in fig.targets:
            v = result.verdict(fig, t)
            met = v["met"]
            mark = "" if met is None else (" [green]met[/]" if met else " [red]missed[/]")
            goals.append(t.describe(fig.unit) + on_subject(v["subject"]) + mark)
        row.append(", ".join(goals))
        table.add_row(*row)
    console.print(table)
    for name in names:
        data = result.systems[name]
        if data.get("invalid_reason"):
            console.print(f"[red]{name}: invalid[/] - {data['invalid_reason']}")
        if data.get("contended"):
            console.print(
                f"[yellow]{name}: contended[/] - other processes used a pinned core "
                "during the measurement: noisy numbers"
            )
        if data.get("note"):
            console.print(f"{name}: {data['note']}")


def on_subject(subject: str | None) -> str:
    """How a verdict names the run it was checked on, when not livepilot's own."""
    if subject is None:
        return " (no run at the same load)"
    return "" if subject == "livepilot" else f" ({subject})"


def save(result: Result, folder: Path) -> tuple[Path, Path | None]:
    """Write ``<scenario>.json`` and ``<scenario>.png`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{result.scenario}.json"
    json_path.write_text(json.dumps(result.to_json(), indent=1, default=str) + "\n")
    if result.plot is None:
        return json_path, None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7, 4.2), dpi=90)
    try:
        result.plot(result, fig)
        fig.suptitle(f"livepilot loadtest: {result.scenario}", fontsize=11)
        fig.tight_layout()
        png = folder / f"{result.scenario}.png"
        fig.savefig(png)
    finally:
        plt.close(fig)
    return json_path, png


COLORS = {
    "livepilot": "tab:blue",
    "raw": "tab:gray",
    "sio": "tab:orange",
    same_load("raw"): "tab:cyan",
    same_load("sio"): "tab:purple",
}


def latency_curves(result: Result, fig: Any, key: str, title: str) -> None:
    """Latency by percentile (HDR style) of summary ``key`` for each system."""
    ax = fig.add_subplot(1, 1, 1)
    for name, data in result.systems.items():
        summary = data.get(key) or {}
        curve = summary.get("curve") if isinstance(summary, dict) else None
        if not curve:
            continue
        xs = [1 / max(1 - p / 100, 1e-5) for p, _ in curve]
        ax.plot(
            xs,
            [v for _, v in curve],
            marker="o",
            ms=3,
            label=name,
            color=COLORS.get(name),
            linestyle="-" if data.get("valid") else ":",
        )
    ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["p0", "p50", "p90", "p99", "p99.9", "p99.99"])
    ax.set_ylabel("latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
