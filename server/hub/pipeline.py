"""The command half of the hub: decide, append, answer (mixed into :class:`Hub`).

Flow of one room command: authorize against the grant in force *now* (R6) ->
``decide`` against the room's optimistic state -> start the durable append,
which carries the command's audit record (:meth:`LiveRoom.submit`, R16) -> once
durable, :meth:`LiveRoom.publish` fans the events out and acks the sender in
order (H2, H4) -> count it.

The common case never suspends between reading the room's state and starting
the append, so it needs neither the room lock nor a cancel shield, and what
follows the append runs in a future's callback instead of a task per command
(decision 0007). Anything that has to wait (a retry after a conflict, a
refusal to audit first, notifications to store, a snapshot due) runs in a task
started by the caller's ``spawn``.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, get_args

import anyio

from protocol.commands import BagList, Command
from protocol.errors import Code, describe
from protocol.events import EventBody
from protocol.messages import Ack, BagListing, Notification, Refused, RoomCommand
from protocol.model import Actor, RoomState
from server.domain.grants import Caller
from server.domain.refusal import Refusal
from server.domain.room import decide, list_bag
from server.hub.auditor import Auditor
from server.hub.liveroom import (
    GRANT_MOVED,
    RETRY,
    REUSED,
    UNSENT,
    LiveRoom,
    Outcome,
    Submitted,
)
from server.hub.session import Session
from server.journal import AuditEntry, Journal
from server.log.base import (
    CommandRecord,
    CorruptRecordError,
    Duplicate,
    GrantVersion,
    LogError,
    PendingEvent,
    Reused,
    RoomLog,
)
from server.log.keys import command_digest
from server.metrics import Metrics

__all__ = ["MAX_CONFLICT_RETRIES", "CommandPipeline", "Spawn"]

logger = logging.getLogger("livepilot.hub")

_ACTIONS: Final[Mapping[type, str]] = MappingProxyType(
    {cls: str(cls.__struct_config__.tag) for cls in get_args(RoomCommand)}
)
"""Each room command's ``type`` tag, its action on the audit trail (read per command)."""


Spawn = Callable[..., object]
"""A task group's ``start_soon``: ``spawn(async_fn, *args)``."""
MAX_CONFLICT_RETRIES: Final = 10
"""Tries of a command whose append conflicted: on many nodes, another node's
pipeline of appends to the room can win several times in a row."""
_UNREADABLE: Final = Refusal(Code.ROOM_UNAVAILABLE, "")
"""A command to a room whose stored log does not decode: retry later."""
_STORAGE_DOWN: Final = Refusal(Code.UNAVAILABLE, "storage unavailable; retry")
"""A command whose room could not be read from storage (Redis down): retry (H6)."""


