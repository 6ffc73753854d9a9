"""The baselines' durable store: SQLite in WAL mode, ``synchronous=FULL``, group commit.

The same durability livepilot's embedded store gives an ack (one fsync of the
WAL per commit, many writes per commit under load), written as plainly as
Python allows: one writer thread takes every queued append, inserts them in one
transaction, commits, then resolves the callers' futures on the event loop.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from typing import Final

__all__ = ["GroupCommitStore"]

MAX_BATCH: Final = 1024


class GroupCommitStore:
    """Append payloads durably; :meth:`append` returns once the commit is on disk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[tuple[bytes, asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    async def append(self, payload: bytes) -> None:
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((payload, fut))
        await fut

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, payload BLOB)")
        assert self._loop is not None
        loop = self._loop
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO log (payload) VALUES (?)", [(p,) for p, _ in batch])
            conn.execute("COMMIT")
            loop.call_soon_threadsafe(_resolve, [f for _, f in batch])
        conn.close()


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)
