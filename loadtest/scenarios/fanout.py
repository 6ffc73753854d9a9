"""``fanout``: R rooms x S consoles; the creator feed at a rising rate until saturation.

Each step offers ``rate`` deliveries/s (feed items/s x consoles, spread over the
rooms), waits ``--warmup`` seconds, then measures ``--step`` seconds: deliveries/s
counted at the consoles, delivery latency (creator client send -> console), both
sides' CPU. A step is *sustained* when consoles get at least 90 % of what was
offered, p99 stays under ``--max-p99-ms`` and no connection was dropped; the
ramp stops at the first step that is not. The figure is the best sustained
deliveries/s. A ramp ended by the load generator saturating its core is invalid.

A second figure stays valid then: deliveries per second of the server's CPU at
the best sustained step (delivered ÷ the share of its core it used), what a
CPU-bound server would deliver on the whole core if a delivery costs no more at
higher load. On two cores raw `websockets` saturates the load generator before
its own core (one segment per frame), so this is the figure its fan-out can be
compared on.

Every system gets the same rooms, consoles, rates and frame sizes.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, Final

from loadtest.env import CpuMeter
from loadtest.report import Figure, Result, Target
from loadtest.scenarios.common import (
    AGENCY,
    Context,
    Counters,
    Pacer,
    close_rooms,
    closed_count,
    feed_pacer,
    livepilot_sizes,
    make_system,
    measure_each,
    open_rooms,
    room_names,
    scenario_params,
    window,
)
from loadtest.systems.base import Sizes

__all__ = ["FIGURES", "MAX_STEPS", "add_arguments", "ramp", "run"]

MAX_STEPS: Final = 20
"""Coarse ramp steps at most, here and in ``relay``'s capacity ramp (14 stopped at
159k/s, below livepilot's capacity on a quiet machine)."""

