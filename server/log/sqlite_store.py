"""The SQLite data file: one group-committing writer thread and a reader pool.

:class:`SqliteStore` owns the data file (WAL mode, single node, durable). Every
write runs on ONE dedicated writer thread with *group commit*: the thread takes
every write queued since its last commit (up to ``max_batch``), runs them in one
transaction - one failing write does not undo the others - commits once, and
only then resolves each caller's future. Under load one fsync covers hundreds of
writes; an idle store commits each write at once (no batching delay). Reads run
on a small pool of read-only connections in worker threads (WAL readers never
block the writer, nor it them). The event loop never blocks on SQLite. The room
log (:mod:`server.log.sqlite`) and other modules (grants, notifications, audit)
use the same store and writer through :meth:`SqliteStore.write` /
:meth:`SqliteStore.read`, and add their tables to :mod:`server.log.schema`.

Durability (H4). ``synchronous=FULL`` (the default) fsyncs the WAL at every
commit, so an acknowledged append survives a kill -9 *and* a power loss of the
machine; with group commit the fsync is paid once per batch, so FULL costs
little under load. ``NORMAL`` (fsync only at checkpoints: the last commits can
be lost on power loss) stays an explicit option, e.g. for disposable demo nodes.

asyncio only: futures are resolved with ``loop.call_soon_threadsafe``. A task
cancelled while its write is queued does not withdraw the write: it is applied
(and durable) or fails as if awaited; the caller just does not see the result.
A client resend then gets :class:`~server.log.base.Duplicate` (H1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import anyio

from server.log.base import LogClosedError, LogError, LogWriteError
from server.log.schema import SCHEMA, Migration, migrate
from server.log.wal import ReadGate, WalBound

__all__ = [
    "DEFAULT_MAX_BATCH",
    "WAL_LIMIT_BYTES",
    "SqliteStore",
    "StoreStats",
    "Synchronous",
    "Then",
]

T = TypeVar("T")
Synchronous = Literal["FULL", "EXTRA", "NORMAL"]
DEFAULT_MAX_BATCH: Final = 1024
BUSY_TIMEOUT_MS: Final = 10_000
JOURNAL_SIZE_LIMIT: Final = 64 * 1024 * 1024
# Measured with the durable load test (docs/benchmarks.md): with SQLite's defaults
# (a 2 MB page cache, a checkpoint every 1,000 WAL pages) the writer re-read
# evicted pages and copied the WAL back into the file every few group commits.
WRITER_CACHE_KIB: Final = 64 * 1024
"""The writer's page cache (it holds the hot pages of every live room)."""
WAL_AUTOCHECKPOINT_PAGES: Final = 20_000
"""WAL pages (~80 MB) between automatic checkpoints (then truncated to the limit above)."""
WAL_LIMIT_BYTES: Final = 128 * 1024 * 1024
"""The bound on the ``-wal`` file (plus one batch): past it the writer forces a TRUNCATE
checkpoint, since readers can starve the passive one (:mod:`server.log.wal`)."""
MMAP_BYTES: Final = 256 * 1024 * 1024
"""Reads through a memory map rather than read() calls (every connection)."""

Then = Callable[[], None]
"""Called on the event loop once a write's future is done: in the callback that resolves
its batch, after every future of the batch is resolved."""
_Outcome = tuple["asyncio.Future[Any]", object, BaseException | None, Then | None]
logger = logging.getLogger("livepilot.store")


class _Job:
    """One write waiting for the writer thread."""

    __slots__ = ("fn", "future", "loop", "then")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], object],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        then: Then | None = None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop
        self.then = then


class _Stop:
    """Tells the writer thread to finish what is queued before it and exit."""

    __slots__ = ()


def _deliver(outcomes: list[_Outcome]) -> None:
    """On the event loop: resolve the futures of one committed batch, then call
    their ``then``s (a future's own done callbacks would run one turn of the loop
    later, and a turn is milliseconds under load)."""
    for future, result, exc, _ in outcomes:
        if not future.done():  # else: the awaiting task was cancelled
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
    # Every future first: a ``then`` sees all of the batch done (the hub publishes a
    # room's completed appends together, one write per member).
    for _, _, _, then in outcomes:
        if then is not None:
            try:
                then()
            except Exception:  # one caller's bug must not strand the rest of the batch
                logger.exception("a write's completion callback failed")


