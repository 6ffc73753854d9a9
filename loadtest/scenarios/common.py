"""What the scenarios share: rooms of clients, the paced feed, per-frame counters.

A room is one creator client and ``consoles`` consoles of one agency. The feed
is paced by one task for every room: each tick it sends what the target rate
owes since the start, so the offered rate holds at any rate without a timer per
message. Counters are plain attributes bumped from picows callbacks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.progress import Progress

from loadtest.env import CpuMeter, CpuSample, Pinning
from loadtest.hist import Latencies
from loadtest.peer import Peer, gather_limited
from loadtest.report import Result
from loadtest.systems import SYSTEMS
from loadtest.systems.base import ACK, EVENT, Running, Sizes, System, launch

__all__ = [
    "AGENCY",
    "TICK_S",
    "Context",
    "Counters",
    "Pacer",
    "Room",
    "close_rooms",
    "closed_count",
    "command_pacer",
    "failed",
    "feed_pacer",
    "livepilot_sizes",
    "make_system",
    "open_rooms",
    "room_names",
    "window",
]

AGENCY: Final = "agency-lt"
SOURCE_ENV: Final = "LOADTEST_LIVEPILOT_SOURCE"
"""Another livepilot checkout to serve from (``--livepilot-source``), e.g. a patched one."""
TICK_S: Final = 0.005
F: Final = ord("F")
C: Final = ord("C")
D: Final = ord("D")


@dataclass
class Room:
    name: str
    creator: Peer
    consoles: list[Peer] = field(default_factory=list)


@dataclass
class Counters:
    """What the load generator saw; latencies in ns."""

    feed: int = 0
    """Feed items delivered to consoles."""
    echoes: int = 0
    """Feed items echoed back to their creator client."""
    acks: int = 0
    feed_lat: Latencies = field(default_factory=Latencies)
    ack_lat: Latencies = field(default_factory=Latencies)
    deliver_lat: Latencies = field(default_factory=Latencies)
    """A staff command's way to the creator client."""
    record: bool = True
    """Whether latencies are kept (off during warm-ups)."""

    def reset(self) -> None:
        self.feed = self.echoes = self.acks = 0
        self.feed_lat, self.ack_lat, self.deliver_lat = Latencies(), Latencies(), Latencies()

    def console_handler(
        self, system: System, peer: Peer, after_ack: Callable[[Peer], None] | None = None
    ) -> Callable[[bytes], None]:
        """Count a console's feed deliveries and its own commands' acks."""

        def on_data(data: bytes) -> None:
            i = data.find(b"@@")
            if i < 0 or i + 22 > len(data):  # not a tagged frame (or "@@" in other bytes)
                return
            letter = data[i + 2]
            if letter == F:
                self.feed += 1
                if self.record:
                    self.feed_lat.add(time.monotonic_ns() - int(data[i + 3 : i + 22]))
            elif system.classify(data) == ACK:
                self.acks += 1
                if self.record:
                    self.ack_lat.add(time.monotonic_ns() - int(data[i + 3 : i + 22]))
                if after_ack is not None:
                    after_ack(peer)

        return on_data

    def creator_handler(self, system: System, peer: Peer) -> Callable[[bytes], None]:
        """Count the creator's echoes; time staff commands reaching it; answer them."""

        def on_data(data: bytes) -> None:
            i = data.find(b"@@")
            if i < 0 or i + 22 > len(data):  # not a tagged frame (or "@@" in other bytes)
                return
            letter = data[i + 2]
            if letter == F:
                self.echoes += 1
            elif letter == C and system.classify(data) == EVENT:
                if self.record:
                    self.deliver_lat.add(time.monotonic_ns() - int(data[i + 3 : i + 22]))
                system.on_creator_frame(peer, data)

        return on_data


def room_names(n: int, prefix: str = "room") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


async def open_rooms(
    system: System,
    run: Running,
    names: Sequence[str],
    consoles: int,
    sizes: Sizes,
    *,
    limit: int = 64,
    progress: Callable[[int], None] | None = None,
) -> list[Room]:
    """Creators first (the rooms go live), then every console."""

    def creator(room: str) -> Callable[[], Awaitable[Peer]]:
        return lambda: system.creator(run, room, sizes)

    creators = await gather_limited([creator(r) for r in names], limit)
    rooms = [Room(r, c) for r, c in zip(names, creators, strict=True)]

    def console(room: Room, i: int) -> Callable[[], Awaitable[Peer]]:
        async def connect() -> Peer:
            peer = await system.console(run, room.name, AGENCY, f"s-{room.name}-{i}", sizes)
            if progress is not None:
                progress(1)
            return peer

        return connect

    jobs = [(room, i) for i in range(consoles) for room in rooms]
    peers = await gather_limited([console(*j) for j in jobs], limit)
    for (room, _), peer in zip(jobs, peers, strict=True):
        room.consoles.append(peer)
    return rooms


