"""Audit entries written in batches, off the command path."""

from __future__ import annotations

import anyio

from protocol.model import Actor
from server.hub.auditor import Auditor
from server.journal import AuditEntry, AuditQuery, MemoryJournal

ACTOR = Actor(role="staff", id="st", agency="ag")


def entry(n: int, code: int | None = None) -> AuditEntry:
    return AuditEntry(at=n, creator="cr", actor=ACTOR, family="bag", action="bag_pin",
                      command_id=f"c{n}", code=code)


class CountingJournal(MemoryJournal):
    """Counts the writes (batches) it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def audit(self, entries: object) -> None:
        batch = list(entries)  # type: ignore[call-overload]
        self.batches.append(len(batch))
        await super().audit(batch)


async def test_recorded_entries_are_written_in_one_batch_by_the_runner() -> None:
    """Entries recorded together are written together by the running writer."""
    # R16
    journal = CountingJournal()
    auditor = Auditor(journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(auditor.run)
        for n in range(5):
            auditor.record(entry(n))
        await auditor.flushed()
        tg.cancel_scope.cancel()
    trail = await journal.query_audit(AuditQuery(creator="cr"))
    assert [e.command_id for e in trail] == [f"c{n}" for n in reversed(range(5))]
    assert sum(journal.batches) == 5
    assert len(journal.batches) == 1


async def test_a_refusal_is_written_after_what_was_queued_before_it() -> None:
    """write() flushes the queue first, so the trail keeps the order things happened in."""
    # R10 R16
    journal = CountingJournal()
    auditor = Auditor(journal)
    auditor.record(entry(1))
    await auditor.write([entry(2, code=201)])
    trail = await journal.query_audit(AuditQuery(creator="cr"))
    assert [(e.command_id, e.code) for e in trail] == [("c2", 201), ("c1", None)]


async def test_stopping_the_runner_writes_what_is_left() -> None:
    """Cancelling the writer (shutdown) still writes every queued entry."""
    # R16
    journal = CountingJournal()
    auditor = Auditor(journal)
    async with anyio.create_task_group() as tg:
        tg.start_soon(auditor.run)
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
        auditor.record(entry(9))
    assert [e.command_id for e in await journal.query_audit(AuditQuery(creator="cr"))] == ["c9"]
