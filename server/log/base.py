"""The room event log: one small interface in front of the durable storage of rooms.

A room is its log: the events, numbered 1, 2, 3... without gaps (H2), plus a
snapshot of its state so a restart does not fold all of history, plus the ids
of the commands already applied (H1). Every implementation (memory, SQLite,
later Redis) runs the same contract suite in ``tests/log``.

Rules every implementation keeps:

* :meth:`RoomLog.append` is atomic: all of a command's events get consecutive
  seqs, or none is stored. It is optimistic: it applies only if the room's log
  is still at ``expected_seq`` (the seq the caller's cached state is at), so a
  node whose cache is stale reloads and re-decides instead of overwriting
  (multi-node). It is idempotent: a ``command_id`` already applied in the room
  appends nothing and returns :class:`Duplicate` with the first application's
  seqs (H1) - checked *before* ``expected_seq``, so a resend after a lost ack
  is recognised even though the log has moved on. A key names one command by
  one actor: it keeps the command's ``digest``, and an append whose digest does
  not match (:func:`server.log.keys.same_command`) appends nothing and returns
  :class:`Reused` (decision 0016). It is durable when it returns (H4).
* Seqs start at 1; a room never written to is at seq 0.
* History may be trimmed, but never past the latest snapshot, so snapshot +
  history always rebuild the room. :meth:`RoomLog.read_since` returns ``None``
  when it cannot continue gap-free from ``after_seq`` (H3): the caller sends
  the snapshot instead.
* Idempotency keys are retained as long as their command's events are: trimming
  a command's events forgets its id too (the H1 window is the retained history).
  Except a command appended with a :class:`CommandRecord` (who applied it, what
  it was): that record is the room's audit trail of applied commands (R16), so
  it and the command's key are kept for good, and it is stored in the same
  atomic append as the events - an acknowledged command is on the trail.
* A staff command may carry the :class:`GrantVersion` its node decided with.
  A shared log (Redis, many nodes) checks it in the same atomic step and
  answers :class:`Conflict` with the grant's current version if it moved (a
  revoke the node has not heard of yet): nothing is appended, the caller
  re-reads the grant and decides again. A one-node log (memory, SQLite) has
  no other writer of grants and ignores it (decision 0024).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol

import msgspec
from msgspec import Struct

from protocol.messages import Event, EventBody
from protocol.model import Actor, Id, Millis, RoomState

__all__ = [
    "AppendResult",
    "Appended",
    "AppliedCommand",
    "AppliedQuery",
    "CommandRecord",
    "Conflict",
    "CorruptRecordError",
    "Duplicate",
    "GrantVersion",
    "LogClosedError",
    "LogError",
    "LogWriteError",
    "PendingEvent",
    "Reused",
    "RoomLog",
    "RoomLogCodec",
    "check_append_args",
    "check_read_args",
    "check_snapshot",
    "stamp",
]


class PendingEvent(Struct, frozen=True, kw_only=True):
    """An event the decider produced, not yet in the log: an :class:`Event` without
    ``room``, ``seq`` and ``command_id``, which :meth:`RoomLog.append` stamps."""

    at: Millis
    actor: Id
    by: Actor
    body: EventBody


class CommandRecord(Struct, frozen=True, kw_only=True):
    """Who applied a command, when, and what it was: kept with its idempotency key,
    the audit trail of the room's applied commands (R16)."""

    at: Millis
    by: Actor
    """The real actor (the events show the creator to the audience)."""
    family: str
    """The command's family (``live``, ``bag``...)."""
    action: str
    """The command's ``type`` tag."""


class AppliedCommand(Struct, frozen=True, kw_only=True):
    """A command applied with a :class:`CommandRecord`, as :meth:`RoomLog.applied` lists it."""

    command_id: str
    last_seq: int
    """The seq it was acked with."""
    record: CommandRecord


class Appended(Struct, frozen=True, kw_only=True):
    """The events were stored, durably, as ``events`` (with their seqs).

    ``last_seq`` is the room's seq after the append (the ack's seq). A command
    that produced no event appends nothing; its ``last_seq`` is the seq it was
    decided against.
    """

    events: tuple[Event, ...]
    last_seq: int

    @property
    def first_seq(self) -> int:
        """Seq of the first event; ``last_seq + 1`` when nothing was appended."""
        return self.last_seq - len(self.events) + 1


class Duplicate(Struct, frozen=True, kw_only=True):
    """The command id was already applied in this room: nothing was appended (H1).

    ``first_seq``..``last_seq`` are the seqs its first application got
    (``first_seq == last_seq + 1`` when it produced no event), so the caller
    acks it with the same ``last_seq`` as the first time.
    """

    first_seq: int
    last_seq: int


