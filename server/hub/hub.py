"""The hub: rooms cached in memory, sessions, joins, fan-out.

Flow of one command (ARCHITECTURE.md), in :mod:`server.hub.pipeline`: authorize
against the grant looked up *now* (every command, R6) -> ``decide`` against the
room's cached state -> append to the room log (atomic, idempotent on the command
id, durable) -> fan the events out to every member, each event encoded once per
wire format -> ack the sender (after the append is durable, H4).

A room's commands are decided one at a time against its state and reach the
log in that order, so every member sees one total order with gap-free seqs
(H2). Fan-out never waits: a member whose socket does not keep up is closed as
a slow consumer.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Final

import anyio
import msgspec

from protocol.errors import Code, describe, is_retryable
from protocol.events import CreatorNotified, LiveEnded
from protocol.messages import (
    AccessChanged,
    Error,
    Event,
    Notification,
    Presence,
    Resumed,
    Snapshot,
    SnapshotReason,
)
from protocol.model import Actor, RoomState
from server.domain.grants import AccessEnd, Caller, Grant
from server.domain.refusal import Refusal
from server.domain.room import decide_enter, evolve, new_room
from server.framing import framed
from server.hub.auditor import Auditor
from server.hub.liveroom import LiveRoom
from server.hub.nodes import NodeLink
from server.hub.pipeline import CommandPipeline
from server.hub.session import Frame, Session
from server.journal import Journal
from server.log.base import CorruptRecordError, PendingEvent, RoomLog
from server.metrics import Metrics

__all__ = ["GrantLookup", "Hub", "LiveRoom", "Relation"]

logger = logging.getLogger("livepilot.hub")

GrantLookup = Callable[[str, str, int], Grant | None]
"""``(agency, creator, now) -> Grant | None``: the access in force right now."""
Relation = Callable[[Actor, str, int], bool]
"""``(actor, creator, now) -> bool``: whether the actor's refusals go to the
creator's audit trail (the creator, or staff of a linked agency; R16)."""

MAX_RESUME_EVENTS: Final = 10_000
"""A resume needing more events than this gets a snapshot instead (H3)."""
ROOM_IDLE_MS: Final = 300_000
"""A room idle and unused for at least this long leaves memory when the next room loads;
its log keeps everything."""


