"""The journal and the access events on the embedded SQLite store.

:class:`SqliteJournal` is the :class:`~server.journal.Journal` (audit trail,
R16; creator inbox, R14/R15) and :class:`SqliteAccessEventStore` the
:class:`~server.access_service.AccessEventStore` (R1-R9), both on the node's
one :class:`~server.log.sqlite_store.SqliteStore`: every write goes through its
group-committing writer thread, so it is durable when the call returns, and
every read runs on its reader pool. Tables: migrations 2 and 3 of
:mod:`server.log.schema`.

* ``journal_audit``: one row per entry - refusals and access actions; a command
  applied since schema 4 is recorded in the room log instead (decision 0009;
  :class:`~server.hub.auditor.Auditor` reads both) - with the actor split into columns
  (``role``, ``actor``, ``agency``, ``staff`` - the actor's id when a staff
  member, else NULL) so every :class:`~server.journal.AuditQuery` filter is a
  column test; indexed by (creator, at) and (creator, agency, at) (a staff
  filter without the agency scans the creator's trail: decision 0008). Newest
  first is ``at`` descending, then insertion order
  descending (as :class:`~server.journal.MemoryJournal` when ``at`` never goes
  back).
* ``journal_notifications``: the :class:`~protocol.messages.Notification`
  MessagePack-encoded, unique per (creator, notification_id) - a second
  ``notify`` with the same id is ignored, the first one (and its read flag)
  stays. ``read`` is a column (the blob's own flag is overridden when read).
* ``access_events``: each :data:`~protocol.access.AccessEvent` MessagePack-
  encoded, autoincrement id = order.

Encoding happens on the caller's side, before the write is queued: a value
that cannot be encoded raises there and nothing is written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

import msgspec

from protocol.access import AccessEvent
from protocol.messages import Notification
from protocol.model import Actor
from server.journal import AuditEntry, AuditQuery
from server.log.sqlite import clamp_int64, trail_filters
from server.log.sqlite_store import SqliteStore

__all__ = ["SqliteAccessEventStore", "SqliteJournal"]


_INSERT_AUDIT: Final = (
    "INSERT INTO journal_audit (creator, at, role, actor, agency, staff, family, action,"
    " command_id, code, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_AUDIT: Final = (
    "SELECT at, creator, role, actor, agency, family, action, command_id, code, seq"
    " FROM journal_audit WHERE creator = ?"
)
_INSERT_NOTE: Final = (
    "INSERT OR IGNORE INTO journal_notifications (creator, notification_id, read, data)"
    " VALUES (?, ?, ?, ?)"
)
_MARK_READ: Final = (
    "UPDATE journal_notifications SET read = 1"
    " WHERE creator = ? AND notification_id = ? AND read = 0"
)


def _audit_row(e: AuditEntry) -> tuple[object, ...]:
    actor = e.actor
    staff = actor.id if actor.role == "staff" else None
    return (
        e.creator,
        e.at,
        actor.role,
        actor.id,
        actor.agency,
        staff,
        e.family,
        e.action,
        e.command_id,
        e.code,
        e.seq,
    )


class SqliteJournal:
    """A :class:`~server.journal.Journal` in a :class:`SqliteStore` (shared, not owned)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode_note = msgspec.msgpack.Decoder(Notification).decode

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Record entries; durable when this returns."""
        rows = [_audit_row(e) for e in entries]
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_AUDIT, rows)

        await self.store.write(op)

    async def notify(self, notes: Sequence[Notification]) -> None:
        """Store notifications; an id already in the creator's inbox is ignored."""
        rows = [(n.creator, n.notification_id, int(n.read), self._encode(n)) for n in notes]
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_NOTE, rows)

        await self.store.write(op)

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching every filter of ``query``, newest first, at most ``limit``."""
        if query.limit <= 0:
            return []
        filters, values = trail_filters(query, staff="AND staff = ?")
        sql = [_SELECT_AUDIT, *filters, "ORDER BY at DESC, id DESC LIMIT ?"]
        args = [query.creator, *values, clamp_int64(query.limit)]
        text = " ".join(sql)

        def op(conn: sqlite3.Connection) -> list[AuditEntry]:
            return [
                AuditEntry(
                    at=at, creator=creator, actor=Actor(role=role, id=actor, agency=agency),
                    family=family, action=action, command_id=command_id, code=code, seq=seq,
                )
                for at, creator, role, actor, agency, family, action, command_id, code, seq
                in conn.execute(text, args)
            ]  # fmt: skip

        return await self.store.read(op)

    async def inbox(
        self, creator: str, *, unread_only: bool = False, limit: int = 100
    ) -> list[Notification]:
        """The creator's notifications, newest first (arrival order)."""
        if limit <= 0:
            return []
        where = "creator = ? AND read = 0" if unread_only else "creator = ?"
        text = (
            f"SELECT read, data FROM journal_notifications WHERE {where} ORDER BY id DESC LIMIT ?"
        )
        decode = self._decode_note

        def op(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            return list(conn.execute(text, (creator, clamp_int64(limit))))

        rows = await self.store.read(op)
        notes: list[Notification] = []
        for read, data in rows:
            note = decode(data)
            if note.read != bool(read):
                note = msgspec.structs.replace(note, read=bool(read))
            notes.append(note)
        return notes

    async def mark_read(self, creator: str, ids: Sequence[str]) -> int:
        """Mark the creator's notifications read; returns how many changed."""
        wanted = list(ids)
        if not wanted:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            return sum(conn.execute(_MARK_READ, (creator, nid)).rowcount for nid in wanted)

        return await self.store.write(op)


class SqliteAccessEventStore:
    """An :class:`~server.access_service.AccessEventStore` in a :class:`SqliteStore`."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._encode = msgspec.msgpack.Encoder().encode
        self._decoder: msgspec.msgpack.Decoder[AccessEvent] = msgspec.msgpack.Decoder(AccessEvent)

    async def load_access_events(self) -> list[AccessEvent]:
        """Every stored access event, oldest first."""

        def op(conn: sqlite3.Connection) -> list[bytes]:
            return [row[0] for row in conn.execute("SELECT data FROM access_events ORDER BY id")]

        decode = self._decoder.decode
        return [decode(data) for data in await self.store.read(op)]

    async def append_access_events(self, events: Sequence[AccessEvent]) -> None:
        """Store events in order; durable when this returns (all of them or none)."""
        rows = [(self._encode(e),) for e in events]
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT INTO access_events (data) VALUES (?)", rows)

        await self.store.write(op)