class Reused(Struct, frozen=True, kw_only=True):
    """The command id was already applied in this room, but by another actor or as
    another command (its digest differs): nothing was appended, and the command is
    refused ``COMMAND_ID_REUSED`` - never acked with the other command's seqs (H1)."""


class Conflict(Struct, frozen=True, kw_only=True):
    """The log is not at ``expected_seq`` any more (another writer went first), or
    the caller's grant moved: nothing was appended; reload up to ``current_seq``
    (and the grant, when ``grant_version`` is set) and decide again."""

    current_seq: int
    grant_version: int | None = None
    """The grant's current version when it is not the one the caller decided with
    (:class:`GrantVersion`); None when the grant did not move or was not checked."""


class GrantVersion(Struct, frozen=True, kw_only=True):
    """The version of an agency's grant to the room's creator (room id = creator
    id) that a staff command was decided with: the number of access events of
    that (agency, creator) pair the deciding node had applied (decision 0024)."""

    agency: str
    version: int


AppendResult = Appended | Duplicate | Reused | Conflict


class AppliedQuery(Struct, frozen=True, kw_only=True):
    """Filters of :meth:`RoomLog.applied` (and of the audit trail, which adds the
    creator: :class:`~server.journal.AuditQuery`): every given one must match."""

    agency: str | None = None
    staff: str | None = None
    """A staff member's id (the actor is that staff member)."""
    family: str | None = None
    since: int | None = None
    """``at >= since``."""
    until: int | None = None
    """``at < until``."""
    limit: int = 100

    def passes(self, at: int, by: Actor, family: str) -> bool:
        """Whether an action at ``at``, by ``by``, of ``family`` passes every filter
        (the memory implementations' queries)."""
        return (
            (self.agency is None or by.agency == self.agency)
            and (self.staff is None or (by.role == "staff" and by.id == self.staff))
            and (self.family is None or family == self.family)
            and (self.since is None or at >= self.since)
            and (self.until is None or at < self.until)
        )


class LogError(Exception):
    """Base of the log's own errors (I/O, lifecycle); never raised for a refusal."""


class CorruptRecordError(LogError):
    """A stored event or snapshot does not decode (the bytes, or a bound, broke):
    the room cannot be read until it is repaired. Raised by reads, never retried
    by the log; the hub answers the room's callers ``ROOM_UNAVAILABLE``."""

    def __init__(
        self, room: str, kind: Literal["event", "snapshot"], seq: int | None, detail: str
    ) -> None:
        where = f"{kind} {seq}" if seq is not None else kind
        super().__init__(f"room {room}: {where} does not decode: {detail}")
        self.room = room
        self.kind = kind
        self.seq = seq
        self.detail = detail


class LogClosedError(LogError):
    """The log was used before it was started or after it was closed."""


class LogWriteError(LogError):
    """A write could not be committed; it was not applied and must not be acked."""


class RoomLog(Protocol):
    """The durable storage of rooms. Every method is safe to call concurrently."""

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
        """Atomically store ``events`` as the next seqs of ``room`` if the log is at
        ``expected_seq`` and ``command_id`` is new there (see the module notes).

        ``command_id`` None appends without an idempotency key (server-made events).
        ``record``, with a ``command_id``, is stored with the key in the same
        append and kept for good (:meth:`applied`). ``digest`` (who sent the
        command and what it says: :func:`server.log.keys.command_digest`) is
        stored with the key; a known ``command_id`` is a :class:`Duplicate` only
        if it matches, else :class:`Reused` (no ``digest``: the id alone matches).
        ``grant_version`` (a staff command's): a shared log appends only if the
        grant is still at that version, else :class:`Conflict` with the current
        one - checked after the key, with ``expected_seq``; one-node logs ignore it.
        """
        ...

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
        """:meth:`append`, queued now: appends queued in turn apply in turn (the hub
        pipelines a room's commands on this). Storage errors (:class:`LogError`) are
        set on the future, never raised here; invalid arguments raise ``ValueError``
        at once, as ``append`` does. ``then`` is called once, on the event loop, once
        the future is done - as soon as the log can (a done callback at the latest) -
        and never from inside ``append_soon`` itself (the caller registers the append
        after the call returns)."""
        ...

    async def read_since(self, room: str, after_seq: int, limit: int) -> list[Event] | None:
        """Up to ``limit`` events with seq > ``after_seq``, in order, gap-free.

        ``[]`` when ``after_seq`` is the room's last seq. ``None`` when the log
        cannot continue from ``after_seq``: events after it were trimmed, or
        ``after_seq`` is beyond the room's last seq (H3: send the snapshot).
        """
        ...

    async def last_seq(self, room: str) -> int:
        """The seq of the room's last event (0 for a room never written to)."""
        ...

    async def lookup_command(
        self,
        room: str,
        command_id: str,
        *,
        digest: bytes | None = None,
        record: CommandRecord | None = None,
    ) -> Duplicate | Reused | None:
        """What :meth:`append` would answer about the key of a command (``digest``,
        ``record``) with this id: :class:`Duplicate` (the seqs its first application
        got) if it is that command again, :class:`Reused` if the id was applied as
        another command or by another actor, None if the id is new in the room."""
        ...

    async def applied(self, room: str, query: AppliedQuery) -> list[AppliedCommand]:
        """The room's recorded commands matching every filter of ``query``, newest
        first (latest ``at``, then latest seqs), at most ``query.limit``."""
        ...

    async def save_snapshot(self, room: str, state: RoomState) -> None:
        """Store ``state`` (as of ``state.seq``) as the room's snapshot, durably.

        An older snapshot than the one stored is ignored. ``ValueError`` when
        ``state.room`` is not ``room`` or ``state.seq`` is beyond the log.
        """
        ...

    async def load_snapshot(self, room: str) -> RoomState | None:
        """The room's latest snapshot, or None if none was saved."""
        ...

    async def trim(self, room: str, before_seq: int) -> int:
        """Drop the events with seq < ``before_seq``, but never one after the latest
        snapshot (nothing without a snapshot); returns how many were dropped.

        The retention policy (how much history to keep behind the snapshot) is
        the caller's: e.g. ``trim(room, snapshot.seq + 1 - retained_events)``.
        """
        ...

    async def close(self) -> None:
        """Finish pending writes and release the storage; idempotent."""
        ...