class CommandPipeline(abc.ABC):
    """Room commands from decision to answer; :class:`~server.hub.hub.Hub` is the rest."""

    log: RoomLog
    journal: Journal
    clock: Callable[[], int]
    metrics: Metrics
    auditor: Auditor
    snapshot_interval: int
    history_retention: int
    rooms: dict[str, LiveRoom]
    _notes: list[Notification]
    grant_version: Callable[[str, str], int] | None = None
    """Multi-node: ``(agency, creator) ->`` the version of the grant this node knows;
    every staff append carries it, and the shared log refuses it if the grant moved
    meanwhile on another node (decision 0024). None on one node."""
    catch_up_access: Callable[[str], Awaitable[object]] | None = None
    """Multi-node: fold the creator's access events other nodes stored into the book."""

    @abc.abstractmethod
    def caller(self, session: Session, creator: str) -> Caller:
        """Who ``session`` is in ``creator``'s room, with the grant in force now."""

    @abc.abstractmethod
    def _precheck(self, caller: Caller, creator: str) -> Refusal | None: ...

    @abc.abstractmethod
    def _related(self, caller: Caller, creator: str) -> bool:
        """Whether the caller's refusals go to ``creator``'s audit trail (R16)."""

    @abc.abstractmethod
    async def room(self, room_id: str) -> LiveRoom:
        """The room, loaded if it is not in memory."""

    @abc.abstractmethod
    async def _load(self, room_id: str) -> RoomState: ...

    async def command(
        self, session: Session, command: RoomCommand, spawn: Spawn | None = None
    ) -> asyncio.Future[None] | None:
        """Decide, append, fan out and answer one room command.

        Without ``spawn`` this returns once the command is answered. With one (a
        task group's ``start_soon``), it returns once the command is submitted,
        with a future that is done when the command is answered, or None if it is
        already: the connection reads its next command meanwhile, and its
        commands still reach the log in the order they were read. What is left
        after the append (bookkeeping, a retry after a conflict) runs in a
        callback, and in a task started by ``spawn`` only when it has to wait.
        """
        caller = self.caller(session, command.room)
        refusal = self._precheck(caller, command.room)
        if refusal is not None:
            await self._refuse(session, caller, command, refusal)
            return None
        live = self.rooms.get(command.room)
        if live is None:
            try:
                live = await self.room(command.room)
            except CorruptRecordError:  # counted and logged where it was read
                await self._refuse(session, caller, command, _UNREADABLE)
                return None
            except LogError as exc:  # storage down (H6): retryable, never a hang or a crash
                logger.warning("a room could not be loaded: %s", exc, extra={"room": command.room})
                await self._refuse(session, caller, command, _STORAGE_DOWN)
                return None
            caller = self.caller(session, command.room)  # access may have changed meanwhile (R6)
        live.touched = True  # in use: not evicted by the next sweep of idle rooms
        call = _Call(session, caller, command, live)
        # The common case runs without a suspension point: nothing can interleave,
        # so it needs neither the room lock nor a shield.
        first: Outcome | Submitted
        fast = self._decide_now(call)
        if fast is not None:
            first = fast
        else:
            # Shielded: a session closed mid-command (slow, revoked, gone) must not
            # cancel a command between the log and the room's state.
            with anyio.CancelScope(shield=True):
                first = await self._decide_and_submit(call)
        if spawn is None or not isinstance(first, Submitted):
            await self._finish(call, first)
            return None
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def durable(outcome: asyncio.Future[Outcome]) -> None:
            try:
                result = outcome.result()
                if isinstance(result, int) and result >= 0:
                    # Counted here, before anything that could fail to start.
                    self._done(command)
                    if not self._notes and not self._snapshot_due(live):
                        answered.set_result(None)  # the usual case: nothing to wait for
                        return
                spawn(self._after, call, result, answered)
            except Exception:  # a bug, or no task group left (shutting down)
                logger.exception(
                    "finishing a command failed", extra={"command_id": command.command_id}
                )
                if not answered.done():  # the connection's in-flight slot must come back
                    answered.set_result(None)

        first.outcome.add_done_callback(durable)
        return answered

    async def _after(self, call: _Call, outcome: Outcome, answered: asyncio.Future[None]) -> None:
        """What is left of a pipelined command after its append, in a runtime task:
        store notifications and snapshot (applied), or retry or refuse it.

        It runs beside every other connection's: a failure here is logged, never
        raised into the runtime's task group (it would stop the node)."""
        try:
            if isinstance(outcome, int) and outcome >= 0:
                await self._after_applied(call.live)
            else:
                await self._finish(call, outcome)
        except Exception:
            logger.exception(
                "finishing a command failed", extra={"command_id": call.command.command_id}
            )
        finally:
            if not answered.done():
                answered.set_result(None)

    async def _finish(self, call: _Call, outcome: Outcome | Submitted) -> None:
        """Wait for a submitted command, decide it again after a conflict, then count
        it, or audit and answer its refusal (the ack itself was sent by publish())."""
        tries = 1
        while True:
            if isinstance(outcome, Submitted):
                with anyio.CancelScope(shield=True):
                    outcome = await outcome.outcome
            if outcome not in (RETRY, GRANT_MOVED, UNSENT):  # the log did not take it
                break
            if tries == MAX_CONFLICT_RETRIES:
                outcome = Refusal(Code.UNAVAILABLE, "the room is too contended; retry")
                break
            if outcome != UNSENT:  # never reached the log: not a try
                tries += 1
            with anyio.CancelScope(shield=True):
                if outcome == GRANT_MOVED and self.catch_up_access is not None:
                    # R6: the grant changed on another node; decide on what it is now.
                    await self.catch_up_access(call.command.room)
                outcome = await self._decide_and_submit(call)
        if isinstance(outcome, Refusal):
            await self._resync(call.live)
            await self._refuse(call.session, call.caller, call.command, outcome)
        elif isinstance(outcome, int) and outcome >= 0:
            self._done(call.command)
            await self._after_applied(call.live)

    async def _after_applied(self, live: LiveRoom) -> None:
        await self._store_notes()
        if self._snapshot_due(live):
            await self._snapshot(live)

    def _done(self, command: RoomCommand) -> None:
        """Count an applied command (its audit record went with its append)."""
        self.metrics.command_done(_ACTIONS[type(command)], "ok")

    def _snapshot_due(self, live: LiveRoom) -> bool:
        return live.since_snapshot >= self.snapshot_interval

    async def _refuse(
        self, session: Session, caller: Caller, command: RoomCommand, refusal: Refusal
    ) -> None:
        name = _ACTIONS[type(command)]
        # The refusal is on the audit trail before the client hears of it (R10) - if
        # the caller has a relation to the room's creator: a stranger's goes to the
        # log and a metric, or any token holder could fill another creator's trail.
        if self._related(caller, command.room):
            try:
                await self._audit_refusal(caller.actor, command, name, refusal.code)
            except Exception:  # H6: storage down must still answer, never leave it hanging
                # The trail cannot be written now; the refusal is retryable and changed
                # nothing, so the client hears it anyway (logged, counted unaudited).
                self.metrics.unaudited_refusals.labels("room", refusal.code.name).inc()
                logger.warning(
                    "a refusal could not be audited (storage unavailable)",
                    exc_info=True,
                    extra={"action": name, "room": command.room, "command_id": command.command_id},
                )
        else:
            self.metrics.unaudited_refusals.labels("room", refusal.code.name).inc()
            logger.info(
                "refused command of a caller with no relation to the room's creator",
                extra={
                    "action": name,
                    "code": int(refusal.code),
                    "room": command.room,
                    "command_id": command.command_id,
                    "actor": caller.actor.id,
                    "agency": caller.actor.agency,
                    "role": caller.actor.role,
                },
            )
        session.send(
            Refused(
                command_id=command.command_id,
                code=refusal.code,
                message=refusal.message or describe(refusal.code),
            )
        )
        self.metrics.command_done(name, refusal.code.name)

    async def _resync(self, live: LiveRoom) -> None:
        """After a failed append, bring the room's state back to the log's."""
        if live.diverged:
            with anyio.CancelScope(shield=True):
                async with live.lock:
                    await self._settled(live)  # storage down: the refusal goes out anyway

    async def _settled(self, live: LiveRoom) -> bool:
        """Under the lock: :meth:`LiveRoom.settle`; False if storage is down (H6) - the
        room stays diverged, and the next command reloads it first."""
        try:
            await live.settle(lambda: self._load(live.room))
        except LogError as exc:
            logger.warning("a room could not be reloaded: %s", exc, extra={"room": live.room})
            return False
        return True

    async def _decide_and_submit(self, call: _Call) -> Outcome | Submitted:
        """Decide under the room lock and submit the append (not waiting for it).

        Or the outcome already: a refusal, RETRY, or -1 when answered here (a
        query, or a resend of a command applied or in flight)."""
        live = call.live
        async with live.lock:
            if live.diverged and not await self._settled(live):
                return _STORAGE_DOWN  # H6: refused, retryable
            # Waiting for the lock (or a settle) may have taken a while: decide with
            # the access in force now, not when the command was read (R6).
            call.caller = self.caller(call.session, call.command.room)
            now = self.clock()
            decision = decide(live.state, call.caller, call.command, now)
            if isinstance(decision, Refusal):
                return await self._refused_or_resent(call, decision)
            return self._submit(call, decision, now)

    def _decide_now(self, call: _Call) -> Outcome | Submitted | None:
        """:meth:`_decide_and_submit` without suspending, for a room nobody holds
        and an accepted command; None otherwise (then take the lock)."""
        live = call.live
        if live.diverged or live.lock.locked():
            return None
        now = self.clock()
        decision = decide(live.state, call.caller, call.command, now)
        if isinstance(decision, Refusal):
            return None  # maybe a resend: decided again under the lock
        return self._submit(call, decision, now)

    def _submit(self, call: _Call, decision: Sequence[EventBody], now: int) -> Outcome | Submitted:
        """Answer a query, or start the append of an accepted command's events."""
        live, command = call.live, call.command
        if isinstance(command, BagList):
            items = list_bag(live.state, command.category, command.in_stock)
            call.session.send(
                BagListing(command_id=command.command_id, room=live.room, items=items)
            )
            self.metrics.command_done("bag_list", "ok")
            return -1
        pending = [
            PendingEvent(at=now, actor=live.state.room, by=call.caller.actor, body=b)
            for b in decision
        ]
        return live.submit(
            self.log,
            command.command_id,
            pending,
            call.session,
            call.record(now),
            digest=call.digest,
            grant_version=self._grant_version(call.caller.actor, live.room),
        )

    def _grant_version(self, actor: Actor, creator: str) -> GrantVersion | None:
        """The grant a staff command is decided with, for the shared log to check (R6)."""
        if self.grant_version is None or actor.role != "staff" or actor.agency is None:
            return None
        return GrantVersion(agency=actor.agency, version=self.grant_version(actor.agency, creator))

    async def _refused_or_resent(self, call: _Call, refusal: Refusal) -> Outcome:
        """A refused command may be a resend (H1): of one in flight (wait for it), or
        of one applied (the first ack again) - if it is the same command by the same
        actor. With the id of another command it is refused COMMAND_ID_REUSED,
        whatever the decider said: the key comes before the state, as in the log.
        Otherwise the refusal stands (a refusal keeps no key: a resend is decided
        again)."""
        live, session, cid = call.live, call.session, call.command.command_id
        if isinstance(call.command, BagList):
            return refusal  # a query keeps no key: it is never a resend
        twin = next((e for e in live.inflight if e.command_id == cid), None)
        if twin is not None:
            outcome = await asyncio.shield(twin.outcome)
            if not isinstance(outcome, int):
                return RETRY  # the first attempt did not stick: decide this one afresh
            if twin.digest != call.digest:
                return REUSED  # H1: the id is the twin's key now
            session.send(Ack(command_id=cid, seq=outcome))
            return -1
        match await self.log.lookup_command(
            live.room, cid, digest=call.digest, record=call.record(self.clock())
        ):
            case Duplicate(last_seq=seq):
                session.send(Ack(command_id=cid, seq=seq))
                return -1
            case Reused():
                return REUSED
        return refusal

    async def _audit_refusal(self, actor: Actor, command: Command, name: str, code: int) -> None:
        # Platform activity is not an action of anyone: only commands are audited (R16).
        if command.family == "feed":
            return
        entry = AuditEntry(
            at=self.clock(),
            creator=command.room,
            actor=actor,
            family=command.family,
            action=name,
            command_id=command.command_id,
            code=code,
        )
        # On the trail before the refusal is sent (R10), even if the session is
        # closed (and its reading cancelled) meanwhile.
        with anyio.CancelScope(shield=True):
            await self.auditor.write([entry])

    async def _store_notes(self) -> None:
        """Store published notifications in the creators' inboxes (R14, R15)."""
        if self._notes:
            notes, self._notes = self._notes, []
            await self.journal.notify(notes)

    async def _snapshot(self, live: LiveRoom) -> None:
        """Save the room's state (settled: exactly the log) and trim old history."""
        with anyio.CancelScope(shield=True):
            async with live.lock:
                if live.since_snapshot < self.snapshot_interval:
                    return  # another command saved it meanwhile
                await live.settle(lambda: self._load(live.room))
                await self.log.save_snapshot(live.room, live.state)
                live.since_snapshot = 0
                if self.history_retention >= 0:
                    await self.log.trim(live.room, live.state.seq + 1 - self.history_retention)


class _Call:
    """One room command on its way: who sent it, as whom, to which room."""

    __slots__ = ("caller", "command", "digest", "live", "session")

    def __init__(
        self, session: Session, caller: Caller, command: RoomCommand, live: LiveRoom
    ) -> None:
        self.session = session
        self.caller = caller
        self.command = command
        self.live = live
        # Once per command, retries included; the actor is the session's, fixed (H1).
        self.digest = command_digest(caller.actor, command)

    def record(self, now: int) -> CommandRecord | None:
        """Its audit record as of ``now``; None for platform activity, which is not an
        action of anyone: only commands are audited (R16)."""
        command = self.command
        if command.family == "feed":
            return None
        return CommandRecord(
            at=now, by=self.caller.actor, family=command.family, action=_ACTIONS[type(command)]
        )
