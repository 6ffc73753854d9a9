"""``idle``: N idle connections (10,000 by default); the server's RSS per connection.

Connections are authenticated and joined, in rooms of ``--per-room`` (one
creator client and the rest consoles), then send nothing. The server's RSS is
read after access is set up and before the first connection, and again after
``--hold`` seconds with every connection open; the difference over N is the
memory one idle connection costs.

Then the reconnect storm: every connection is dropped at once (as after a node
failure, seen from its clients) and all reconnect at once (``--storm-limit``
handshakes in flight): the time until every one has said hello and joined again.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from loadtest.env import CpuMeter
from loadtest.report import COLORS, Figure, Result, Target
from loadtest.scenarios.common import (
    AGENCY,
    Context,
    close_rooms,
    closed_count,
    livepilot_sizes,
    make_system,
    measure_each,
    open_rooms,
    room_names,
    scenario_params,
)
from loadtest.systems.base import Sizes

__all__ = ["FIGURES", "add_arguments", "run"]

FIGURES = (
    Figure("kib_per_conn", "server RSS per connection", "KiB", (Target("<=", 20),)),
    Figure("rss_before_mib", "server RSS before", "MiB"),
    Figure("rss_after_mib", "server RSS with all open", "MiB"),
    Figure("connect_per_s", "connections opened/s", "/s"),
    Figure("storm_seconds", "reconnect storm: all back after a drop", "s"),
    Figure("storm_per_s", "reconnect storm: connections resumed/s", "/s"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=10_000, help="idle connections (10,000)")
    p.add_argument(
        "--per-room",
        type=int,
        default=20,
        help="connections per room, the creator client included (20)",
    )
    p.add_argument("--hold", type=float, default=5.0, help="seconds idle before measuring (5)")
    p.add_argument(
        "--storm-limit",
        type=int,
        default=1000,
        help="handshakes in flight at once in the reconnect storm (1,000)",
    )


async def measure(
    ctx: Context, name: str, opts: argparse.Namespace, sizes: Sizes
) -> dict[str, Any]:
    system = make_system(name, 150)
    n_rooms = max(1, opts.connections // opts.per_room)
    per_room = max(0, opts.per_room - 1)
    total = n_rooms * (per_room + 1)
    task = ctx.progress.add_task(f"idle {name}: connecting", total=total)
    async with ctx.launch(system, "idle") as run:
        names = room_names(n_rooms)
        await system.prepare(run, names, AGENCY)
        meter = CpuMeter(run.pid, ctx.pin)
        await asyncio.sleep(1.0)
        before = meter.rss()
        started = time.monotonic()
        rooms = await open_rooms(
            system,
            run,
            names,
            per_room,
            sizes,
            limit=100,
            progress=lambda n: ctx.progress.advance(task, n),
        )
        took = time.monotonic() - started
        ctx.progress.update(task, description=f"idle {name}: holding {opts.hold:g} s")
        await asyncio.sleep(opts.hold)
        after = meter.rss()
        dropped = closed_count(rooms)
        ctx.progress.update(task, description=f"idle {name}: reconnect storm", completed=0)
        await close_rooms(rooms)  # every client at once
        started = time.monotonic()
        rooms = await open_rooms(
            system,
            run,
            names,
            per_room,
            sizes,
            limit=opts.storm_limit,
            progress=lambda n: ctx.progress.advance(task, n),
        )
        storm = time.monotonic() - started
        dropped += closed_count(rooms)
        await close_rooms(rooms)
        ctx.progress.update(task, visible=False)
    out: dict[str, Any] = {
        "connections": total,
        "rooms": n_rooms,
        "dropped": dropped,
        "kib_per_conn": (after - before) / total / 1024,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "connect_per_s": total / took,
        "connect_seconds": took,
        "storm_seconds": storm,
        "storm_per_s": total / storm,
        "valid": dropped == 0,
    }
    if dropped:
        out["invalid_reason"] = f"{dropped} of {total} connections closed while idle"
    return out


def plot(result: Result, fig: Any) -> None:
    ax = fig.add_subplot(1, 1, 1)
    names = list(result.systems)
    values = [result.systems[n].get("kib_per_conn") or 0 for n in names]
    ax.bar(names, values, color=[COLORS.get(n, "tab:green") for n in names])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(20, color="red", lw=1, ls="--", label="target 20 KiB")
    ax.set_ylabel("server RSS per idle connection (KiB)")
    ax.set_title(
        f"{result.params['connections']:,} idle connections, {result.params['per_room']} per room",
        fontsize=9,
    )
    ax.legend()


async def run(ctx: Context, opts: argparse.Namespace) -> Result:
    sizes, _ = livepilot_sizes(150)
    params = scenario_params(opts)
    result = Result("idle", params, {}, FIGURES, plot=plot)
    return await measure_each(ctx, result, lambda system: measure(ctx, system, opts, sizes))
