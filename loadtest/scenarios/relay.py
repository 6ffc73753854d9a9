"""``relay``: staff command -> hub -> creator client -> ack to the console, with the feed on.

The feed runs at ``--load`` (50 %) of the system's own capacity, measured first
with a short fan-out ramp (or at ``--feed-rate`` deliveries/s for every system),
while the consoles send staff commands at ``--command-rate`` per second in all.
Then livepilot runs once more at raw's feed rate (``livepilot@raw``): the same
traffic as raw, the comparison the ``<= 2x raw`` target is checked on (a latency
ratio between two systems carrying different traffic measures the traffic; see
docs/decisions/0013). Two latencies per command, both from the console's send:

* ``deliver``: until the creator client has it (the room event; the relay's
  forwarded frame).
* ``ack``: until the console has its confirmation. livepilot acks once the
  command is durably appended and fanned out; the baselines have no store, so
  their creator client answers and the relay forwards that answer back.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from loadtest.env import CpuMeter
from loadtest.report import Figure, Result, Target, latency_curves, same_load
from loadtest.scenarios import fanout
from loadtest.scenarios.common import (
    AGENCY,
    Context,
    Counters,
    close_rooms,
    closed_count,
    command_pacer,
    failed,
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

__all__ = ["FIGURES", "add_arguments", "run"]

FIGURES = (
    Figure("ack_p50_ms", "ack p50", "ms"),
    Figure("ack_p99_ms", "ack p99", "ms", (Target("<=", 2.0, "raw", same_load=True),)),
    Figure("ack_p999_ms", "ack p99.9", "ms"),
    Figure("deliver_p50_ms", "to creator p50", "ms"),
    Figure("deliver_p99_ms", "to creator p99", "ms"),
    Figure("deliver_p999_ms", "to creator p99.9", "ms"),
    Figure("feed_rate", "feed deliveries/s during the run", "/s"),
    Figure("acks_per_s", "commands acked/s", "/s"),
    Figure("server_cpu", "server CPU", "%"),
    Figure("loadgen_cpu", "load-generator CPU", "%"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rooms", type=int, default=4)
    p.add_argument("--consoles", type=int, default=25, help="consoles per room (25)")
    p.add_argument("--payload", type=int, default=150, help="feed item text bytes (150)")
    p.add_argument(
        "--command-rate",
        type=float,
        default=200.0,
        help="staff commands/s, all consoles together (200)",
    )
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds (15)")
    p.add_argument(
        "--load",
        type=float,
        default=0.5,
        help="feed rate as a fraction of the system's capacity (0.5)",
    )
    p.add_argument(
        "--feed-rate",
        type=float,
        default=None,
        help="feed deliveries/s for every system instead (skips the ramp)",
    )
    p.add_argument(
        "--ramp-step",
        type=float,
        default=2.0,
        help="measured seconds per step of the capacity ramp (2)",
    )
    p.add_argument(
        "--max-p99-ms",
        type=float,
        default=200.0,
        help="sustained-step limit of the capacity ramp (200)",
    )
    p.add_argument(
        "--no-same-load",
        dest="same_load",
        action="store_false",
        help="skip livepilot's second run at raw's feed rate",
    )


async def capacity(
    ctx: Context, name: str, opts: argparse.Namespace, sizes: Sizes
) -> tuple[float, bool]:
    """The system's sustained fan-out capacity with these rooms, from a short ramp, and
    whether it is only a lower bound (the load generator saturated first)."""
    ramp_opts = argparse.Namespace(
        **{
            **vars(opts),
            "start": 2000.0,
            "factor": 1.4,
            "max_steps": fanout.MAX_STEPS,
            "step": opts.ramp_step,
            "warmup": 0.5,
            "refine": 1.1,
        }
    )
    figures = await fanout.ramp(ctx, name, ramp_opts, sizes, scenario="relay-capacity")
    # A ramp the load generator could not finish still sustained its best valid step:
    # half of that is a lighter load than half the true capacity, and a measurable one.
    cap = figures.get("capacity") if figures.get("valid") else figures.get("capacity_lower_bound")
    if cap is None:
        raise RuntimeError(f"no capacity measured: {figures.get('invalid_reason')}")
    return float(cap), not figures.get("valid")


async def measure(
    ctx: Context,
    name: str,
    opts: argparse.Namespace,
    sizes: Sizes,
    feed_rate: float,
    *,
    label: str = "relay",
) -> dict[str, Any]:
    """One relay run of system ``name`` at ``feed_rate``; ``label`` names its server's
    work folder and profile (two runs of one system must not share them)."""
    system = make_system(name, opts.payload)
    consoles = opts.rooms * opts.consoles
    async with ctx.launch(system, label) as run:
        names = room_names(opts.rooms)
        await system.prepare(run, names, AGENCY)
        rooms = await open_rooms(system, run, names, opts.consoles, sizes)
        counters = Counters()
        for room in rooms:
            room.creator.on_data = counters.creator_handler(system, room.creator)
            for peer in room.consoles:
                peer.on_data = counters.console_handler(system, peer)
        feed = feed_pacer(system, rooms, sizes)
        commands = command_pacer(system, rooms, sizes)
        task = ctx.progress.add_task(
            f"{label} {name}: {feed_rate:,.0f}/s feed, {opts.duration:.0f} s", total=None
        )
        try:
            feed.start(feed_rate / consoles)
            commands.start(opts.command_rate)
            counters.record = False
            await asyncio.sleep(1.0)
            sent0 = commands.sent
            cpu = await window(opts.duration, CpuMeter(run.pid, ctx.pin), counters)
            sent = commands.sent - sent0
            feed_delivered = counters.feed / cpu.seconds
            await commands.stop()
            await asyncio.sleep(1.0)  # the last commands' acks
        finally:
            await commands.stop()
            await feed.stop()
            dropped = closed_count(rooms)
            await close_rooms(rooms)
            ctx.progress.update(task, visible=False)
    ack, deliver = counters.ack_lat.summary(), counters.deliver_lat.summary()
    out: dict[str, Any] = {
        "feed_target": feed_rate,
        "feed_rate": feed_delivered,
        "commands_sent": sent,
        "acks_per_s": counters.acks / cpu.seconds,
        "dropped": dropped,
        "ack": ack,
        "deliver": deliver,
        **cpu.as_dict(),
    }
    for prefix, summary in (("ack", ack), ("deliver", deliver)):
        for key in ("p50_ms", "p99_ms", "p999_ms"):
            out[f"{prefix}_{key}"] = summary.get(key)
    if not cpu.valid:
        out["invalid_reason"] = cpu.reason()
    elif counters.acks < 0.9 * sent:
        out.update(valid=False, invalid_reason=f"only {counters.acks} of {sent} commands acked")
    elif dropped:
        out.update(valid=False, invalid_reason=f"{dropped} connections dropped")
    return out


def plot(result: Result, fig: Any) -> None:
    p = result.params
    feed = (
        f"feed at {p['feed_rate']:,.0f}/s"
        if p.get("feed_rate")
        else f"feed at {p['load']:g} x each one's capacity"
        + ("; livepilot@raw at raw's" if same_load("raw") in result.systems else "")
    )
    latency_curves(
        result,
        fig,
        "ack",
        f"console ack latency: {p['command_rate']:g} commands/s, "
        f"{p['rooms']}x{p['consoles']} consoles\n{feed}",
    )


async def run(ctx: Context, opts: argparse.Namespace) -> Result:
    sizes, _ = livepilot_sizes(opts.payload)
    params = scenario_params(opts)
    params.update(frame_bytes=sizes.feed, command_bytes=sizes.command)
    result = Result("relay", params, {}, FIGURES, plot=plot)

    async def at_half_capacity(name: str) -> dict[str, Any]:
        cap, bounded = None, False
        if opts.feed_rate is None:
            cap, bounded = await capacity(ctx, name, opts, sizes)
            rate = cap * opts.load
        else:
            rate = opts.feed_rate
        figures: dict[str, Any] = {"capacity": cap, **await measure(ctx, name, opts, sizes, rate)}
        if bounded:
            figures["note"] = (
                f"capacity {cap:,.0f}/s is a lower bound (the load generator saturated "
                "first): the feed ran below half the true capacity"
            )
        return figures

    await measure_each(ctx, result, at_half_capacity)
    if opts.feed_rate is None and getattr(opts, "same_load", True):
        await at_baseline_load(
            result,
            "raw",
            lambda rate: measure(ctx, "livepilot", opts, sizes, rate, label="relay-same-load"),
        )
    return result


async def at_baseline_load(
    result: Result, baseline: str, measure: Callable[[float], Awaitable[dict[str, Any]]]
) -> None:
    """Run livepilot at ``baseline``'s feed rate, as ``livepilot@<baseline>``, placed
    next to livepilot's own run; nothing unless both ran and the baseline's run is
    valid (its feed rate is then a load its server sustained)."""
    base = result.systems.get(baseline)
    if "livepilot" not in result.systems or not (base and base.get("valid")):
        return
    rate = float(base["feed_target"])
    try:
        figures = await measure(rate)
    except Exception as e:
        figures = failed(e)
    figures["note"] = f"livepilot again, at {baseline}'s feed rate ({rate:,.0f}/s), the same load"
    ordered: dict[str, dict[str, Any]] = {}
    for name, data in result.systems.items():
        ordered[name] = data
        if name == "livepilot":
            ordered[same_load(baseline)] = figures
    result.systems = ordered
