"""The audit trail and the creator's notification inbox, behind one interface.

The hub and the HTTP API write here; the creator reads it (R14, R16). Two
implementations: :class:`MemoryJournal` here (tests, reference) and the SQLite
one on the embedded store (:mod:`server.store`), running the same contract tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from msgspec import Struct
from msgspec.structs import replace

from protocol.messages import Notification
from protocol.model import Actor
from server.log.base import AppliedQuery

__all__ = ["AuditEntry", "AuditQuery", "Journal", "MemoryJournal"]


class AuditEntry(Struct, frozen=True, kw_only=True):
    """One action attempted on a creator's room or access, with its real actor (R16)."""

    at: int
    creator: str
    actor: Actor
    family: str
    """Command family (``live``, ``bag``...), or ``access`` / ``session``."""
    action: str
    """The command's ``type`` tag, or the access/session action."""
    command_id: str | None = None
    code: int | None = None
    """None when applied; the refusal code otherwise."""
    seq: int | None = None
    """The room seq the action reached, when applied."""


class AuditQuery(AppliedQuery, frozen=True, kw_only=True):
    """Filters of the audit trail: the creator's, and every given filter must match."""

    creator: str

    def matches(self, e: AuditEntry) -> bool:
        """Whether an entry passes every filter (the memory journal's query)."""
        return e.creator == self.creator and self.passes(e.at, e.actor, e.family)


class Journal(Protocol):
    """Durable audit trail and notification inbox."""

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Record entries, durably when this returns."""
        ...

    async def notify(self, notes: Sequence[Notification]) -> None:
        """Store notifications in their creators' inboxes (idempotent per id)."""
        ...

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching ``query``, newest first, at most ``query.limit``."""
        ...

    async def inbox(
        self, creator: str, *, unread_only: bool = False, limit: int = 100
    ) -> list[Notification]:
        """The creator's notifications, newest first."""
        ...

    async def mark_read(self, creator: str, ids: Sequence[str]) -> int:
        """Mark notifications read; returns how many changed."""
        ...


class MemoryJournal:
    """A :class:`Journal` in memory."""

    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []
        self._notes: dict[str, Notification] = {}

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        self._audit.extend(entries)

    async def notify(self, notes: Sequence[Notification]) -> None:
        for note in notes:
            self._notes.setdefault(f"{note.creator}/{note.notification_id}", note)

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        found = [e for e in reversed(self._audit) if query.matches(e)]
        return found[: query.limit]

    async def inbox(
        self, creator: str, *, unread_only: bool = False, limit: int = 100
    ) -> list[Notification]:
        notes = [
            n
            for n in reversed(self._notes.values())
            if n.creator == creator and not (unread_only and n.read)
        ]
        return notes[:limit]

    async def mark_read(self, creator: str, ids: Sequence[str]) -> int:
        changed = 0
        for nid in ids:
            key = f"{creator}/{nid}"
            note = self._notes.get(key)
            if note is not None and not note.read:
                self._notes[key] = replace(note, read=True)
                changed += 1
        return changed
