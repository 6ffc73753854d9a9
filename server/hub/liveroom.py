"""A room in memory, with its commands pipelined into the log.

Holding the room lock across a durable append would serialize a room's commands
on commit latency (one fsync each). Instead, under the lock, a command is decided
against the room's *optimistic* state, its append is started (appends are queued
to the log in submission order), and its predicted events are folded at once; the
lock is then released while the append becomes durable. :meth:`LiveRoom.publish`
runs when an append completes and, strictly in submission order, fans the stored
events out and acks their sender - so nothing is shown or acked before it is
durable (H4), and every member sees one gap-free order (H2).

When an append does not store what was predicted (a resend already applied, a
write that failed, another node that wrote first), the optimistic state has
diverged from the log: later appends, decided on it, conflict and are decided
again once :meth:`LiveRoom.settle` has reloaded the room from the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import anyio

from protocol.errors import Code, describe
from protocol.messages import Ack, Event
from protocol.model import RoomState
from server.domain.evolve import evolve
from server.domain.refusal import Refusal
from server.hub.delivery import Delivery
from server.hub.session import Session
from server.log.base import (
    Appended,
    AppendResult,
    CommandRecord,
    Conflict,
    Duplicate,
    GrantVersion,
    PendingEvent,
    Reused,
    RoomLog,
)

__all__ = ["GRANT_MOVED", "RETRY", "REUSED", "UNSENT", "LiveRoom", "Outcome", "Submitted"]

RETRY: Final = "retry"
"""Outcome of a command whose append conflicted: decide it again."""
UNSENT: Final = "unsent"
"""Outcome of a command never sent to the log: the one before it, which it was
decided on, did not store what was predicted. Decide it again (not a try lost)."""
_UNSENT: Final = Conflict(current_seq=-1)
GRANT_MOVED: Final = "grant_moved"
"""Outcome of a staff command whose grant moved on another node (a revoke this node
has not heard of yet): catch the creator's access up, then decide it again (R6)."""
Outcome = int | Refusal | str
"""The seq the command was acked with, a refusal, or :data:`RETRY`."""
EventSink = Callable[["LiveRoom", Event], None]

_STORAGE_FAILED = Refusal(Code.UNAVAILABLE, "storage unavailable; retry")
REUSED: Final = Refusal(Code.COMMAND_ID_REUSED, describe(Code.COMMAND_ID_REUSED))
"""Outcome of a command whose id is another command's key in the room (H1)."""
logger = logging.getLogger("livepilot.hub")


class Submitted:
    """One command whose append is under way."""

    __slots__ = ("append", "command_id", "digest", "outcome", "predicted", "sender")

    def __init__(
        self,
        append: asyncio.Future[AppendResult],
        predicted: list[Event],
        sender: Session | None,
        command_id: str | None,
        digest: bytes | None = None,
    ) -> None:
        self.append = append
        self.predicted = predicted
        self.sender = sender
        self.command_id = command_id
        self.digest = digest
        """Its key's digest: a resend waiting for it must carry the same (H1)."""
        self.outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()


