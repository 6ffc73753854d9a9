"""What only the SQLite log has: the file, its schema, the writer thread, group commit,
and a real crash (SIGKILL) of a process that had acked appends."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import anyio
import msgspec
import pytest

from protocol.model import RoomState
from server.log.base import (
    Appended,
    CorruptRecordError,
    Duplicate,
    LogClosedError,
    LogError,
    LogWriteError,
)
from server.log.schema import SCHEMA, SCHEMA_VERSION, SchemaError, migrate, schema_version
from server.log.sqlite import SqliteRoomLog, SqliteStore
from server.log.sqlite_store import MMAP_BYTES, WAL_AUTOCHECKPOINT_PAGES, WRITER_CACHE_KIB
from tests.log.conftest import pending

ROOM = "room-1"
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqliteRoomLog]:
    """A SQLite log on a fresh file, closed after the test."""
    opened = await SqliteRoomLog.open(tmp_path / "livepilot.db")
    yield opened
    await opened.close()


class Gate:
    """Holds the writer thread inside a write until released, so a test decides
    exactly which writes are queued together (no sleeps)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._entered = threading.Event()
        self._release = threading.Event()
        self.held: asyncio.Task[None] | None = None

    def _hold(self, conn: sqlite3.Connection) -> None:
        self._entered.set()
        self._release.wait()

    async def close(self) -> None:
        """Occupy the writer thread; returns once it is blocked in the gate."""
        self.held = asyncio.create_task(self._store.write(self._hold))
        await anyio.to_thread.run_sync(self._entered.wait)

    async def open(self) -> None:
        """Let the writer go on, and wait for the gate's own write to commit."""
        self._release.set()
        assert self.held is not None
        await self.held


async def queued(store: SqliteStore, *writes: Awaitable[T]) -> list[asyncio.Task[T]]:
    """Start ``writes`` as tasks and return once every one of them is in the queue."""
    tasks = [asyncio.ensure_future(w) for w in writes]
    # One pass of the loop runs each new task up to its first await, which is
    # after its put() on the writer queue: asyncio runs ready callbacks in FIFO order.
    await asyncio.sleep(0)
    assert store._queue.qsize() == len(writes)
    return tasks


# --- the file -------------------------------------------------------------------


