"""The bound on the SQLite write-ahead log (decision 0019), kept by the writer thread.

SQLite's automatic checkpoint (every ``wal_autocheckpoint`` pages) is *passive*:
it copies only the frames no reader still needs, and the WAL restarts from its
beginning only when no reader holds an older snapshot. The reader pool runs
short transactions, but under load they overlap: there is always one reading an
older snapshot, the WAL never restarts, and it grows with every commit. Nor
would a blocking checkpoint alone help: SQLite's busy handler polls, and readers
that overlap without a gap never give it the instant it waits for.

So after each committed batch the writer looks at the ``-wal`` file's size and,
past :attr:`WalBound.limit_bytes`, closes the :class:`ReadGate` (reads about to
start wait; reads in flight finish), runs a ``TRUNCATE`` checkpoint (copies
everything back, truncates the WAL to zero bytes) and opens the gate again.
This works because every reader of the file is the store's own: the data path
is locked to one process (:mod:`server.startup`). In normal operation the
passive checkpoint keeps the WAL between ``journal_size_limit`` and about
``wal_autocheckpoint`` pages, below the limit, and this never runs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ReadGate", "WalBound"]

logger = logging.getLogger("livepilot.store")


class ReadGate:
    """Read transactions pass; the writer may close it to wait until none is open."""

    __slots__ = ("_active", "_closed", "_cond")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._closed = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around one read transaction (in a worker thread): waits while the gate is closed."""
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    @contextmanager
    def closed(self) -> Iterator[None]:
        """No read transaction is open inside; new ones wait until it exits."""
        with self._cond:
            self._closed = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


class WalBound:
    """Keeps a data file's ``-wal`` under ``limit_bytes`` (plus one batch)."""

    __slots__ = ("_next_check", "forced", "gate", "limit_bytes", "wal_path")

    def __init__(self, data_path: str, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("the WAL limit must be positive")
        # SQLite puts the WAL next to the real file when the path is a symlink.
        self.wal_path = os.path.realpath(data_path) + "-wal"
        self.limit_bytes = limit_bytes
        self.gate = ReadGate()
        """The store's readers pass it around each read transaction."""
        self.forced = 0
        """TRUNCATE checkpoints run because the WAL passed the limit."""
        self._next_check = limit_bytes

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, after a commit: checkpoint if the WAL is past the limit."""
        try:
            size = os.stat(self.wal_path).st_size  # a stat, ~1 us: cheap enough per batch
        except OSError:
            return
        if size <= self._next_check:
            return
        self.forced += 1
        with self.gate.closed():
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error:
                logger.exception("a WAL checkpoint failed", extra={"wal_bytes": size})
                busy = 1
        if busy:  # only a reader outside the store (e.g. an sqlite3 shell) can do this
            logger.warning(
                "the WAL could not be truncated: another connection reads it",
                extra={"wal_bytes": size},
            )
            # Each try waits the busy timeout: not at every batch, after another limit.
            self._next_check = size + self.limit_bytes
        else:
            self._next_check = self.limit_bytes