class LiveRoom:
    """A room loaded in memory: optimistic state, members, lock, appends in flight."""

    __slots__ = (
        "__weakref__",
        "delivery",
        "diverged",
        "inflight",
        "lock",
        "members",
        "on_event",
        "room",
        "since_snapshot",
        "state",
        "touched",
    )

    def __init__(self, state: RoomState, on_event: EventSink) -> None:
        self.room = state.room
        self.state = state
        """The state with every submitted command folded in (durable or about to be)."""
        self.members: dict[str, Session] = {}
        self.lock = anyio.Lock()
        self.since_snapshot = 0
        self.inflight: deque[Submitted] = deque()
        self.diverged = False
        self.on_event = on_event
        """Called for each durable event, in order: fan-out and its side effects."""
        self.delivery: Delivery | None = None
        """Multi-node: the room's delivered-up-to cursor; durable events and acks go
        through it (events other nodes appended are delivered in between)."""
        self.touched = True
        """Used since the hub's last sweep of idle rooms (a command, a lookup, a member
        leaving), or busy at that sweep."""

    @property
    def idle(self) -> bool:
        """Nobody in the room, no append in flight, no one holding the lock."""
        return not (self.members or self.inflight or self.lock.locked())

    def submit(
        self,
        log: RoomLog,
        command_id: str | None,
        pending: Sequence[PendingEvent],
        sender: Session | None,
        record: CommandRecord | None = None,
        *,
        digest: bytes | None = None,
        grant_version: GrantVersion | None = None,
    ) -> Submitted:
        """Under the lock: start the append (with the command's audit ``record`` and
        its key's ``digest``) and fold its predicted events now."""
        seq = self.state.seq
        predicted = [
            Event(
                room=self.room,
                seq=seq + i,
                at=p.at,
                actor=p.actor,
                by=p.by,
                body=p.body,
                command_id=command_id,
            )
            for i, p in enumerate(pending, start=1)
        ]
        if self.delivery is not None and self.inflight:
            append = self._chained(
                self.inflight[-1], log, command_id, pending, seq, record, digest, grant_version
            )
        else:
            # Queued now, so appends reach the log in submission order.
            # publish() runs once the append is done: for the SQLite log, in the very
            # callback that completes it (a done callback would wait a turn of the loop).
            append = log.append_soon(
                self.room,
                command_id,
                pending,
                seq,
                record,
                digest=digest,
                grant_version=grant_version,
                then=self.publish,
            )
        entry = Submitted(append, predicted, sender, command_id, digest)
        self.inflight.append(entry)
        for event in predicted:
            self.state = evolve(self.state, event)
        return entry

    def _chained(  # noqa: PLR0917
        self,
        prev: Submitted,
        log: RoomLog,
        command_id: str | None,
        pending: Sequence[PendingEvent],
        seq: int,
        record: CommandRecord | None,
        digest: bytes | None,
        grant_version: GrantVersion | None,
    ) -> asyncio.Future[AppendResult]:
        """Multi-node: an append decided on the predicted outcome of the one before it
        goes to the log only once that one is stored as predicted. Another node may
        append in between: the earlier one then conflicts, and this one, at a seq that
        may well match the log again, was decided on a state the log never had - it
        is decided again instead (H5), after the earlier one (a connection's order)."""
        result: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()

        def settle(done: asyncio.Future[AppendResult]) -> None:
            if not result.done():
                if done.cancelled() or done.exception() is not None:
                    result.set_result(Conflict(current_seq=seq))
                else:
                    result.set_result(done.result())
            self.publish()

        def go(before: asyncio.Future[AppendResult]) -> None:
            done = None if before.cancelled() or before.exception() else before.result()
            ok = isinstance(done, Appended) and list(done.events) == prev.predicted
            if not ok:
                result.set_result(_UNSENT)
                self.publish()
                return
            log.append_soon(
                self.room,
                command_id,
                pending,
                seq,
                record,
                digest=digest,
                grant_version=grant_version,
            ).add_done_callback(settle)

        prev.append.add_done_callback(go)
        return result

    def publish(self) -> None:
        """Publish every completed append at the head of the queue, in order; what
        that wrote leaves now, not at the end of the loop's turn (decision 0012)."""
        inflight = self.inflight
        if not inflight or not inflight[0].append.done():
            return
        senders: dict[str, Session] = {}
        while inflight and inflight[0].append.done():
            entry = inflight.popleft()
            try:
                outcome = self._publish_one(entry)
            except Exception:  # a bug in fan-out: answer the command, re-sync the room
                logger.exception("publishing an append failed", extra={"room": self.room})
                self.diverged = True
                outcome = _STORAGE_FAILED
            if not entry.outcome.done():
                entry.outcome.set_result(outcome)
            sender = entry.sender
            if sender is not None and sender.id not in self.members:
                senders[sender.id] = sender  # outside the room (a pre-LIVE command)
        for session in self.members.values():
            session.flush()
        for session in senders.values():
            session.flush()

    def _publish_one(self, entry: Submitted) -> Outcome:
        task = entry.append
        result = None if task.cancelled() or task.exception() is not None else task.result()
        match result:
            case Appended(events=events, last_seq=last_seq):
                if list(events) != entry.predicted:
                    self.diverged = True
                self.since_snapshot += len(events)
                if self.delivery is not None:  # in order with other nodes' events
                    self.delivery.offer(events, self._acker(entry, last_seq), last_seq)
                    return last_seq
                for event in events:  # durable: every member sees it, in log order
                    self.on_event(self, event)
                self._ack(entry, last_seq)
                return last_seq
            case Duplicate(last_seq=last_seq):  # applied before (H1): the first ack again
                self.diverged = self.diverged or bool(entry.predicted)
                if self.delivery is not None:  # after its events, maybe another node's
                    self.delivery.after(last_seq, lambda: self._ack(entry, last_seq))
                    return last_seq
                self._ack(entry, last_seq)
                return last_seq
            case Reused():  # another command's id (H1): refused, nothing appended
                self.diverged = self.diverged or bool(entry.predicted)
                return REUSED
            case Conflict(grant_version=moved):
                self.diverged = self.diverged or bool(entry.predicted)
                if result is _UNSENT:
                    return UNSENT
                return RETRY if moved is None else GRANT_MOVED
        self.diverged = self.diverged or bool(entry.predicted)
        return _STORAGE_FAILED

    def _acker(self, entry: Submitted, seq: int) -> Callable[[], None] | None:
        if entry.sender is None or entry.command_id is None:
            return None
        sender = entry.sender

        def ack() -> None:
            self._ack(entry, seq)
            if sender.id not in self.members:  # members are flushed by the delivery
                sender.flush()

        return ack

    @staticmethod
    def _ack(entry: Submitted, seq: int) -> None:
        if entry.sender is not None and entry.command_id is not None:
            entry.sender.send(Ack(command_id=entry.command_id, seq=seq))

    async def settle(self, reload: Callable[[], Awaitable[RoomState]]) -> None:
        """Under the lock: wait for every append in flight; if the optimistic state
        diverged from the log, reload it. Afterwards the state is exactly the log's."""
        while self.inflight:
            await asyncio.wait([self.inflight[-1].outcome])
        if self.diverged:
            self.state = await reload()
            self.diverged = False
