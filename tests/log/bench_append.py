"""Throughput of durable appends to the SQLite room log (not a test: a measurement).

    .venv/bin/python -m tests.log.bench_append --clients 200 --seconds 5

``clients`` coroutines each send commands (one event each, with a command id) as
fast as their acks come back, like consoles behind a hub; with ``--per-room`` > 1
several clients share a room and retry on Conflict. Prints acked commands per
second, the commit count (one fsync each with synchronous=FULL) and latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import cast

from server.log.base import Appended, Conflict
from server.log.sqlite import SqliteRoomLog, Synchronous
from tests.log.conftest import pending


async def run(args: argparse.Namespace) -> None:
    """Run the clients for ``args.seconds`` and print the figures."""
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        log = await SqliteRoomLog.open(
            Path(tmp) / "bench.db", synchronous=cast(Synchronous, args.synchronous)
        )
        latencies: list[float] = []
        acked = 0
        conflicts = 0
        stop = asyncio.Event()

        async def client(c: int) -> None:
            nonlocal acked, conflicts
            room = f"room-{c // args.per_room}"
            seq = await log.last_seq(room)
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.perf_counter()
                while True:
                    result = await log.append(room, f"c{c}-{i}", [pending(f"p{i}")], seq)
                    if isinstance(result, Conflict):
                        conflicts += 1
                        seq = result.current_seq
                        continue
                    assert isinstance(result, Appended)
                    seq = result.last_seq
                    break
                latencies.append(time.perf_counter() - t0)
                acked += 1

        tasks = [asyncio.create_task(client(c)) for c in range(args.clients)]
        await asyncio.sleep(0.5)  # warm-up, not measured
        stats = log.store.stats
        acked0, batches0, t0 = acked, stats.batches, time.perf_counter()
        cpu0 = time.process_time()
        latencies.clear()
        await asyncio.sleep(args.seconds)
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        n, batches = acked - acked0, stats.batches - batches0
        stop.set()
        await asyncio.gather(*tasks)
        await log.close()

    latencies.sort()
    print(
        f"synchronous={args.synchronous} clients={args.clients} per_room={args.per_room}: "
        f"{n / elapsed:,.0f} durable commands/s "
        f"({n} in {elapsed:.1f}s, {batches} commits = {batches / elapsed:,.0f} fsync/s, "
        f"{n / max(batches, 1):.1f} commands/commit, {conflicts} conflicts, "
        f"{100 * cpu / elapsed:.0f}% CPU = {1e6 * cpu / max(n, 1):.0f} us CPU/command)"
    )
    print(
        f"latency ms: p50 {1000 * statistics.median(latencies):.2f}"
        f"  p99 {1000 * latencies[int(0.99 * len(latencies))]:.2f}"
        f"  max {1000 * latencies[-1]:.2f}"
    )


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--per-room", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--synchronous", choices=["FULL", "EXTRA", "NORMAL"], default="FULL")
    parser.add_argument("--dir", default=None, help="where to put the data file (default: tmp)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