def _post(loop: asyncio.AbstractEventLoop, outcomes: list[_Outcome]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(_deliver, outcomes)


class StoreStats:
    """Counters of the writer thread (read them from anywhere; for metrics)."""

    __slots__ = ("batches", "largest_batch", "writes")

    def __init__(self) -> None:
        self.batches = 0
        """Transactions committed (one fsync each with synchronous=FULL)."""
        self.writes = 0
        """Writes (e.g. appends) committed."""
        self.largest_batch = 0


class SqliteStore:
    """The SQLite data file: one group-committing writer thread and a reader pool.

    Start it (``await store.start()`` or ``async with store``), then call
    :meth:`write` and :meth:`read` from coroutines on one event loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        readers: int = 2,
        max_batch: int = DEFAULT_MAX_BATCH,
        migrations: Sequence[Migration] = SCHEMA,
        wal_checkpoint_pages: int = WAL_AUTOCHECKPOINT_PAGES,
        wal_limit_bytes: int = WAL_LIMIT_BYTES,
    ) -> None:
        if synchronous not in ("FULL", "EXTRA", "NORMAL"):
            raise ValueError(f"synchronous must be FULL, EXTRA or NORMAL, not {synchronous!r}")
        if readers < 1 or max_batch < 1:
            raise ValueError("readers and max_batch must be >= 1")
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ValueError("SqliteStore needs a file path (WAL and a reader pool)")
        self.synchronous: Synchronous = synchronous
        self.stats = StoreStats()
        self._wal_checkpoint_pages = wal_checkpoint_pages
        self.wal = WalBound(self.path, wal_limit_bytes)
        """The WAL's bound: ``wal.limit_bytes``, and how often it had to be forced."""
        self._readers_wanted = readers
        self._max_batch = max_batch
        self._migrations = tuple(migrations)
        self._queue: queue.SimpleQueue[_Job | _Stop] = queue.SimpleQueue()
        self._put_lock = threading.Lock()
        """Held to check-and-queue a write, and by a dying writer to set ``_failure``:
        no write can slip into the queue after the writer drained it for good."""
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._state: Literal["new", "running", "closed"] = "new"
        self._readers: list[sqlite3.Connection] = []
        self._idle_readers: list[sqlite3.Connection] = []
        self._read_slots = anyio.Semaphore(readers)

    # --- lifecycle ----------------------------------------------------------

    def _connect(self, *, reader: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=not reader, timeout=10.0
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            if reader:
                conn.execute("PRAGMA query_only = ON")
            else:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LogError(f"{self.path}: cannot use WAL mode (got {mode!r})")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                # After a checkpoint the WAL restarts and is cut back to this size.
                limit = min(JOURNAL_SIZE_LIMIT, self.wal.limit_bytes // 2)
                conn.execute(f"PRAGMA journal_size_limit = {limit}")
                conn.execute(f"PRAGMA wal_autocheckpoint = {int(self._wal_checkpoint_pages)}")
                conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
                conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    async def start(self) -> None:
        """Open the file (creating and migrating it), start the writer and readers."""
        if self._state != "new":
            raise LogError("a store starts once")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._writer_main,
            args=(loop, ready),
            name=f"sqlite-writer:{self.path}",
            daemon=True,
        )
        self._thread.start()
        try:
            await ready
            for _ in range(self._readers_wanted):
                conn = await anyio.to_thread.run_sync(lambda: self._connect(reader=True))
                self._readers.append(conn)
        except BaseException:
            self._state = "running"  # so that close() tears down whatever was set up
            await self.close()
            raise
        self._idle_readers = list(self._readers)
        self._state = "running"

    async def close(self) -> None:
        """Finish every write already queued, then stop the writer and the readers.

        Idempotent; runs to completion even if the caller is cancelled.
        """
        if self._state == "closed":
            return
        was_running = self._state == "running"
        self._state = "closed"
        with anyio.CancelScope(shield=True):
            if was_running:
                for _ in range(self._readers_wanted):  # wait for reads in flight
                    await self._read_slots.acquire()
                for conn in self._readers:
                    conn.close()
                self._readers.clear()
                self._idle_readers.clear()
                for _ in range(self._readers_wanted):  # waiters see "closed"
                    self._read_slots.release()
            thread = self._thread
            if thread is not None:
                # The writer commits what is queued before the stop, then exits;
                # joining also returns at once if it had died.
                self._queue.put(_Stop())
                await anyio.to_thread.run_sync(thread.join)
                self._thread = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._state != "running":
            raise LogClosedError(f"the store {self.path} is {self._state}")
        if self._failure is not None:
            raise LogWriteError(f"the writer thread of {self.path} died") from self._failure

    # --- the two ways in ----------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread inside a transaction; return once committed.

        If ``fn`` raises, its changes are rolled back and the exception is
        raised here; the rest of the batch commits. If the commit itself fails,
        nothing of the batch is applied and :class:`LogWriteError` is raised.
        ``fn`` must not commit, must be quick (it delays every write behind it),
        must not touch the event loop, and must depend on nothing but the
        database: when a write of its batch fails, it runs again.
        """
        return await self.write_soon(fn)

    def write_soon(
        self, fn: Callable[[sqlite3.Connection], T], *, then: Then | None = None
    ) -> asyncio.Future[T]:
        """:meth:`write`, queued now: the future is done once committed (or failed).

        Writes queued by successive calls run in that order. For callers that
        need no coroutine (and no task) per write, e.g. the hub's appends.
        ``then`` is called once the future is done: in the callback that resolves
        it, after every future of its batch is resolved (or, a store already
        closed, from a done callback).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._put_lock:
            try:
                self._check_open()
            except LogError as e:
                future.set_exception(e)
                if then is not None:
                    future.add_done_callback(lambda _: then())
                return future
            self._queue.put(_Job(fn, future, loop, then))
        return future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a read-only connection in a worker thread, in one read
        transaction (a consistent view of the last commits)."""
        self._check_open()
        async with self._read_slots:
            self._check_open()
            conn = self._idle_readers.pop()
            try:
                return await anyio.to_thread.run_sync(_read_txn, conn, fn, self.wal.gate)
            finally:
                self._idle_readers.append(conn)

    # --- the writer thread --------------------------------------------------

    def _writer_main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect(reader=False)
            try:
                migrate(conn, self._migrations)
            except BaseException:
                conn.close()
                raise
        except BaseException as exc:
            _post(loop, [(ready, None, exc, None)])
            return
        _post(loop, [(ready, None, None, None)])
        stop = False
        batch: list[_Job] = []
        try:
            while not stop:
                batch = []
                item = self._queue.get()
                while True:
                    if isinstance(item, _Stop):
                        stop = True
                        break
                    batch.append(item)
                    if len(batch) >= self._max_batch:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._commit(conn, batch)
                    batch = []
                    self.wal.after_commit(conn)
        except BaseException as exc:  # a bug in the writer loop, or a job's BaseException
            with self._put_lock:
                self._failure = exc
            # The batch in hand was neither committed nor answered: answer it now.
            error = LogWriteError(f"the writer thread of {self.path} died")
            error.__cause__ = exc
            for job in batch:
                _post(job.loop, [(job.future, None, error, job.then)])
            raise
        finally:
            self._shutdown(conn)

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """One transaction for the whole batch, then resolve every future.

        Jobs first run back to back with no savepoint of their own (two statements
        per job saved: a job rarely fails). If one raises, the transaction is
        rolled back and the batch runs again, each job in its own savepoint, so
        only the failing ones are undone. A job may thus run twice; it depends on
        nothing but the database (see :meth:`write`).
        """
        outcomes: list[tuple[_Job, object, BaseException | None]]
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = self._run_together(conn, batch)
            if any(error is not None for _, _, error in outcomes):
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = self._run_isolated(conn, batch)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            outcomes = [(job, None, _write_error(exc)) for job in batch]
        else:
            self.stats.batches += 1
            self.stats.writes += len(batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for job, result, error in outcomes:
            by_loop.setdefault(job.loop, []).append((job.future, result, error, job.then))
        for loop, items in by_loop.items():
            _post(loop, items)

    @staticmethod
    def _run_together(
        conn: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[_Job, object, BaseException | None]]:
        """Run the jobs in the open transaction; stop at the first that raises."""
        outcomes: list[tuple[_Job, object, BaseException | None]] = []
        for job in batch:
            try:
                outcomes.append((job, job.fn(conn), None))
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # SQLite rolled everything back itself (a full disk, an I/O error)
                return [(job, None, exc)]
        return outcomes

    @staticmethod
    def _run_isolated(
        conn: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[_Job, object, BaseException | None]]:
        """Run each job in its own savepoint: one that raises is undone alone."""
        outcomes: list[tuple[_Job, object, BaseException | None]] = []
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back itself (a full disk,
                    # an I/O error): the batch is lost, and this is why.
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((job, None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((job, result, None))
        return outcomes

    def _shutdown(self, conn: sqlite3.Connection) -> None:
        """Fail whatever is still queued (only after a writer failure), checkpoint, close."""
        leftovers: list[_Job] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Job):
                leftovers.append(item)
        for job in leftovers:
            _post(job.loop, [(job.future, None, LogClosedError("the store was closed"), job.then)])
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        finally:
            conn.close()


def _write_error(exc: Exception) -> LogWriteError:
    error = LogWriteError(f"write not committed: {exc}")
    error.__cause__ = exc
    return error


def _read_txn(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], gate: ReadGate) -> T:
    with gate.reading():
        conn.execute("BEGIN")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