async def test_file_is_wal_with_the_current_schema(log: SqliteRoomLog, tmp_path: Path) -> None:
    """The data file is in WAL mode and stamped with the schema version (user_version)."""
    await log.append(ROOM, "c1", [pending("a")], 0)
    conn = sqlite3.connect(tmp_path / "livepilot.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert schema_version(conn) == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"log_rooms", "log_events", "log_commands", "log_snapshots"} <= tables
    finally:
        conn.close()
    assert log.store.synchronous == "FULL"  # H4: fsync at every commit


async def test_writer_is_tuned_for_group_commits(log: SqliteRoomLog) -> None:
    """The writer keeps a large page cache, checkpoints rarely and reads through mmap;
    the audit trail has no per-staff index (decision 0008)."""

    def settings(conn: sqlite3.Connection) -> tuple[int, int, int, set[str]]:
        def pragma(name: str) -> int:
            return int(conn.execute(f"PRAGMA {name}").fetchone()[0])

        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        return pragma("cache_size"), pragma("wal_autocheckpoint"), pragma("mmap_size"), indexes

    cache, checkpoint, mmap, indexes = await log.store.write(settings)
    assert (cache, checkpoint, mmap) == (-WRITER_CACHE_KIB, WAL_AUTOCHECKPOINT_PAGES, MMAP_BYTES)
    assert "journal_audit_by_agency" in indexes
    assert "journal_audit_by_staff" not in indexes


def test_migrate_is_idempotent_and_refuses_newer_files(tmp_path: Path) -> None:
    """Migrating twice is a no-op; a file from a newer build is refused, not damaged."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        assert migrate(conn) == SCHEMA_VERSION
        assert migrate(conn) == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(SchemaError, match="newer"):
            migrate(conn)
        with pytest.raises(SchemaError, match="numbered"):
            migrate(conn, [(2, ())])
    finally:
        conn.close()


def test_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    """A migration step that fails rolls back whole, user_version included."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        broken = (*SCHEMA, (SCHEMA_VERSION + 1, ("CREATE TABLE extra (x)", "NOT SQL")))
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, broken)
        assert schema_version(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT name FROM sqlite_master WHERE name='extra'").fetchone() is None
    finally:
        conn.close()


async def test_newer_file_fails_to_open(tmp_path: Path) -> None:
    """Opening a data file with a newer schema raises instead of starting."""
    path = tmp_path / "livepilot.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(SchemaError):
        await SqliteRoomLog.open(path)


def test_store_needs_a_file() -> None:
    """An in-memory database cannot be shared with readers nor be durable: refused."""
    with pytest.raises(ValueError, match="file path"):
        SqliteStore(":memory:")


async def test_store_starts_once_and_refuses_use_when_not_running(tmp_path: Path) -> None:
    """A store is used only between start and close (LogClosedError otherwise)."""
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(LogClosedError):
        await store.write(lambda conn: None)
    async with store:
        with pytest.raises(LogError):
            await store.start()
        assert await store.read(lambda conn: 1) == 1
    with pytest.raises(LogClosedError):
        await store.read(lambda conn: 1)


# --- the writer thread ---------------------------------------------------------------


async def test_queued_appends_commit_as_one_batch(log: SqliteRoomLog) -> None:
    """Appends queued while the writer is busy are committed in ONE transaction."""
    store = log.store
    gate = Gate(store)
    await gate.close()
    batches = store.stats.batches
    tasks = await queued(
        store, *(log.append(f"room-{i}", "c1", [pending("a")], 0) for i in range(50))
    )
    await gate.open()
    results = await asyncio.gather(*tasks)
    assert all(isinstance(r, Appended) for r in results)
    assert store.stats.batches == batches + 2  # the gate's batch, then all 50 at once
    assert store.stats.largest_batch >= 50


async def test_then_runs_in_the_callback_that_resolves_the_append(log: SqliteRoomLog) -> None:
    """``then`` runs once its whole batch is resolved, before the futures' done
    callbacks (which wait a turn of the loop); a ``then`` that raises spoils nothing."""
    order: list[str] = []
    gate = Gate(log.store)
    await gate.close()  # both appends in one batch

    def failing() -> None:
        order.append(f"then c1 (c2 done: {second.done()})")
        raise RuntimeError("a bug in the caller")

    first = log.append_soon(ROOM, "c1", [pending("a")], 0, then=failing)
    second = log.append_soon(ROOM, "c2", [pending("b")], 1, then=lambda: order.append("then c2"))
    first.add_done_callback(lambda _: order.append("done c1"))
    second.add_done_callback(lambda _: order.append("done c2"))
    await gate.open()
    results = await asyncio.gather(first, second)
    assert [r.last_seq for r in results if isinstance(r, Appended)] == [1, 2]
    # Both in the store's one callback; a future's done callbacks come a turn later.
    assert order == ["then c1 (c2 done: True)", "then c2", "done c1", "done c2"]


async def test_then_runs_even_when_the_future_was_cancelled(log: SqliteRoomLog) -> None:
    """A cancelled append is still applied, and its ``then`` still runs, once."""
    seen: list[bool] = []
    future = log.append_soon(
        ROOM, "c1", [pending("a")], 0, then=lambda: seen.append(future.cancelled())
    )
    future.cancel()
    await log.append(ROOM, "c2", [pending("b")], 1)  # committed after it, or with it
    assert seen == [True]


class WriterKilled(BaseException):
    """Not an Exception: nothing in the writer's batch handling catches it."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_dead_writer_answers_its_batch_and_every_later_write(log: SqliteRoomLog) -> None:
    """If the writer thread dies, the writes it held and all later ones fail; none hangs."""

    def kill(conn: sqlite3.Connection) -> None:
        raise WriterKilled

    with anyio.fail_after(10):
        with pytest.raises(LogWriteError) as info:
            await log.store.write(kill)
        assert isinstance(info.value.__cause__, WriterKilled)
        with pytest.raises(LogWriteError):
            await log.append(ROOM, "c1", [pending("a")], 0)
        seen: list[bool] = []
        future = log.append_soon(ROOM, "c2", [pending("b")], 0, then=lambda: seen.append(True))
        with pytest.raises(LogWriteError):
            await future
        await asyncio.sleep(0)
        assert seen == [True]


@pytest.mark.parametrize("where", [0, 1, 2], ids=["first", "middle", "last"])
async def test_failing_write_does_not_undo_its_batch(log: SqliteRoomLog, where: int) -> None:
    """A write that raises is rolled back alone, wherever it is in its batch; the
    rest of the batch commits, each write once, with the results it would have had."""
    store = log.store

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO log_rooms (room, last_seq) VALUES ('half', 0)")
        raise ValueError("boom")

    gate = Gate(store)
    await gate.close()
    writes: list[Awaitable[object]] = [
        log.append(ROOM, "c1", [pending("a")], 0),
        log.append(ROOM, "c2", [pending("b")], 1),
    ]
    writes.insert(where, store.write(half_then_fail))
    tasks = await queued(store, *writes)
    failing = tasks.pop(where)
    await gate.open()
    results = [await t for t in tasks]
    assert [r.last_seq for r in results if isinstance(r, Appended)] == [1, 2]
    with pytest.raises(ValueError, match="boom"):
        await failing
    assert await log.last_seq(ROOM) == 2
    assert (
        await store.read(
            lambda conn: conn.execute("SELECT 1 FROM log_rooms WHERE room='half'").fetchone()
        )
        is None
    )


async def test_a_batch_without_failures_runs_without_savepoints(log: SqliteRoomLog) -> None:
    """Jobs of a batch where none fails run back to back: no savepoint per job."""
    store = log.store
    statements: list[str] = []

    def trace_on(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)

    def trace_off(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(None)

    gate = Gate(store)
    await gate.close()
    tasks = await queued(
        store,
        store.write(trace_on),
        *(log.append(ROOM, f"c{i}", [pending("a")], i) for i in range(3)),
        store.write(trace_off),
    )
    await gate.open()
    await asyncio.gather(*tasks)
    assert await log.last_seq(ROOM) == 3
    assert sum("INSERT INTO log_events" in s for s in statements) == 3
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]


async def test_failed_commit_fails_the_whole_batch(log: SqliteRoomLog) -> None:
    """If the batch's transaction cannot commit, no write of it is applied or acked."""
    store = log.store

    def sabotage(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # ends the batch's transaction under the writer's feet

    gate = Gate(store)
    await gate.close()
    append, broken = await queued(
        store, log.append(ROOM, "c1", [pending("a")], 0), store.write(sabotage)
    )
    await gate.open()
    with pytest.raises(LogWriteError):
        await append
    with pytest.raises(LogWriteError):
        await broken
    assert await log.last_seq(ROOM) == 0
    result = await log.append(ROOM, "c1", [pending("a")], 0)  # the store goes on
    assert isinstance(result, Appended)


async def test_a_full_disk_fails_the_batch_with_its_real_cause(log: SqliteRoomLog) -> None:
    """When SQLite rolls a batch back itself (disk full), its writes fail with that
    cause, not a "no such savepoint" from undoing one job; the store goes on."""
    store = log.store
    await log.append(ROOM, "c0", [pending("a")], 0)

    def fill_up(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await store.write(fill_up)
    with pytest.raises(LogWriteError) as failed:
        await log.append(ROOM, "c1", [pending("x" * 200_000)], 1)
    assert "full" in str(failed.value)
    assert "savepoint" not in str(failed.value)
    await store.write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    assert isinstance(await log.append(ROOM, "c2", [pending("b")], 1), Appended)


async def test_reads_do_not_wait_for_the_writer(log: SqliteRoomLog) -> None:
    """While the writer thread is busy, reads are served from the committed state."""
    await log.append(ROOM, "c1", [pending("a")], 0)
    gate = Gate(log.store)
    await gate.close()
    try:
        assert await log.last_seq(ROOM) == 1
        events = await log.read_since(ROOM, 0, 10)
        assert events is not None
        assert [e.seq for e in events] == [1]
    finally:
        await gate.open()


async def test_cancelled_append_is_still_applied_once(log: SqliteRoomLog) -> None:
    """Cancelling a queued append does not withdraw it; its resend is a Duplicate (H1)."""
    store = log.store
    gate = Gate(store)
    await gate.close()
    (task,) = await queued(store, log.append(ROOM, "c1", [pending("a")], 0))
    task.cancel()
    await gate.open()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await log.append(ROOM, "c1", [pending("a")], 0) == Duplicate(first_seq=1, last_seq=1)


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    """close() commits every write queued before it, then stops (H4)."""
    path = tmp_path / "livepilot.db"
    log = await SqliteRoomLog.open(path)
    gate = Gate(log.store)
    await gate.close()
    tasks = await queued(
        log.store, *(log.append(f"room-{i}", "c1", [pending("a")], 0) for i in range(5))
    )
    closing = asyncio.create_task(log.close())
    await gate.open()
    await closing
    assert all(isinstance(t.result(), Appended) for t in tasks)
    with pytest.raises(LogClosedError):
        await log.append(ROOM, "c2", [pending("b")], 0)
    reopened = await SqliteRoomLog.open(path)
    try:
        assert [await reopened.last_seq(f"room-{i}") for i in range(5)] == [1] * 5
    finally:
        await reopened.close()


async def test_shared_store_outlives_the_log(tmp_path: Path) -> None:
    """A log on a shared store leaves it open on close (other modules use it too)."""
    async with SqliteStore(tmp_path / "s.db") as store:
        log = SqliteRoomLog(store)
        await log.append(ROOM, "c1", [pending("a")], 0)
        await log.close()
        assert (
            await store.read(
                lambda conn: conn.execute("SELECT count(*) FROM log_events").fetchone()[0]
            )
            == 1
        )


async def test_large_trim_runs_in_steps(log: SqliteRoomLog) -> None:
    """A trim bigger than one step deletes in several writes, with the same outcome (H3)."""
    log.trim_chunk = 3
    for i in range(1, 16):
        await log.append(ROOM, f"c{i}", [pending(f"p{i}")], i - 1)
    await log.save_snapshot(ROOM, RoomState(room=ROOM, creator="creator-1", seq=10))
    batches = log.store.stats.batches
    assert await log.trim(ROOM, 100) == 10
    assert log.store.stats.batches - batches == 4  # 3 + 3 + 3 + 1
    assert await log.read_since(ROOM, 9, 10) is None
    events = await log.read_since(ROOM, 10, 10)
    assert events is not None
    assert [e.seq for e in events] == [11, 12, 13, 14, 15]
    assert await log.lookup_command(ROOM, "c10") is None
    assert await log.lookup_command(ROOM, "c11") == Duplicate(first_seq=11, last_seq=11)


async def test_a_record_that_does_not_decode_is_named_not_raised_raw(
    log: SqliteRoomLog,
) -> None:
    """An event or snapshot whose stored bytes are garbage, or break a bound, raises
    CorruptRecordError naming the room, the kind and the seq; the others still read."""
    # H6 (defence in depth: a stored record never turns into a crash loop)
    for i in range(1, 4):
        await log.append(ROOM, f"c{i}", [pending(f"p{i}")], i - 1)
    await log.save_snapshot(ROOM, RoomState(room=ROOM, creator="creator-1", seq=1))
    # Seq 2: not MessagePack at all. The snapshot: valid MessagePack, a seq out of bounds.
    bad_state = msgspec.msgpack.encode({"room": ROOM, "creator": "creator-1", "seq": -1})
    await log.store.write(
        lambda conn: (
            conn.execute("UPDATE log_events SET data = ? WHERE seq = 2", (b"\xc1garbage",)),
            conn.execute("UPDATE log_snapshots SET data = ?", (bad_state,)),
        )
    )
    with pytest.raises(CorruptRecordError) as broken:
        await log.read_since(ROOM, 0, 10)
    assert (broken.value.room, broken.value.kind, broken.value.seq) == (ROOM, "event", 2)
    events = await log.read_since(ROOM, 2, 10)
    assert events is not None
    assert [e.seq for e in events] == [3]
    with pytest.raises(CorruptRecordError) as snapshot:
        await log.load_snapshot(ROOM)
    assert (snapshot.value.kind, snapshot.value.seq) == ("snapshot", None)
    assert "$.seq" in str(snapshot.value)


# --- a real crash -----------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from server.log.base import Appended
    from server.log.sqlite import SqliteRoomLog
    from tests.log.conftest import pending

    async def writer(log, room):
        seq, i = 0, 0
        while True:
            i += 1
            result = await log.append(room, f"{room}-c{i}", [pending(f"p{i}")], seq)
            assert isinstance(result, Appended), result
            seq = result.last_seq
            print("ack", room, f"{room}-c{i}", seq, flush=True)  # only after the append returned

    async def main():
        log = await SqliteRoomLog.open(sys.argv[1])
        print("ready", flush=True)
        await asyncio.gather(*(writer(log, f"room-{k}") for k in range(4)))

    asyncio.run(main())
    """
)


async def test_acked_appends_survive_sigkill(tmp_path: Path) -> None:
    """A process killed with SIGKILL mid-stream loses no append it had acked (H4)."""
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    acked: list[tuple[str, str, int]] = []

    def take(text: str) -> None:
        parts = text.split()
        if len(parts) == 4:  # a line cut short by the kill was never a whole ack
            acked.append((parts[1], parts[2], int(parts[3])))

    try:
        with anyio.fail_after(60):
            assert await proc.stdout.readline() == b"ready\n", await proc.stderr.read()
            while len(acked) < 300:  # kill it in full flow, writers mid-append
                raw = await proc.stdout.readline()
                assert raw, await proc.stderr.read()
                take(raw.decode())
            proc.send_signal(signal.SIGKILL)
            # Acks printed before the kill are acks too: read the pipe to its end.
            for text in (await proc.stdout.read()).decode().splitlines():
                take(text)
            assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    log = await SqliteRoomLog.open(path)
    try:
        for room in sorted({r for r, _, _ in acked}):
            events = await log.read_since(room, 0, 100_000)
            assert events is not None
            assert [e.seq for e in events] == list(range(1, len(events) + 1))  # H2
            stored = {e.seq: e.command_id for e in events}
            for command_id, seq in ((c, s) for r, c, s in acked if r == room):
                assert stored.get(seq) == command_id, (room, seq)  # H4
                dup = await log.append(room, command_id, [pending("again")], 0)
                assert dup == Duplicate(first_seq=seq, last_seq=seq)  # H1 after restart
    finally:
        await log.close()
