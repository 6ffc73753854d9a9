"""The bound on the data file's write-ahead log (decision 0019)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio

from server.log.sqlite_store import SqliteStore
from server.log.wal import ReadGate

LIMIT = 1 << 20
TABLE = ((1, ("CREATE TABLE t (x BLOB)",)),)


async def test_the_wal_stays_bounded_while_reads_overlap(tmp_path: Path) -> None:
    """The -wal file stays under its limit plus one batch while overlapping reads pin it."""
    # H4: a durable store must not fill its disk with the log of recent commits. Reads
    # always in flight keep SQLite's passive checkpoints from restarting the WAL; 8 MB
    # are written against a 1 MiB limit.
    path = tmp_path / "w.db"
    store = SqliteStore(path, migrations=TABLE, wal_checkpoint_pages=100, wal_limit_bytes=LIMIT)
    hold = threading.Event()  # never set: each read holds its snapshot for 20 ms

    def slow_read(conn: sqlite3.Connection) -> None:
        # The workload, not a synchronisation: a read that takes 20 ms (a long resume),
        # two at a time, so an older snapshot is always held.
        conn.execute("SELECT count(*) FROM t").fetchone()
        hold.wait(0.02)

    largest = 0
    blob = os.urandom(20_000)
    async with store, anyio.create_task_group() as readers:
        for _ in range(4):
            readers.start_soon(read_forever, store, slow_read)
        with anyio.fail_after(60):
            for _ in range(400):
                await store.write(lambda conn: conn.execute("INSERT INTO t VALUES (?)", (blob,)))
                largest = max(largest, os.stat(f"{path}-wal").st_size)
        readers.cancel_scope.cancel()
    assert largest <= LIMIT + 64 * 1024  # one batch here: one 20 KB row and its pages
    assert store.wal.forced >= 1  # it took the forced checkpoint to keep it there


async def read_forever(store: SqliteStore, fn: Callable[[sqlite3.Connection], None]) -> None:
    while True:
        await store.read(fn)


def test_the_gate_waits_for_reads_in_flight_and_holds_new_ones() -> None:
    """Closing the gate waits for open reads; reads that start meanwhile wait for it."""
    gate = ReadGate()
    inside, release, closed, late_done = (threading.Event() for _ in range(4))
    order: list[str] = []

    def reader() -> None:
        with gate.reading():
            inside.set()
            release.wait(10)
            order.append("first read")

    def late_reader() -> None:
        closed.wait(10)
        with gate.reading():
            order.append("late read")
        late_done.set()

    threads = [threading.Thread(target=reader), threading.Thread(target=late_reader)]
    for t in threads:
        t.start()
    assert inside.wait(10)

    def checkpoint() -> None:
        with gate.closed():
            closed.set()
            order.append("checkpoint")

    writer = threading.Thread(target=checkpoint)
    writer.start()
    release.set()
    writer.join(10)
    assert late_done.wait(10)
    for t in threads:
        t.join(10)
    assert order == ["first read", "checkpoint", "late read"]
