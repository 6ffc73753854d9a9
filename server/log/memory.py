"""In-memory room log: the reference implementation of :class:`RoomLog`, for tests.

Nothing is durable beyond the :class:`MemoryStore` object: a new
:class:`MemoryRoomLog` over the same store sees everything the previous one
wrote (that is what "reopen" means for the contract suite). Events and
snapshots are kept encoded, as a real store keeps them, so a caller can never
mutate what is stored and every value goes through the codec.

Each method starts with a checkpoint (``await asyncio.sleep(0)``) and then runs
without awaiting, so it is atomic on the event loop yet interleaves with
concurrent callers like a real store does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from protocol.messages import Event
from protocol.model import RoomState
from server.log.base import (
    Appended,
    AppendResult,
    AppliedCommand,
    AppliedQuery,
    CommandRecord,
    Conflict,
    Duplicate,
    GrantVersion,
    LogClosedError,
    PendingEvent,
    Reused,
    RoomLogCodec,
    check_append_args,
    check_read_args,
    check_snapshot,
    stamp,
)
from server.log.keys import same_command

__all__ = ["MemoryRoomLog", "MemoryStore"]


_Key = tuple[int, int, CommandRecord | None, bytes | None]


def _answer(seen: _Key, digest: bytes | None, record: CommandRecord | None) -> Duplicate | Reused:
    """What a command with a stored key's id gets (H1, decision 0016)."""
    first, last, stored, stored_digest = seen
    by, action = (None, None) if stored is None else (stored.by, stored.action)
    if same_command(digest, record, stored_digest, by, action):
        return Duplicate(first_seq=first, last_seq=last)
    return Reused()


class _Room:
    __slots__ = ("commands", "events", "last_seq", "snapshot", "trimmed_seq")

    def __init__(self) -> None:
        self.last_seq = 0
        self.trimmed_seq = 0
        """Every event with seq <= trimmed_seq is gone; events[0] has seq trimmed_seq + 1."""
        self.events: list[bytes] = []
        self.commands: dict[str, _Key] = {}
        """command id -> (first seq, last seq, record, digest)."""
        self.snapshot: tuple[int, bytes] | None = None


class MemoryStore:
    """What a :class:`MemoryRoomLog` stores; outlives the logs opened on it."""

    __slots__ = ("rooms",)

    def __init__(self) -> None:
        self.rooms: dict[str, _Room] = {}


class MemoryRoomLog:
    """A :class:`RoomLog` in a dict."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self._store = store if store is not None else MemoryStore()
        self._codec = RoomLogCodec()
        self._closed = False

    async def _enter(self) -> None:
        await asyncio.sleep(0)
        if self._closed:
            raise LogClosedError("the room log is closed")

    def _room(self, room: str) -> _Room | None:
        return self._store.rooms.get(room)

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
        """See :meth:`RoomLog.append_soon` (a task: tasks start in creation order)."""
        check_append_args(expected_seq)
        task = asyncio.ensure_future(
            self.append(room, command_id, events, expected_seq, record, digest=digest)
        )
        if then is not None:
            task.add_done_callback(lambda _: then())
        return task

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
        check_append_args(expected_seq)
        await self._enter()
        r = self._store.rooms.setdefault(room, _Room())
        if command_id is not None and (seen := r.commands.get(command_id)) is not None:
            return _answer(seen, digest, record)  # H1
        if r.last_seq != expected_seq:
            return Conflict(current_seq=r.last_seq)
        stored = stamp(room, command_id, events, r.last_seq)
        encoded = [self._codec.encode(e) for e in stored]  # before any change: all or nothing
        r.events.extend(encoded)
        first = r.last_seq + 1
        r.last_seq += len(stored)
        if command_id is not None:
            r.commands[command_id] = (first, r.last_seq, record, digest)
        return Appended(events=stored, last_seq=r.last_seq)

    async def read_since(self, room: str, after_seq: int, limit: int) -> list[Event] | None:
        """See :meth:`RoomLog.read_since`."""
        check_read_args(after_seq, limit)
        await self._enter()
        r = self._room(room)
        if r is None:
            return [] if after_seq == 0 else None
        if after_seq < r.trimmed_seq or after_seq > r.last_seq:
            return None  # H3
        start = after_seq - r.trimmed_seq
        return self._codec.decode_events(room, after_seq + 1, r.events[start : start + limit])

    async def last_seq(self, room: str) -> int:
        """See :meth:`RoomLog.last_seq`."""
        await self._enter()
        r = self._room(room)
        return 0 if r is None else r.last_seq

    async def lookup_command(
        self,
        room: str,
        command_id: str,
        *,
        digest: bytes | None = None,
        record: CommandRecord | None = None,
    ) -> Duplicate | Reused | None:
        """See :meth:`RoomLog.lookup_command`."""
        await self._enter()
        r = self._room(room)
        seen = None if r is None else r.commands.get(command_id)
        return None if seen is None else _answer(seen, digest, record)

    async def applied(self, room: str, query: AppliedQuery) -> list[AppliedCommand]:
        """See :meth:`RoomLog.applied`."""
        await self._enter()
        r = self._room(room)
        if r is None or query.limit <= 0:
            return []
        found = [
            (record.at, last, first, AppliedCommand(command_id=cid, last_seq=last, record=record))
            for cid, (first, last, record, _) in r.commands.items()
            if record is not None and query.passes(record.at, record.by, record.family)
        ]
        found.sort(key=lambda f: f[:3], reverse=True)  # as SQLite: at, last_seq, first_seq
        return [f[3] for f in found[: query.limit]]

    async def save_snapshot(self, room: str, state: RoomState) -> None:
        """See :meth:`RoomLog.save_snapshot`."""
        await self._enter()
        r = self._store.rooms.setdefault(room, _Room())
        check_snapshot(room, state, r.last_seq)
        if r.snapshot is None or state.seq >= r.snapshot[0]:
            r.snapshot = (state.seq, self._codec.encode(state))

    async def load_snapshot(self, room: str) -> RoomState | None:
        """See :meth:`RoomLog.load_snapshot`."""
        await self._enter()
        r = self._room(room)
        if r is None or r.snapshot is None:
            return None
        return self._codec.decode_state(room, r.snapshot[1])

    async def trim(self, room: str, before_seq: int) -> int:
        """See :meth:`RoomLog.trim`."""
        await self._enter()
        r = self._room(room)
        if r is None or r.snapshot is None:
            return 0
        cut = min(before_seq - 1, r.snapshot[0])  # the new trimmed_seq
        if cut <= r.trimmed_seq:
            return 0
        dropped = cut - r.trimmed_seq
        del r.events[:dropped]
        r.trimmed_seq = cut
        # A recorded command is the audit trail (R16): it, and so its key, stays.
        r.commands = {c: s for c, s in r.commands.items() if s[1] > cut or s[2] is not None}
        return dropped

    async def close(self) -> None:
        """See :meth:`RoomLog.close`."""
        self._closed = True
