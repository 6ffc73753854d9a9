"""``durable``: acknowledged durable commands/s on the embedded store.

``rooms x consoles`` consoles each send a staff command, wait for its ack, and
send the next (closed loop). livepilot acks once the command's event is
appended to its SQLite store (WAL, ``synchronous=FULL``, group commit) and
fanned out to the room; the baselines append the same bytes to the same kind
of store (:mod:`loadtest.baselines.store`) before they broadcast and ack.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from loadtest.env import CpuMeter
from loadtest.peer import Peer
from loadtest.report import Figure, Result, Target, latency_curves
from loadtest.scenarios.common import (
    AGENCY,
    Context,
    Counters,
    close_rooms,
    closed_count,
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
    Figure("rate", "acked durable commands/s", "/s", (Target(">=", 5000),)),
    Figure("ack_p50_ms", "ack p50", "ms"),
    Figure("ack_p99_ms", "ack p99", "ms"),
    Figure("server_cpu", "server CPU", "%"),
    Figure("loadgen_cpu", "load-generator CPU", "%"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rooms", type=int, default=50, help="rooms (50)")
    p.add_argument(
        "--consoles",
        type=int,
        default=2,
        help="consoles per room (2: the store's figure, little fan-out)",
    )
    p.add_argument("--payload", type=int, default=150, help="sets the frame sizes (150)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds (2)")


async def measure(
    ctx: Context, name: str, opts: argparse.Namespace, sizes: Sizes
) -> dict[str, Any]:
    system = make_system(name, opts.payload)
    async with ctx.launch(system, "durable", durable=True) as run:
        names = room_names(opts.rooms)
        await system.prepare(run, names, AGENCY)
        rooms = await open_rooms(system, run, names, opts.consoles, sizes)
        counters = Counters()
        running = [True]
        sent = [0]
        room_of: dict[int, str] = {}

        def next_command(peer: Peer) -> None:
            if running[0]:
                sent[0] += 1
                system.command(peer, room_of[id(peer)], sent[0], sizes, True)

        for room in rooms:
            room.creator.on_data = counters.creator_handler(system, room.creator)
            for peer in room.consoles:
                room_of[id(peer)] = room.name
                peer.on_data = counters.console_handler(system, peer, after_ack=next_command)
        task = ctx.progress.add_task(f"durable {name}", total=None)
        try:
            counters.record = False
            for room in rooms:
                for peer in room.consoles:
                    next_command(peer)
            await asyncio.sleep(opts.warmup)
            cpu = await window(opts.duration, CpuMeter(run.pid, ctx.pin), counters)
            acks = counters.acks
            running[0] = False
            await asyncio.sleep(0.5)
        finally:
            running[0] = False
            dropped = closed_count(rooms)
            await close_rooms(rooms)
            ctx.progress.update(task, visible=False)
    ack = counters.ack_lat.summary()
    out: dict[str, Any] = {
        "rate": acks / cpu.seconds,
        "acks": acks,
        "ack": ack,
        "ack_p50_ms": ack.get("p50_ms"),
        "ack_p99_ms": ack.get("p99_ms"),
        "dropped": dropped,
        **cpu.as_dict(),
    }
    if not cpu.valid:
        out["invalid_reason"] = cpu.reason()
    elif dropped:
        out.update(valid=False, invalid_reason=f"{dropped} connections dropped")
    elif acks == 0:
        out.update(valid=False, invalid_reason="no command was acked")
    return out


def plot(result: Result, fig: Any) -> None:
    p = result.params
    rates = ", ".join(f"{n} {d.get('rate') or 0:,.0f}/s" for n, d in result.systems.items())
    latency_curves(
        result,
        fig,
        "ack",
        f"durable ack latency, {p['rooms']}x{p['consoles']} closed-loop consoles ({rates})",
    )


async def run(ctx: Context, opts: argparse.Namespace) -> Result:
    sizes, _ = livepilot_sizes(opts.payload)
    params = scenario_params(opts)
    params["command_bytes"] = sizes.command
    result = Result("durable", params, {}, FIGURES, plot=plot)
    return await measure_each(ctx, result, lambda system: measure(ctx, system, opts, sizes))