FIGURES = (
    Figure(
        "capacity",
        "sustained deliveries/s",
        "/s",
        (Target(">=", 0.8, "raw"), Target(">=", 3.0, "sio")),
    ),
    Figure(
        "per_cpu",
        "deliveries per server CPU-second, best sustained step",
        "/s",
        (Target(">=", 0.8, "raw"),),
    ),
    Figure("peak", "peak deliveries/s", "/s"),
    Figure("p99_ms", "delivery p99 at sustained rate", "ms"),
    Figure("server_cpu", "server CPU at sustained rate", "%"),
    Figure("loadgen_cpu", "load-generator CPU, busiest step", "%"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rooms", type=int, default=4, help="rooms (default 4)")
    p.add_argument("--consoles", type=int, default=25, help="consoles per room (default 25)")
    p.add_argument("--payload", type=int, default=150, help="feed item text bytes (150)")
    p.add_argument("--start", type=float, default=2000, help="first step, deliveries/s")
    p.add_argument("--factor", type=float, default=1.4, help="rate factor per step (1.4)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=MAX_STEPS,
        help=f"coarse steps at most ({MAX_STEPS}: 2,000 x 1.4^19 is 1.2 M/s)",
    )
    p.add_argument("--step", type=float, default=4.0, help="measured seconds per step (4)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per step")
    p.add_argument(
        "--max-p99-ms",
        type=float,
        default=200.0,
        help="a step with a higher delivery p99 is not sustained (200)",
    )
    p.add_argument(
        "--refine",
        type=float,
        default=1.1,
        help="after the first step not sustained, go back to the last one that"
        " was and climb by this factor instead (1.1; 0: no refinement)",
    )


async def ramp(
    ctx: Context, name: str, opts: argparse.Namespace, sizes: Sizes, *, scenario: str = "fanout"
) -> dict[str, Any]:
    """Run the rising-rate ramp against one system; its figures and steps."""
    system = make_system(name, opts.payload)
    consoles = opts.rooms * opts.consoles
    task = ctx.progress.add_task(f"{scenario} {name}: connecting", total=consoles)
    async with ctx.launch(system, scenario) as run:
        names = room_names(opts.rooms)
        await system.prepare(run, names, AGENCY)
        rooms = await open_rooms(
            system,
            run,
            names,
            opts.consoles,
            sizes,
            progress=lambda n: ctx.progress.advance(task, n),
        )
        counters = Counters()
        for room in rooms:
            room.creator.on_data = counters.creator_handler(system, room.creator)
            for peer in room.consoles:
                peer.on_data = counters.console_handler(system, peer)
        feed = feed_pacer(system, rooms, sizes)
        meter = CpuMeter(run.pid, ctx.pin)
        steps: list[dict[str, Any]] = []
        plan = Ramp(opts.start, opts.factor, opts.max_steps, opts.refine)
        rate: float | None = plan.rate
        ctx.progress.update(task, total=opts.max_steps, completed=0)
        try:
            i = 0
            while rate is not None:
                ctx.progress.update(task, description=f"{scenario} {name}: {rate:,.0f}/s")
                feed.start(rate / consoles)
                counters.record = False
                await asyncio.sleep(opts.warmup)
                sent0 = feed.sent
                cpu = await window(opts.step, meter, counters)
                offered = (feed.sent - sent0) / cpu.seconds * consoles
                delivered = counters.feed / cpu.seconds
                lat = counters.feed_lat.summary()
                p99 = float(lat.get("p99_ms", float("inf")))  # type: ignore[arg-type]
                dropped = closed_count(rooms)
                ok = delivered >= 0.9 * rate and p99 <= opts.max_p99_ms and dropped == 0
                steps.append(
                    {
                        "step": i,
                        "target": rate,
                        "offered": offered,
                        "delivered": delivered,
                        "sustained": ok,
                        "dropped": dropped,
                        **cpu.as_dict(),
                        "latency": lat,
                    }
                )
                ctx.progress.advance(task)
                i += 1
                if not cpu.valid or dropped:
                    break  # dropped: closed as slow consumers, the rooms are not whole any more
                was_refining = plan.refining
                rate = plan.next(ok)
                if rate is not None:
                    ctx.progress.update(task, total=i + plan.steps_left())
                if plan.refining and not was_refining:
                    await drained(feed, counters)  # the overloaded step's backlog first
        finally:
            await feed.stop()
            await close_rooms(rooms)
        ctx.progress.update(task, visible=False)
    return summarize(steps, opts)


class Ramp:
    """The rates a ramp offers: ``start``, then x ``factor`` while each step is
    sustained (at most ``max_steps``). After the first step that is not, back to
    the last one that was, climbing x ``refine`` up to the failed rate, until a
    step is not sustained: the coarse steps are far apart (x1.4), this finds the
    capacity between them. Pure: the ramp says which rate comes next."""

    def __init__(self, start: float, factor: float, max_steps: int, refine: float) -> None:
        self.rate = float(start)
        self._factor, self._max_steps, self._refine = factor, max_steps, refine
        self._coarse_steps = 0
        self._last_sustained: float | None = None
        self._ceiling: float | None = None

    @property
    def refining(self) -> bool:
        """Whether the coarse ramp is over and the finer climb has begun."""
        return self._ceiling is not None

    def steps_left(self) -> int:
        """The most steps the ramp offers from :attr:`rate` on (that one included),
        as it stands: a refinement, not begun yet, adds its own when it begins."""
        if self._ceiling is None:
            return self._max_steps - self._coarse_steps
        n, rate = 0, self.rate
        while rate < self._ceiling * 0.99:
            n, rate = n + 1, rate * self._refine
        return n

    def next(self, sustained: bool) -> float | None:
        """The rate after a step at :attr:`rate` (sustained or not); None: the ramp is over."""
        if self._ceiling is not None:
            if not sustained:
                return None
            self.rate *= self._refine
            return self.rate if self.rate < self._ceiling * 0.99 else None
        self._coarse_steps += 1
        if sustained:
            self._last_sustained = self.rate
            if self._coarse_steps >= self._max_steps:
                return None
            self.rate *= self._factor
            return self.rate
        last = self._last_sustained
        if last is None or self._refine <= 1 or last * self._refine >= self.rate * 0.99:
            return None
        self._ceiling = self.rate
        self.rate = last * self._refine
        return self.rate


async def drained(feed: Pacer, counters: Counters) -> None:
    """Stop the feed and wait until the backlog of an overloaded step is delivered
    (no delivery for half a second; at most 15 s), so the next step starts clean."""
    feed.start(0)
    deadline = asyncio.get_running_loop().time() + 15
    last = -1
    while counters.feed != last and asyncio.get_running_loop().time() < deadline:
        last = counters.feed
        await asyncio.sleep(0.5)


def summarize(steps: list[dict[str, Any]], opts: argparse.Namespace) -> dict[str, Any]:
    """The figures of one ramp; invalid when the load generator saturated first."""
    good = [s for s in steps if s["sustained"] and s["valid"]]
    best = max(good, key=lambda s: s["delivered"]) if good else None
    valid_steps = [s for s in steps if s["valid"]]
    out: dict[str, Any] = {
        "capacity": best["delivered"] if best else None,
        "peak": max((s["delivered"] for s in valid_steps), default=None),
        "p99_ms": best["latency"].get("p99_ms") if best else None,
        "server_cpu": best["server_cpu"] if best else None,
        "per_cpu": (
            best["delivered"] / (best["server_cpu"] / 100)
            if best and best["server_cpu"] > 0
            else None
        ),
        "loadgen_cpu": max((s["loadgen_cpu"] for s in steps), default=None),
        "valid": True,
        # Measured on a step the load generator kept up with: valid even when a
        # later step saturated it (the run is then invalid as a whole).
        "valid_figures": ["per_cpu"],
        "contended": any(s["contended"] for s in steps),
        "steps": steps,
    }
    if not steps:
        out.update(valid=False, invalid_reason="no step ran")
    elif not steps[-1]["valid"]:
        bound = f"; the server sustained at least {best['delivered']:,.0f}/s" if best else ""
        out.update(
            valid=False,
            capacity_lower_bound=best["delivered"] if best else None,
            invalid_reason=(
                f"the load generator saturated its core ({steps[-1]['loadgen_cpu']:.0f} %) "
                f"at {steps[-1]['target']:,.0f}/s before the server did{bound}"
            ),
        )
    elif all(s["sustained"] for s in steps):
        out["note"] = f"never saturated within {opts.max_steps} steps: a lower bound"
    elif best is None:
        out.update(valid=False, invalid_reason="not even the first step was sustained")
    return out


def plot(result: Result, fig: Any) -> None:
    from loadtest.report import COLORS

    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, data in result.systems.items():
        steps = sorted(data.get("steps") or [], key=lambda s: s["target"])  # refined: not in order
        if not steps:
            continue
        style = "-" if data.get("valid") else ":"
        xs = [s["target"] for s in steps]
        left.plot(
            xs,
            [s["delivered"] for s in steps],
            style,
            marker="o",
            ms=3,
            label=name,
            color=COLORS.get(name),
        )
        right.plot(
            xs,
            [s["latency"].get("p99_ms") for s in steps],
            style,
            marker="o",
            ms=3,
            label=name,
            color=COLORS.get(name),
        )
    top = max(
        (s["target"] for d in result.systems.values() for s in d.get("steps") or []), default=1
    )
    left.plot([1000, top], [1000, top], color="lightgray", lw=1, label="offered")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered deliveries/s")
    left.set_ylabel("delivered/s")
    right.set_xscale("log")
    right.set_xlabel("offered deliveries/s")
    right.set_ylabel("delivery p99 (ms)")
    right.set_yscale("log")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    p = result.params
    left.set_title(
        f"{p['rooms']} rooms x {p['consoles']} consoles, {p['frame_bytes']} B frames", fontsize=9
    )


async def run(ctx: Context, opts: argparse.Namespace) -> Result:
    sizes, _ = livepilot_sizes(opts.payload)
    params = scenario_params(opts)
    params["frame_bytes"] = sizes.feed
    result = Result("fanout", params, {}, FIGURES, plot=plot)
    return await measure_each(ctx, result, lambda system: ramp(ctx, system, opts, sizes))