class Hub(CommandPipeline):
    """Every room and session of one server node."""

    def __init__(
        self,
        log: RoomLog,
        journal: Journal,
        grants: GrantLookup,
        *,
        related: Relation | None = None,
        clock: Callable[[], int],
        metrics: Metrics,
        snapshot_interval: int = 1000,
        history_retention: int = 10_000,
        room_idle_ms: int = ROOM_IDLE_MS,
    ) -> None:
        self.log = log
        self.journal = journal
        self.grants = grants
        self.related = related
        """None: a staff member is related to a creator when they have access."""
        self.clock = clock
        self.metrics = metrics
        self.snapshot_interval = snapshot_interval
        self.history_retention = history_retention
        self.room_idle_ms = room_idle_ms
        self.rooms: dict[str, LiveRoom] = {}
        """The rooms in memory (an idle room leaves it: :meth:`_evict_idle`)."""
        self._loaded: weakref.WeakValueDictionary[str, LiveRoom] = weakref.WeakValueDictionary()
        """Every room object still alive, evicted or not: a task that still holds an
        evicted room gets the same object back, so a room never has two."""
        self._swept_at = clock()
        self.sessions: dict[str, Session] = {}
        self._loading = anyio.Lock()
        self._drained = anyio.Event()
        self._creators: dict[str, set[Session]] = {}
        """The creator's own sessions, by creator id: where notifications go live."""
        self._staff: dict[str, set[Session]] = {}
        """Staff sessions by agency: whom an end of that agency's access may concern."""
        self.auditor = Auditor(journal, log)
        """Writes refusals to the journal; reads the whole audit trail (R16)."""
        self._notes: list[Notification] = []
        """Notifications published but not yet stored in the inbox."""
        self._json = msgspec.json.Encoder()
        self._msgpack = msgspec.msgpack.Encoder()
        self.nodes: NodeLink | None = None
        """Multi-node: the link to the other nodes (set by :class:`NodeLink`)."""
        self.unreadable: dict[str, CorruptRecordError] = {}
        """Rooms whose stored log did not decode when last read, and what did not:
        while any is, ``/readyz`` answers 503 (see :meth:`_cannot_read`)."""

    # --- sessions -------------------------------------------------------------

    def connect(self, session: Session) -> None:
        """Register an authenticated session."""
        self.sessions[session.id] = session
        actor = session.actor
        if actor.role == "creator":
            self._creators.setdefault(actor.id, set()).add(session)
        elif actor.agency is not None:
            self._staff.setdefault(actor.agency, set()).add(session)
        self.metrics.connections.inc()

    def disconnect(self, session: Session) -> None:
        """Forget a session and leave its rooms (presence is updated)."""
        if self.sessions.pop(session.id, None) is None:
            return
        actor = session.actor
        index, key = (
            (self._creators, actor.id)
            if actor.role == "creator"
            else (self._staff, actor.agency or "")
        )
        mine = index.get(key)
        if mine is not None:
            mine.discard(session)
            if not mine:
                del index[key]
        self.metrics.connections.dec()
        for room_id in list(session.rooms):
            self.leave(session, room_id)
        if not self.sessions:
            self._drained.set()

    def caller(self, session: Session, creator: str) -> Caller:
        """The caller a session is for a creator's room, with the grant in force now."""
        actor = session.actor
        if actor.role == "creator" or actor.agency is None:
            return Caller(actor=actor)
        grant = self.grants(actor.agency, creator, self.clock())
        if grant is not None:  # remembered, so this session is told when it ends
            if session.worked is None:
                session.worked = {creator}
            else:
                session.worked.add(creator)
        return Caller(actor=actor, grant=grant)

    def _related(self, caller: Caller, creator: str) -> bool:
        """Whether the caller's refusals go to ``creator``'s audit trail (R16)."""
        actor = caller.actor
        if actor.role == "creator":
            return actor.id == creator
        if self.related is not None:
            return self.related(actor, creator, self.clock())
        return caller.grant is not None

    def access_ended(self, agency: str, creator: str, status: AccessEnd) -> int:
        """``agency``'s access to ``creator`` ended: cut its sessions off from that
        creator's room at once, and from nothing else (R6, R9; decision 0015).

        Each session of the agency in the room leaves it (no later event of the
        room reaches it; the members left get a Presence without it). It, and any
        session of the agency that used this access for pre-LIVE work, gets
        ``access_changed`` (not terminal). No session is closed: its other rooms
        go on, and every later command or join for ``creator`` is refused, since
        each looks the grant up again. Returns how many sessions were told.
        """
        live = self.rooms.get(creator)
        notice = AccessChanged(
            creator=creator, agency=agency, status=status, terminal=False, room=creator
        )
        told = 0
        left = False
        for session in list(self._staff.get(agency, ())):
            in_room = live is not None and live.members.pop(session.id, None) is not None
            session.rooms.discard(creator)
            worked = session.worked
            if not in_room and (worked is None or creator not in worked):
                continue  # never used this access: nothing to tell
            if worked is not None:
                worked.discard(creator)
            left = left or in_room
            session.send(notice)
            told += 1
        if live is not None and left:
            live.touched = True
            self._presence(live)
        self.metrics.revocations.inc(told)
        return told

    # --- rooms ----------------------------------------------------------------

    async def room(self, room_id: str) -> LiveRoom:
        """The room, loaded from its snapshot and log if it is not in memory."""
        live = self.rooms.get(room_id)
        if live is not None:
            live.touched = True  # the caller is about to use it: not evicted by the next sweep
            return live
        async with self._loading:
            live = self.rooms.get(room_id) or self._loaded.get(room_id)
            if live is None:
                self._evict_idle()
                state, replayed = await self._load_counted(room_id)
                live = LiveRoom(state, self._on_event)
                live.since_snapshot = replayed  # they count towards the next snapshot (and trim)
                if self.nodes is not None:
                    self.nodes.attach(live)
                self._loaded[room_id] = live
            live.touched = True
            self.rooms[room_id] = live
            self.metrics.rooms.set(len(self.rooms))
        return live

    def _evict_idle(self) -> None:
        """Drop the rooms idle now and neither used nor busy at or since the last sweep.

        Runs when a room is loaded, the only way memory grows, at most once per
        ``room_idle_ms``. Dropping is all it takes: every event is in the log.
        """
        now = self.clock()
        if now - self._swept_at < self.room_idle_ms:
            return
        self._swept_at = now
        for room_id, live in list(self.rooms.items()):
            if not live.idle:
                live.touched = True  # a whole interval from now, at least, before it goes
            elif live.touched:
                live.touched = False
            else:
                del self.rooms[room_id]
        self.metrics.rooms.set(len(self.rooms))

    async def _load(self, room_id: str) -> RoomState:
        return (await self._load_counted(room_id))[0]

    async def _load_counted(self, room_id: str) -> tuple[RoomState, int]:
        """The room from its latest snapshot and the events after it; how many those were.

        :class:`CorruptRecordError` when a stored record does not decode."""
        try:
            state = await self.log.load_snapshot(room_id) or new_room(room_id, room_id)
            since = state.seq
            while True:
                events = await self.log.read_since(room_id, state.seq, MAX_RESUME_EVENTS)
                if not events:
                    break
                for event in events:
                    state = evolve(state, event)
        except CorruptRecordError as error:
            self._cannot_read(error)
            raise
        self._can_read(room_id)
        return state, state.seq - since

    def _can_read(self, room_id: str, seqs: range | None = None) -> None:
        """The room loaded (or, with ``seqs``, those events read): if what did not
        decode has been read since, it was repaired and the room is readable again."""
        mark = self.unreadable.get(room_id)
        if mark is None or (seqs is not None and mark.seq not in seqs):
            return
        del self.unreadable[room_id]
        logger.warning("room readable again", extra={"room": room_id})
        self.metrics.unreadable_rooms.set(len(self.unreadable))

    def _cannot_read(self, error: CorruptRecordError) -> None:
        """Count a record that did not decode; log it once per room, not per join
        (clients retry: every retry would add a traceback). The room's callers are
        answered ``ROOM_UNAVAILABLE`` meanwhile."""
        self.metrics.unreadable_records.labels(error.kind).inc()
        if error.room in self.unreadable:
            return
        self.unreadable[error.room] = error
        self.metrics.unreadable_rooms.set(len(self.unreadable))
        logger.error(
            "room cannot be read: %s",
            error,
            extra={"room": error.room, "kind": error.kind, "seq": error.seq},
        )

    def _precheck(self, caller: Caller, creator: str) -> Refusal | None:
        """Refuse callers with no business in a room before loading it."""
        actor = caller.actor
        if actor.role == "creator":
            return None if actor.id == creator else Refusal(Code.FORBIDDEN, "not your room")
        if caller.grant is None:
            return Refusal(Code.NO_ACCESS, "no LIVE Manager access to this creator")
        return None

    async def join(self, session: Session, room_id: str, last_seq: int | None = None) -> None:
        """Join (snapshot) or resume (missed events) a room; refusals answer with Error,
        and so does a room whose stored log does not decode (ROOM_UNAVAILABLE)."""
        try:
            await self._join(session, room_id, last_seq)
        except CorruptRecordError:  # counted and logged where it was read
            session.send(_error(Code.ROOM_UNAVAILABLE, "", room_id))

    async def _join(self, session: Session, room_id: str, last_seq: int | None) -> None:
        caller = self.caller(session, room_id)
        refusal = self._precheck(caller, room_id)
        if refusal is not None and self.nodes is not None and refusal.code == Code.NO_ACCESS:
            await self.nodes.refresh_access()  # another node may have just granted it
            caller = self.caller(session, room_id)
            refusal = self._precheck(caller, room_id)
        if refusal is not None:
            session.send(_error(refusal.code, refusal.message, room_id))
            return
        live = await self.room(room_id)
        with anyio.CancelScope(shield=True):  # see command(): never half-applied
            async with live.lock:
                # Settle first: the snapshot (or the replay) must be exactly the log.
                await live.settle(lambda: self._load(room_id))
                if self.nodes is not None:  # ...and exactly what members were sent
                    await self.nodes.catch_up(live)
                now = self.clock()
                decision = decide_enter(live.state, caller, now)
                if isinstance(decision, Refusal):
                    session.send(_error(decision.code, decision.message, room_id))
                    return
                # A resume is the same member coming back: no second "entered" notice.
                if decision and last_seq is None:
                    pending = [
                        PendingEvent(at=now, actor=live.state.room, by=caller.actor, body=b)
                        for b in decision
                    ]
                    await live.submit(self.log, None, pending, None).outcome
                    await live.settle(lambda: self._load(room_id))
                    if self.nodes is not None:
                        await self.nodes.catch_up(live)
                if not self._may_enter(session, live):
                    return  # access ended while the notice was stored (R6)
                if last_seq is None or not await self._replay(session, live, last_seq):
                    reason: SnapshotReason = "join" if last_seq is None else "history_truncated"
                    session.send(
                        Snapshot(
                            room=live.room, seq=live.state.seq, state=live.state, reason=reason
                        )
                    )
                # Checked again after the replay's reads, with no suspension point from
                # here to membership: an access end cannot slip in between (R6).
                if not session.is_closed and self._may_enter(session, live):
                    live.members[session.id] = session
                    session.rooms.add(live.room)
                    self._presence(live)
        await self._store_notes()

    def _may_enter(self, session: Session, live: LiveRoom) -> bool:
        """Whether a joining session may still become a member, with the access in
        force now; if not, its join is answered with the refusal."""
        if session.actor.role == "creator":
            return True
        decision = decide_enter(live.state, self.caller(session, live.room), self.clock())
        if isinstance(decision, Refusal):
            session.send(_error(decision.code, decision.message, live.room))
            return False
        return True

    async def _replay(self, session: Session, live: LiveRoom, last_seq: int) -> bool:
        """Send the events after ``last_seq`` then Resumed; False if history can't (H3)."""
        if last_seq > live.state.seq:
            return False
        events: list[Event] = []
        while last_seq + len(events) < live.state.seq:
            try:
                batch = await self.log.read_since(live.room, last_seq + len(events), 1000)
            except CorruptRecordError as error:
                self._cannot_read(error)
                raise
            if not batch or len(events) + len(batch) > MAX_RESUME_EVENTS:
                return False
            events.extend(batch)
        self._can_read(live.room, range(last_seq + 1, last_seq + len(events) + 1))
        for event in events:
            session.send(event)
        session.send(Resumed(room=live.room, seq=live.state.seq))
        return True

    def leave(self, session: Session, room_id: str) -> None:
        """Leave a room (no-op if not a member)."""
        session.rooms.discard(room_id)
        live = self.rooms.get(room_id)
        if live is not None and live.members.pop(session.id, None) is not None:
            live.touched = True
            self._presence(live)

    def _end_live_part(self, live: LiveRoom) -> None:
        """The LIVE ended: staff leave the room (R11). Their sessions stay open for
        pre-LIVE work; they may join again when the creator goes live again."""
        staff = [s for s in live.members.values() if s.actor.role == "staff"]
        for session in staff:
            del live.members[session.id]
            session.rooms.discard(live.room)
        if staff:
            self._presence(live)

    def _presence(self, live: LiveRoom) -> None:
        if self.nodes is not None:  # merged with the other nodes' members, then shown
            self.nodes.members_changed(live)
            return
        members = list({s.actor: None for s in live.members.values()})
        self._broadcast(live, Presence(room=live.room, members=members))

    def _on_event(self, live: LiveRoom, event: Event) -> None:
        """A durable event, in order: fan it out, and apply what it means for members."""
        self.deliver(live, event)

    def deliver(self, live: LiveRoom, event: Event, *, local: bool = True) -> None:
        """Fan a durable event out to this node's members, in order, and apply what it
        means for them; ``local``: this node appended it (so it stores its notice)."""
        started = time.perf_counter()
        self._broadcast(live, event)
        body = event.body
        if isinstance(body, CreatorNotified):
            note = _notification(event, body)
            if local:
                self._notes.append(note)
            for session in self._creators.get(note.creator, ()):
                session.send(note)
        elif isinstance(body, LiveEnded):
            self._end_live_part(live)
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)

    # --- fan-out --------------------------------------------------------------

    def broadcast(self, live: LiveRoom, message: Event | Presence) -> None:
        """Deliver one message to every member here and send it now."""
        self._broadcast(live, message)
        for session in live.members.values():
            session.flush()

    def _broadcast(self, live: LiveRoom, message: Event | Presence) -> None:
        """Deliver one message to every member, encoded and framed once per wire format."""
        json_frame: Frame | None = None
        msgpack_frame: Frame | None = None
        json_wire = msgpack_wire = b""
        for session in live.members.values():
            if session.codec.binary:
                if msgpack_frame is None:
                    msgpack_frame = self._msgpack.encode(message)
                    msgpack_wire = framed(msgpack_frame, True)
                session.deliver(msgpack_frame, msgpack_wire)
            else:
                if json_frame is None:
                    json_frame = self._json.encode(message)
                    json_wire = framed(json_frame, False)
                session.deliver(json_frame, json_wire)

    def close_all(self, code: int, reason: str) -> None:
        """Ask every session to close (shutdown)."""
        for session in list(self.sessions.values()):
            session.close(code, reason)

    async def drained(self) -> None:
        """Return once no session is connected."""
        while self.sessions:
            self._drained = anyio.Event()
            await self._drained.wait()


def _error(code: Code, message: str, room: str | None = None) -> Error:
    return Error(
        code=code, message=message or describe(code), retryable=is_retryable(code), room=room
    )


def _notification(event: Event, body: CreatorNotified) -> Notification:
    return Notification(
        notification_id=body.notification_id,
        creator=event.actor,
        kind=body.kind,
        text=body.text,
        at=event.at,
        by=event.by,
    )
