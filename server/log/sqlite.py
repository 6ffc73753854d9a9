"""The embedded room log: the :class:`~server.log.base.RoomLog` on a SQLite store.

:class:`SqliteRoomLog` keeps a room's events, idempotency keys and snapshot in
the tables of :mod:`server.log.schema`. Appends, snapshots and trims run as
writes on the store's writer thread (group commit: durable when they return,
H4); reads run on its reader pool. The store itself - the data file, the writer
thread, durability - is :mod:`server.log.sqlite_store` (:class:`SqliteStore`,
:class:`StoreStats` and :data:`Synchronous` are re-exported here).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Self

from protocol.messages import Event
from protocol.model import Actor, RoomState
from server.log.base import (
    Appended,
    AppendResult,
    AppliedCommand,
    AppliedQuery,
    CommandRecord,
    Conflict,
    Duplicate,
    GrantVersion,
    PendingEvent,
    Reused,
    RoomLogCodec,
    check_append_args,
    check_read_args,
    check_snapshot,
    stamp,
)
from server.log.keys import same_command
from server.log.sqlite_store import DEFAULT_MAX_BATCH, SqliteStore, StoreStats, Synchronous

__all__ = [
    "SqliteRoomLog",
    "SqliteStore",
    "StoreStats",
    "Synchronous",
    "clamp_int64",
    "trail_filters",
]

TRIM_CHUNK: Final = 2000

_SELECT_COMMAND: Final = (
    "SELECT first_seq, last_seq, digest, role, actor, agency, action"
    " FROM log_commands WHERE room = ? AND command_id = ?"
)
_SELECT_ROOM: Final = "SELECT last_seq, trimmed_seq FROM log_rooms WHERE room = ?"
_INSERT_EVENT: Final = "INSERT INTO log_events (room, seq, data) VALUES (?, ?, ?)"
_UPSERT_ROOM: Final = (
    "INSERT INTO log_rooms (room, last_seq) VALUES (?, ?)"
    " ON CONFLICT (room) DO UPDATE SET last_seq = excluded.last_seq"
)
_INSERT_COMMAND: Final = (
    "INSERT INTO log_commands (room, command_id, first_seq, last_seq, digest)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_RECORDED: Final = (
    "INSERT INTO log_commands (room, command_id, first_seq, last_seq, digest, at, role,"
    " actor, agency, family, action) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_APPLIED: Final = (
    "SELECT command_id, last_seq, at, role, actor, agency, family, action"
    " FROM log_commands WHERE room = ? AND at IS NOT NULL"
)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def clamp_int64(value: int) -> int:
    """A bound as SQLite can bind it (every stored time fits in 64 bits)."""
    return min(max(value, _INT64_MIN), _INT64_MAX)


def trail_filters(query: AppliedQuery, *, staff: str) -> tuple[list[str], list[object]]:
    """SQL conditions (each ``AND ...``) and their arguments for ``query``'s filters
    (an :class:`AppliedQuery`, or the audit trail's, which is one),
    on columns ``agency``, ``family``, ``at``; ``staff`` is the staff condition."""
    sql: list[str] = []
    args: list[object] = []
    for value, condition in (
        (query.agency, "AND agency = ?"),
        (query.staff, staff),
        (query.family, "AND family = ?"),
    ):
        if value is not None:
            sql.append(condition)
            args.append(value)
    for bound, condition in ((query.since, "AND at >= ?"), (query.until, "AND at < ?")):
        if bound is not None:
            sql.append(condition)
            args.append(clamp_int64(bound))
    return sql, args


_SELECT_EVENTS: Final = (
    "SELECT data FROM log_events WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_UPSERT_SNAPSHOT: Final = (
    "INSERT INTO log_snapshots (room, seq, data) VALUES (?, ?, ?)"
    " ON CONFLICT (room) DO UPDATE SET seq = excluded.seq, data = excluded.data"
    " WHERE excluded.seq >= log_snapshots.seq"
)


def _answer(
    row: tuple[Any, ...], digest: bytes | None, record: CommandRecord | None
) -> Duplicate | Reused:
    """What a command with a stored key's id gets (H1, decision 0016): ``row`` is
    the key's :data:`_SELECT_COMMAND` row."""
    first, last, stored_digest, role, actor, agency, action = row
    by = None if role is None else Actor(role=role, id=actor, agency=agency)
    if same_command(digest, record, stored_digest, by, action):
        return Duplicate(first_seq=first, last_seq=last)
    return Reused()


def _room_seqs(conn: sqlite3.Connection, room: str) -> tuple[int, int]:
    """(last_seq, trimmed_seq) of a room; (0, 0) for a room never written to."""
    row = conn.execute(_SELECT_ROOM, (room,)).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


class SqliteRoomLog:
    """A :class:`~server.log.base.RoomLog` in a :class:`SqliteStore`."""

    def __init__(self, store: SqliteStore, *, owns_store: bool = False) -> None:
        self.store = store
        self._owns_store = owns_store
        self._codec = RoomLogCodec()
        self.trim_chunk = TRIM_CHUNK
        """At most this many events are deleted per write by :meth:`trim`."""

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        readers: int = 2,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> SqliteRoomLog:
        """Start a store on ``path`` and a log that owns it (closing one closes both)."""
        store = SqliteStore(path, synchronous=synchronous, readers=readers, max_batch=max_batch)
        await store.start()
        return cls(store, owns_store=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """See :meth:`RoomLog.close`; a shared store is left open."""
        if self._owns_store:
            await self.store.close()

    # --- writes (on the writer thread) -----------------------------------------

    async def append(
        self,
        room: str,
        command_id: str | None,
        events: Sequence[PendingEvent],
        expected_seq: int,
        record: CommandRecord | None = None,
        *,
        digest: bytes | None = None,
        grant_version: GrantVersion | None = None,
    ) -> AppendResult:
        """See :meth:`RoomLog.append`; ``grant_version`` is ignored (one node: the
        access book it decided with is the only one)."""
        return await self.append_soon(room, command_id, events, expected_seq, record, digest=digest)

    def append_soon(
        self,
        room: str,
        command_id: str | None,
        events: Sequence[PendingEvent],
        expected_seq: int,
        record: CommandRecord | None = None,
        *,
        digest: bytes | None = None,
        grant_version: GrantVersion | None = None,
        then: Callable[[], None] | None = None,
    ) -> asyncio.Future[AppendResult]:
        """See :meth:`~server.log.base.RoomLog.append_soon`; ``then`` runs in the
        store's callback that resolves the future (no extra turn of the loop)."""
        check_append_args(expected_seq)
        pending = tuple(events)
        return self.store.write_soon(
            lambda conn: self._append(
                conn, room, command_id, pending, expected_seq, record=record, digest=digest
            ),
            then=then,
        )

    def _append(
        self,
        conn: sqlite3.Connection,
        room: str,
        command_id: str | None,
        events: tuple[PendingEvent, ...],
        expected_seq: int,
        *,
        record: CommandRecord | None,
        digest: bytes | None,
    ) -> AppendResult:
        if command_id is not None:
            seen = conn.execute(_SELECT_COMMAND, (room, command_id)).fetchone()
            if seen is not None:
                return _answer(seen, digest, record)  # H1
        last, _ = _room_seqs(conn, room)
        if last != expected_seq:
            return Conflict(current_seq=last)
        stored = stamp(room, command_id, events, last)
        new_last = last + len(stored)
        if stored:
            encode = self._codec.encode
            if len(stored) == 1:
                conn.execute(_INSERT_EVENT, (room, stored[0].seq, encode(stored[0])))
            else:
                conn.executemany(_INSERT_EVENT, [(room, e.seq, encode(e)) for e in stored])
            conn.execute(_UPSERT_ROOM, (room, new_last))
        if command_id is not None:
            if record is None:
                conn.execute(_INSERT_COMMAND, (room, command_id, last + 1, new_last, digest))
            else:
                by = record.by
                conn.execute(
                    _INSERT_RECORDED,
                    (
                        room,
                        command_id,
                        last + 1,
                        new_last,
                        digest,
                        record.at,
                        by.role,
                        by.id,
                        by.agency,
                        record.family,
                        record.action,
                    ),
                )
        return Appended(events=stored, last_seq=new_last)

    async def save_snapshot(self, room: str, state: RoomState) -> None:
        """See :meth:`RoomLog.save_snapshot`."""

        def op(conn: sqlite3.Connection) -> None:
            last, _ = _room_seqs(conn, room)
            check_snapshot(room, state, last)
            conn.execute(_UPSERT_SNAPSHOT, (room, state.seq, self._codec.encode(state)))

        await self.store.write(op)

    async def trim(self, room: str, before_seq: int) -> int:
        """See :meth:`RoomLog.trim`. Deletes in steps of :attr:`trim_chunk` events, one
        write each, so a large trim never holds the writer (and every append) for long."""
        total = 0
        while True:
            dropped, done = await self.store.write(
                lambda conn: self._trim_step(conn, room, before_seq)
            )
            total += dropped
            if done:
                return total

    def _trim_step(self, conn: sqlite3.Connection, room: str, before_seq: int) -> tuple[int, bool]:
        row = conn.execute("SELECT seq FROM log_snapshots WHERE room = ?", (room,)).fetchone()
        if row is None:
            return 0, True
        _, trimmed = _room_seqs(conn, room)
        cut = min(before_seq - 1, int(row[0]))  # the trimmed_seq to reach
        if cut <= trimmed:
            return 0, True
        step = min(cut, trimmed + self.trim_chunk)
        dropped = conn.execute(
            "DELETE FROM log_events WHERE room = ? AND seq <= ?", (room, step)
        ).rowcount
        # Recorded commands are the audit trail (R16): they, and so their keys, stay.
        conn.execute(
            "DELETE FROM log_commands WHERE room = ? AND last_seq <= ? AND at IS NULL", (room, step)
        )
        conn.execute("UPDATE log_rooms SET trimmed_seq = ? WHERE room = ?", (step, room))
        return int(dropped), step == cut

    # --- reads (on the reader pool) --------------------------------------------

    async def read_since(self, room: str, after_seq: int, limit: int) -> list[Event] | None:
        """See :meth:`RoomLog.read_since`."""
        check_read_args(after_seq, limit)

        def op(conn: sqlite3.Connection) -> list[Event] | None:
            last, trimmed = _room_seqs(conn, room)
            if after_seq < trimmed or after_seq > last:
                return None  # H3
            rows = conn.execute(_SELECT_EVENTS, (room, after_seq, limit)).fetchall()
            return self._codec.decode_events(room, after_seq + 1, [row[0] for row in rows])

        return await self.store.read(op)

    async def last_seq(self, room: str) -> int:
        """See :meth:`RoomLog.last_seq`."""
        return await self.store.read(lambda conn: _room_seqs(conn, room)[0])

    async def lookup_command(
        self,
        room: str,
        command_id: str,
        *,
        digest: bytes | None = None,
        record: CommandRecord | None = None,
    ) -> Duplicate | Reused | None:
        """See :meth:`RoomLog.lookup_command`."""

        def op(conn: sqlite3.Connection) -> Duplicate | Reused | None:
            row = conn.execute(_SELECT_COMMAND, (room, command_id)).fetchone()
            return None if row is None else _answer(row, digest, record)

        return await self.store.read(op)

    async def applied(self, room: str, query: AppliedQuery) -> list[AppliedCommand]:
        """See :meth:`RoomLog.applied` (a staff or agency filter scans the room's
        recorded commands newest first: there is no index per actor)."""
        if query.limit <= 0:
            return []
        filters, values = trail_filters(query, staff="AND role = 'staff' AND actor = ?")
        # Ties (one millisecond): the later command first; a command that changed
        # nothing has its predecessor's last_seq, but a later first_seq.
        sql = [_SELECT_APPLIED, *filters, "ORDER BY at DESC, last_seq DESC, first_seq DESC LIMIT ?"]
        args = [room, *values, clamp_int64(query.limit)]
        text = " ".join(sql)

        def op(conn: sqlite3.Connection) -> list[AppliedCommand]:
            return [
                AppliedCommand(command_id=command_id, last_seq=last_seq, record=CommandRecord(
                    at=at, by=Actor(role=role, id=actor, agency=agency), family=family,
                    action=action))
                for command_id, last_seq, at, role, actor, agency, family, action
                in conn.execute(text, args)
            ]  # fmt: skip

        return await self.store.read(op)

    async def load_snapshot(self, room: str) -> RoomState | None:
        """See :meth:`RoomLog.load_snapshot`."""

        def op(conn: sqlite3.Connection) -> RoomState | None:
            row = conn.execute("SELECT data FROM log_snapshots WHERE room = ?", (room,)).fetchone()
            return None if row is None else self._codec.decode_state(room, row[0])

        return await self.store.read(op)