class RoomLogCodec:
    """The stored form of events and snapshots: MessagePack, one reused encoder
    and one decoder per type. An event is stored as the whole :class:`Event`
    message, so its bytes are exactly what a MessagePack client receives."""

    __slots__ = ("_decode_state", "decode_event", "encode")

    def __init__(self) -> None:
        encoder = msgspec.msgpack.Encoder()
        self.encode = encoder.encode
        self.decode_event = msgspec.msgpack.Decoder(Event).decode
        self._decode_state = msgspec.msgpack.Decoder(RoomState).decode

    def decode_events(self, room: str, first_seq: int, stored: Sequence[bytes]) -> list[Event]:
        """Decode a room's stored events, ``first_seq`` being the first one's seq;
        :class:`CorruptRecordError` names the first that does not decode."""
        decode = self.decode_event
        try:
            return [decode(data) for data in stored]
        except _UNDECODABLE:
            pass  # find which one, outside the fast path
        for offset, data in enumerate(stored):
            try:
                decode(data)
            except _UNDECODABLE as exc:
                raise CorruptRecordError(room, "event", first_seq + offset, str(exc)) from None
        raise AssertionError("unreachable: one of them failed")  # pragma: no cover

    def decode_state(self, room: str, stored: bytes) -> RoomState:
        """Decode a room's stored snapshot (:class:`CorruptRecordError` if it does not)."""
        try:
            return self._decode_state(stored)
        except _UNDECODABLE as exc:
            raise CorruptRecordError(room, "snapshot", None, str(exc)) from None


_UNDECODABLE = (msgspec.DecodeError, TypeError, ValueError)
"""What decoding a stored value raises when it is not what was stored: not MessagePack,
out of a type's bounds (``ValidationError`` is a ``DecodeError``), or not bytes at all."""


MAX_LIMIT: Final = 100_000


def check_append_args(expected_seq: int) -> None:
    """Reject arguments that can only come from a bug (ValueError)."""
    if expected_seq < 0:
        raise ValueError(f"expected_seq must be >= 0, got {expected_seq}")


def check_read_args(after_seq: int, limit: int) -> None:
    """Reject read arguments that can only come from a bug (ValueError)."""
    if after_seq < 0:
        raise ValueError(f"after_seq must be >= 0, got {after_seq}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be in 1..{MAX_LIMIT}, got {limit}")


def check_snapshot(room: str, state: RoomState, last_seq: int) -> None:
    """A snapshot must be of this room and not ahead of its log (ValueError)."""
    if state.room != room:
        raise ValueError(f"snapshot of room {state.room!r} saved under {room!r}")
    if state.seq > last_seq:
        raise ValueError(f"snapshot at seq {state.seq} is ahead of the log ({last_seq})")


def stamp(
    room: str, command_id: str | None, events: Sequence[PendingEvent], last_seq: int
) -> tuple[Event, ...]:
    """The stored form of ``events`` appended after ``last_seq``."""
    return tuple(
        Event(
            room=room,
            seq=last_seq + i,
            at=p.at,
            actor=p.actor,
            by=p.by,
            body=p.body,
            command_id=command_id,
        )
        for i, p in enumerate(events, start=1)
    )
