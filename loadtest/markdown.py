"""Markdown tables from result JSON files, for ``docs/benchmarks.md``.

    python -m loadtest.markdown results/fanout.json results/relay.json ... [--replot]

Each file gives one table: every figure for every system, livepilot ÷ each
baseline, and the issue's target with whether this run met it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from loadtest.report import number, on_subject, ratio_columns, valid

__all__ = ["table"]


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def _ratios(data: dict[str, Any], who: str) -> dict[str, dict[str, Any]]:
    """The JSON's ratios of livepilot's own run, or of its same-load runs."""
    found = data["ratios"] if who == "livepilot" else data.get("same_load_ratios", {})
    assert isinstance(found, dict)
    return found


def table(data: dict[str, Any]) -> str:
    """One scenario's result as a Markdown table with a line of context."""
    systems: dict[str, dict[str, Any]] = data["systems"]
    names = list(systems)
    pairs = ratio_columns(names)
    head = ["figure", *names, *[f"{who} ÷ {b}" for who, b in pairs], "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts: dict[str, list[str]] = {}
    for v in data.get("targets", []):
        mark = {True: " **met**", False: " **missed**", None: " (no valid value)"}[v["met"]]
        on = on_subject(v.get("subject", "livepilot"))
        verdicts.setdefault(v["figure"], []).append(v["target"] + on + mark)
    for fig in data["figures"]:
        key = fig["key"]
        label = f"{fig['label']} ({fig['unit']})" if fig["unit"] else fig["label"]
        row = [label]
        for name in names:
            cell = _fmt(number(systems[name].get(key)))
            row.append(cell if valid(systems[name], key) else f"{cell} (invalid)")
        row += [_fmt(number(_ratios(data, who).get(key, {}).get(b))) for who, b in pairs]
        row.append(", ".join(verdicts.get(key, [])))
        lines.append("| " + " | ".join(row) + " |")
    notes = []
    for name in names:
        s = systems[name]
        if s.get("invalid_reason"):
            notes.append(f"*{name}: invalid - {s['invalid_reason']}.*")
        if s.get("contended"):
            notes.append(f"*{name}: other processes used a pinned core during the run.*")
        if s.get("note"):
            notes.append(f"*{name}: {s['note']}.*")
    m = data["machine"]
    context = (
        f"Run {data['at']}, commit {m.get('commit', '?')}"
        f"{' + uncommitted server changes' if m.get('server_changes') else ''}; "
        f"load average {m.get('loadavg')} before, {m.get('loadavg_after')} after"
        + (
            f"; the hypervisor took {m['steal_percent']} % of the CPU time (steal)"
            if m.get("steal_percent")
            else ""
        )
        + "."
    )
    return "\n".join([context, "", *lines, "", *notes]).rstrip() + "\n"


def replot(path: Path, data: dict[str, Any]) -> Path | None:
    """Draw the scenario's PNG again from its JSON (next to it)."""
    from loadtest.report import Figure, Result, save
    from loadtest.scenarios import SCENARIOS

    module = SCENARIOS[data["scenario"]]
    result = Result(
        data["scenario"],
        data["params"],
        data["machine"],
        [Figure(f["key"], f["label"], f["unit"]) for f in data["figures"]],
        data["systems"],
        plot=module.plot,
    )
    scratch = path.parent / ".replot"
    _, png = save(result, scratch)
    if png is None:
        return None
    target = path.with_suffix(".png")
    png.replace(target)
    (scratch / f"{data['scenario']}.json").unlink()
    scratch.rmdir()
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument(
        "--replot", action="store_true", help="also draw each file's PNG again, next to it"
    )
    args = parser.parse_args()
    for path in args.files:
        data = json.loads(path.read_text())
        if args.replot:
            replot(path, data)
        print(f"### {data['scenario']}\n")
        print(table(data))


if __name__ == "__main__":
    main()
