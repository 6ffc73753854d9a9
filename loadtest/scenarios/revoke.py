"""``revoke``: 50 consoles of one agency in several rooms; unlink -> each console closed.

Each round connects ``--consoles`` consoles spread over ``--rooms`` rooms, then
ends the agency's access to every room at once (livepilot: the creator's
``POST /api/unlink``; the baselines: a control message) and times, for each
console, from the moment its room's revoke was sent until its connection was
closed (close frame, or the Socket.IO disconnect packet). livepilot does not
close a console whose access to one creator ended (decision 0015): it sends
``access_changed`` and takes it out of the room, and the console closes itself
then, so "closed" there is the moment it was cut off. Access is given back
between rounds.

Built for several nodes: :func:`rounds` takes a list of running servers, spreads
the consoles over them round-robin and sends the revoke to the first; with one
node, that is the node everyone is on.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from loadtest.hist import Latencies
from loadtest.peer import Peer, gather_limited
from loadtest.report import Figure, Result, Target, latency_curves
from loadtest.scenarios.common import (
    AGENCY,
    Context,
    livepilot_sizes,
    make_system,
    measure_each,
    room_names,
    scenario_params,
)
from loadtest.systems.base import Running, Sizes, System

__all__ = ["FIGURES", "add_arguments", "one_round", "rounds", "run"]

FIGURES = (
    Figure("p50_ms", "revoke -> closed p50", "ms"),
    Figure("p99_ms", "revoke -> closed p99", "ms", (Target("<=", 500),)),
    Figure("max_ms", "revoke -> closed max", "ms"),
    Figure("closed", "consoles closed", ""),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--consoles", type=int, default=50, help="consoles of the agency (50)")
    p.add_argument("--rooms", type=int, default=5, help="rooms they are spread over (5)")
    p.add_argument("--rounds", type=int, default=5, help="revokes per system (5)")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds a console may take to be closed (10)"
    )


async def rounds(
    system: System, nodes: Sequence[Running], opts: argparse.Namespace, sizes: Sizes, lat: Latencies
) -> tuple[int, int]:
    """Run the rounds; ``(closed, expected)`` consoles over all rounds."""
    names = room_names(opts.rooms)
    await system.prepare(nodes[0], names, AGENCY)
    creators = [await system.creator(nodes[i % len(nodes)], r, sizes) for i, r in enumerate(names)]
    closed = expected = 0
    for n in range(opts.rounds):
        got, want = await one_round(system, nodes, names, opts, sizes=sizes, n=n, lat=lat)
        closed, expected = closed + got, expected + want
        if n + 1 < opts.rounds:
            await system.regrant(nodes[0], names, AGENCY)
    for peer in creators:
        peer.close()
    return closed, expected


async def one_round(
    system: System,
    nodes: Sequence[Running],
    names: Sequence[str],
    opts: argparse.Namespace,
    *,
    sizes: Sizes,
    n: int,
    lat: Latencies,
) -> tuple[int, int]:
    """Connect the consoles, revoke every room at once, time each console's close."""
    placement = [
        (names[i % len(names)], nodes[i % len(nodes)], f"s{n}-{i}") for i in range(opts.consoles)
    ]

    def job(room: str, node: Running, staff: str) -> Callable[[], Awaitable[Peer]]:
        return lambda: system.console(node, room, AGENCY, staff, sizes)

    peers = await gather_limited([job(*p) for p in placement], 50)
    consoles = [(room, peer) for (room, _, _), peer in zip(placement, peers, strict=True)]
    await asyncio.sleep(0.2)
    sent_at: dict[str, int] = {}

    async def revoke(room: str) -> None:
        sent_at[room] = time.monotonic_ns()
        await system.revoke(nodes[0], AGENCY, room)

    await asyncio.gather(*(revoke(r) for r in names))
    waits = [asyncio.wait_for(asyncio.shield(p.gone), opts.timeout) for _, p in consoles]
    await asyncio.gather(*waits, return_exceptions=True)
    closed = 0
    for room, peer in consoles:
        if peer.closed_ns is not None:
            closed += 1
            lat.add(peer.closed_ns - sent_at[room])
        peer.close()
    return closed, len(consoles)


async def measure(
    ctx: Context, name: str, opts: argparse.Namespace, sizes: Sizes
) -> dict[str, Any]:
    system = make_system(name, 150)
    lat = Latencies()
    task = ctx.progress.add_task(f"revoke {name}: {opts.rounds} rounds", total=None)
    async with ctx.launch(system, "revoke") as run:
        closed, expected = await rounds(system, [run], opts, sizes, lat)
    ctx.progress.update(task, visible=False)
    summary = lat.summary()
    out: dict[str, Any] = {
        "closed": closed,
        "expected": expected,
        "latency": summary,
        "p50_ms": summary.get("p50_ms"),
        "p99_ms": summary.get("p99_ms"),
        "max_ms": summary.get("max_ms"),
        "valid": closed == expected,
    }
    if closed != expected:
        out["invalid_reason"] = (
            f"{expected - closed} of {expected} consoles still open "
            f"{opts.timeout:g} s after the revoke"
        )
    return out


def plot(result: Result, fig: Any) -> None:
    p = result.params
    latency_curves(
        result,
        fig,
        "latency",
        f"revoke -> console closed: {p['consoles']} "
        f"consoles in {p['rooms']} rooms, {p['rounds']} rounds",
    )


async def run(ctx: Context, opts: argparse.Namespace) -> Result:
    sizes, _ = livepilot_sizes(150)
    params = scenario_params(opts)
    result = Result("revoke", params, {}, FIGURES, plot=plot)
    return await measure_each(ctx, result, lambda system: measure(ctx, system, opts, sizes))
