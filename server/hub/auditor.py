"""Audit entries written in batches, off the command path.

An acked command's audit entry need not delay the next command of its
connection: :meth:`Auditor.record` queues it and :meth:`Auditor.run` (a task
owned by the runtime's task group) writes everything queued in one batch. A
refusal is written before the client hears of it (:meth:`Auditor.write`), and a
reader of the trail calls :meth:`Auditor.flushed` first, so what was acked is
on the trail when anyone looks (R16). Without a running writer (tests that build
a hub alone), :meth:`record` entries wait for :meth:`flushed`, which writes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from server.journal import AuditEntry, Journal

__all__ = ["Auditor"]


class Auditor:
    """Queues audit entries and writes them in batches."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._queue: list[AuditEntry] = []
        self._wakeup = anyio.Event()
        self._lock = anyio.Lock()

    def record(self, entry: AuditEntry) -> None:
        """Queue an entry; it is written with the next batch."""
        self._queue.append(entry)
        self._wakeup.set()

    async def write(self, entries: Sequence[AuditEntry]) -> None:
        """Write entries now (after whatever is queued), durably when this returns."""
        await self.flushed()
        await self.journal.audit(entries)

    async def flushed(self) -> None:
        """Return once every entry recorded so far is written."""
        async with self._lock:
            await self._write_queued()

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            await self.journal.audit(batch)

    async def run(self) -> None:
        """Write queued entries as they come, until cancelled (then write the rest)."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                async with self._lock:
                    await self._write_queued()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flushed()