async def close_rooms(rooms: Sequence[Room]) -> None:
    for room in rooms:
        for peer in (room.creator, *room.consoles):
            peer.close()
    await asyncio.sleep(0.05)


class Pacer:
    """Calls ``emit(n)`` ``rate`` times a second (n = 0, 1, 2...) until stopped.

    Each tick sends what the rate owes since the rate was set, so the offered
    rate holds at any rate without a timer per message."""

    def __init__(self, emit: Callable[[int], None]) -> None:
        self.emit = emit
        self.rate = 0.0
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, rate: float) -> None:
        self.rate = rate
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        rate, start, done = self.rate, time.monotonic(), 0
        while True:
            await asyncio.sleep(TICK_S)
            if self.rate != rate:  # a new rate: count from now
                rate, start, done = self.rate, time.monotonic(), 0
            owed = int((time.monotonic() - start) * rate) - done
            for _ in range(owed):
                self.emit(self.sent)
                self.sent += 1
            done += max(owed, 0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def feed_pacer(system: System, rooms: Sequence[Room], sizes: Sizes) -> Pacer:
    """The creator clients' feed: ``rate`` items/s in every room."""

    def emit(n: int) -> None:
        for room in rooms:
            if room.creator.open:
                system.feed(room.creator, room.name, n, sizes)

    return Pacer(emit)


def command_pacer(
    system: System, rooms: Sequence[Room], sizes: Sizes, durable: bool = False
) -> Pacer:
    """Staff commands: ``rate`` commands/s in all, the consoles taking turns."""
    consoles = [(room.name, peer) for room in rooms for peer in room.consoles]

    def emit(n: int) -> None:
        room, peer = consoles[n % len(consoles)]
        system.command(peer, room, n, sizes, durable)

    return Pacer(emit)


async def window(seconds: float, meter: CpuMeter, counters: Counters) -> CpuSample:
    """Measure for ``seconds``: counters reset at the start, CPU of both sides."""
    counters.reset()
    counters.record = True
    meter.start()
    await asyncio.sleep(seconds)
    return meter.stop()


@dataclass
class Context:
    """What a scenario runs with: pinning, where results go, which systems, output."""

    pin: Pinning
    results: Path
    systems: Sequence[str]
    progress: Progress
    say: Callable[[str], None] = print
    profile: bool = False
    """Sample each server with py-spy (``<results>/profile-<scenario>-<system>.txt``)."""

    def workdir(self, scenario: str, system: str) -> Path:
        # Absolute: a server may run from another checkout (--livepilot-source).
        return self.results.resolve() / "work" / scenario / system

    def launch(
        self, system: System, scenario: str, durable: bool = False
    ) -> AbstractAsyncContextManager[Running]:
        """Run the system's server for this scenario, pinned, profiled if asked."""
        profile = self.results / f"profile-{scenario}-{system.name}.txt" if self.profile else None
        return launch(
            system, self.pin, self.workdir(scenario, system.name), durable=durable, profile=profile
        )


def livepilot_sizes(payload: int) -> tuple[Sizes, int]:
    """The wire sizes every system of a run uses (livepilot's), and the payload."""
    from loadtest.systems.livepilot import LivepilotSystem

    return LivepilotSystem().sizes(payload), payload


def make_system(name: str, payload: int) -> System:
    system = SYSTEMS[name]()
    system.sizes(payload)  # livepilot sizes its feed text from this
    source = os.environ.get(SOURCE_ENV) if name.startswith("livepilot") else None
    if source:
        system.source = Path(source).resolve()
    return system


def failed(error: BaseException) -> dict[str, object]:
    """A system's figures when its run failed."""
    return {"valid": False, "invalid_reason": f"{type(error).__name__}: {error}"}


def scenario_params(opts: argparse.Namespace) -> dict[str, Any]:
    """A run's options, as its result records them."""
    return {k: v for k, v in vars(opts).items() if not callable(v)}


async def measure_each(
    ctx: Context, result: Result, measure: Callable[[str], Awaitable[dict[str, Any]]]
) -> Result:
    """Fill ``result`` with ``measure(system)`` for every system of the run; one
    system failing does not hide the others."""
    for name in ctx.systems:
        try:
            result.systems[name] = await measure(name)
        except Exception as e:
            result.systems[name] = failed(e)
    return result


def closed_count(rooms: Sequence[Room]) -> int:
    return sum(not p.open for r in rooms for p in (r.creator, *r.consoles))
