"""The hub and its store without sockets: CPU per durable command, and where it goes.

    python -m loadtest.hubbench                 # SQLite store, as shipped
    python -m loadtest.hubbench --memory        # in-memory log and journal
    python -m loadtest.hubbench --profile       # + cProfile of the event loop thread

In one process (pin it with ``taskset -c 0`` to match the scenarios): ``rooms``
live rooms with ``consoles`` staff sessions each, every session in a closed loop
of ``Mute`` commands through :meth:`Hub.command` (the pipelined path the
WebSocket endpoint uses). Sessions are outboxes drained by the loop; nothing is
encoded for a socket. Prints commands/s, the process's CPU per command, and the
SQLite writer thread's CPU per command. The difference to ``python -m loadtest
durable`` is the WebSocket side (frames in, frames out).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import anyio
import anyio.abc

from protocol import commands as c
from protocol.codec import Codec
from protocol.model import Actor
from server.domain.grants import Grant
from server.hub.hub import Hub
from server.hub.session import Session
from server.journal import Journal, MemoryJournal
from server.log.base import RoomLog
from server.log.memory import MemoryRoomLog
from server.log.sqlite import SqliteRoomLog, SqliteStore
from server.log.sqlite_store import _Job
from server.metrics import Metrics
from server.store import SqliteJournal

__all__ = ["main"]

CODEC = Codec("msgpack")
FOREVER = 2**50


class WriterClock:
    """CPU time the store's writer thread spends committing (wraps ``_commit``)."""

    def __init__(self, store: SqliteStore) -> None:
        self.seconds = 0.0
        commit = store._commit

        def timed(conn: object, batch: list[_Job]) -> None:
            started = time.thread_time()
            commit(conn, batch)  # type: ignore[arg-type]
            self.seconds += time.thread_time() - started

        store._commit = timed  # type: ignore[method-assign]


async def run(opts: argparse.Namespace) -> None:
    store: SqliteStore | None = None
    log: RoomLog
    journal: Journal
    with tempfile.TemporaryDirectory() as folder:
        if opts.memory:
            log, journal = MemoryRoomLog(), MemoryJournal()
        else:
            store = SqliteStore(Path(folder) / "hubbench.db")
            await store.start()
            log, journal = SqliteRoomLog(store), SqliteJournal(store)
        writer = WriterClock(store) if store is not None else None

        def grants(agency: str, creator: str, now: int) -> Grant:
            return Grant(agency=agency, creator=creator)

        hub = Hub(
            log, journal, grants, clock=lambda: time.time_ns() // 1_000_000, metrics=Metrics()
        )
        state = State()
        async with anyio.create_task_group() as tg:
            for r in range(opts.rooms):
                room = f"cr{r}"
                creator = Session(f"c{r}", Actor(role="creator", id=room), CODEC, FOREVER, 1 << 30)
                hub.connect(creator)
                await hub.command(creator, c.StartLive(command_id="go", room=room))
                for k in range(opts.consoles):
                    staff = Session(
                        f"s{r}-{k}",
                        Actor(role="staff", id=f"st{k}", agency="ag"),
                        CODEC,
                        FOREVER,
                        1 << 30,
                    )
                    hub.connect(staff)
                    await hub.join(staff, room)
                    tg.start_soon(console, hub, staff, room, tg, state)
            await anyio.sleep(opts.warmup)
            profile = cProfile.Profile() if opts.profile else None
            start, cpu = state.done, time.process_time()
            writer_start = writer.seconds if writer is not None else 0.0
            wall = time.perf_counter()
            if profile is not None:
                profile.enable()
            await anyio.sleep(opts.seconds)
            if profile is not None:
                profile.disable()
            n = state.done - start
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            state.running = False
            print(
                f"{n / wall:,.0f} commands/s; process CPU {cpu / n * 1e6:.0f} µs per command "
                f"({cpu / wall:.0%} of a core)"
            )
            if writer is not None:
                per_command = (writer.seconds - writer_start) / n
                print(f"SQLite writer thread: {per_command * 1e6:.0f} µs per command")
            if profile is not None:
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)
            await anyio.sleep(0.5)
            tg.cancel_scope.cancel()
        if store is not None:
            await store.close()


class State:
    """Commands answered so far; whether the consoles keep going."""

    def __init__(self) -> None:
        self.done = 0
        self.running = True


async def console(
    hub: Hub, staff: Session, room: str, tg: anyio.abc.TaskGroup, state: State
) -> None:
    """Send a command, wait until it is answered, send the next."""
    i = 0
    while state.running:
        i += 1
        mute = c.Mute(command_id=f"{staff.id}-{i}", room=room, user_id=f"u-{staff.id}")
        answered = await hub.command(staff, mute, tg.start_soon)
        if answered is not None:
            await answered
        state.done += 1
        staff.take_frames()


def main(argv: list[str] | None = None) -> int:
    """``python -m loadtest.hubbench``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rooms", type=int, default=50)
    p.add_argument("--consoles", type=int, default=2, help="staff sessions per room (2)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--memory", action="store_true", help="in-memory log and journal")
    p.add_argument("--profile", action="store_true", help="cProfile the event loop thread")
    asyncio.run(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
