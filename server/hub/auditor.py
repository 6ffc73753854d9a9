"""The audit trail (R16): where each kind of entry is kept, and the trail read whole.

An applied command's audit record travels with its append (a
:class:`~server.log.base.CommandRecord` kept in the room log with the command's
idempotency key, decision 0009): acked means on the trail, at no write of its
own. Everything else - refusals (written before the client hears of them, R10),
access actions - is an :class:`~server.journal.AuditEntry` in the journal.
:meth:`Auditor.trail` reads both as one trail.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

from server.journal import AuditEntry, AuditQuery, Journal
from server.log.base import RoomLog

__all__ = ["Auditor"]


class Auditor:
    """Writes the journal's audit entries; reads the whole trail."""

    def __init__(self, journal: Journal, log: RoomLog) -> None:
        self.journal = journal
        self.log = log

    async def write(self, entries: Sequence[AuditEntry]) -> None:
        """Write entries to the journal, durably when this returns."""
        await self.journal.audit(entries)

    async def trail(self, query: AuditQuery) -> list[AuditEntry]:
        """The creator's trail matching ``query``: the journal's entries and the
        room's applied commands, newest first, at most ``query.limit``."""
        entries = await self.journal.query_audit(query)
        applied = await self.log.applied(query.creator, query)  # the same filters
        commands = [
            AuditEntry(
                at=a.record.at,
                creator=query.creator,
                actor=a.record.by,
                family=a.record.family,
                action=a.record.action,
                command_id=a.command_id,
                seq=a.last_seq,
            )
            for a in applied
        ]
        merged = heapq.merge(entries, commands, key=lambda e: e.at, reverse=True)
        return list(itertools.islice(merged, max(query.limit, 0)))
