"""The hub without sockets: sessions are outboxes, the log is in memory."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.abc

from protocol import commands as c
from protocol.codec import Codec
from protocol.errors import Code
from protocol.events import CreatorNotified, ProductAdded
from protocol.messages import Ack, Error, Event, Refused, RoomCommand, ServerMessage, Snapshot
from protocol.model import Actor, BagItem, RoomState, Viewer
from server.domain.grants import Grant
from server.hub.hub import Hub
from server.hub.session import Session
from server.journal import AuditQuery, MemoryJournal
from server.log.base import (
    AppendResult,
    AppliedQuery,
    CommandRecord,
    GrantVersion,
    LogWriteError,
    PendingEvent,
)
from server.log.memory import MemoryRoomLog
from server.metrics import Metrics

CODEC = Codec("json")
CREATOR = Actor(role="creator", id="cr")
STAFF = Actor(role="staff", id="st", agency="ag")
NOW = 1_700_000_000_000


def make_hub(log: MemoryRoomLog | None = None, *, granted: bool = True) -> Hub:
    def grants(agency: str, creator: str, now: int) -> Grant | None:
        return Grant(agency=agency, creator=creator) if granted else None

    return Hub(
        log or MemoryRoomLog(), MemoryJournal(), grants, clock=lambda: NOW, metrics=Metrics()
    )


def session(actor: Actor, sid: str) -> Session:
    return Session(sid, actor, CODEC, expires_at=NOW + 3_600_000, max_buffered=1 << 20)


def drain(s: Session) -> list[ServerMessage]:
    return [CODEC.decode_server(frame) for frame in s.take_frames()]


class OtherNodeFirst(MemoryRoomLog):
    """A log where another node appends one event just before our first append."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

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
        if not self.raced and command_id == "mine":
            self.raced = True
            other = PendingEvent(
                at=NOW,
                actor="cr",
                by=CREATOR,
                body=ProductAdded(item=BagItem(product_id="p-other"), position=0),
            )
            await super().append(room, "theirs", [other], expected_seq)
        return await super().append(
            room,
            command_id,
            events,
            expected_seq,
            record,
            digest=digest,
            grant_version=grant_version,
        )


async def test_conflict_reloads_and_decides_again() -> None:
    """When another node appended first, the hub reloads the room and re-decides."""
    # H2 H5 (multi-node: optimistic append)
    log = OtherNodeFirst()
    hub = make_hub(log)
    creator = session(CREATOR, "c1")
    hub.connect(creator)
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    await hub.command(
        creator, c.BagAdd(command_id="mine", room="cr", item=BagItem(product_id="p-mine"))
    )
    acks = [m for m in drain(creator) if isinstance(m, Ack)]
    assert acks[-1] == Ack(command_id="mine", seq=3)
    state = (await hub.room("cr")).state
    assert [i.product_id for i in state.bag] == ["p-other", "p-mine"]
    assert state.seq == await log.last_seq("cr") == 3


async def test_resend_is_acked_once_and_audited_once() -> None:
    """A resent command gets the same ack; the audit trail records it once."""
    # H1 R16
    hub = make_hub()
    creator = session(CREATOR, "c1")
    hub.connect(creator)
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    add = c.BagAdd(command_id="add", room="cr", item=BagItem(product_id="p1"))
    await hub.command(creator, add)
    await hub.command(creator, add)
    acks = [m for m in drain(creator) if isinstance(m, Ack) and m.command_id == "add"]
    assert len(acks) == 2
    assert acks[0] == acks[1]
    trail = await hub.auditor.trail(AuditQuery(creator="cr", family="bag"))
    assert [(e.action, e.code) for e in trail] == [("bag_add", None)]


async def test_an_applied_command_is_recorded_in_its_append() -> None:
    """An acked command's audit record, with its real actor, is in the log with its
    events: nothing waits in the journal's queue; platform activity is not recorded."""
    # R16 H4
    log = MemoryRoomLog()
    hub = make_hub(log)
    creator, staff = session(CREATOR, "c1"), session(STAFF, "s1")
    for s in (creator, staff):
        hub.connect(s)
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    await hub.command(staff, c.Mute(command_id="m1", room="cr", user_id="u1"))
    await hub.command(
        creator,
        c.FeedComment(
            command_id="f1", room="cr", comment_id="f1", user=Viewer(unique_id="v"), content="hi"
        ),
    )
    assert Ack(command_id="m1", seq=2) in drain(staff)
    applied = await log.applied("cr", AppliedQuery())
    assert [(a.command_id, a.last_seq, a.record) for a in applied] == [
        ("m1", 2, CommandRecord(at=NOW, by=STAFF, family="moderation", action="mute")),
        ("go", 1, CommandRecord(at=NOW, by=CREATOR, family="live", action="start_live")),
    ]
    assert await hub.journal.query_audit(AuditQuery(creator="cr")) == []


async def test_staff_without_grant_is_refused_before_the_room_loads() -> None:
    """A staff command without access is refused without loading the room."""
    # R6
    hub = make_hub(granted=False)
    staff = session(STAFF, "s1")
    hub.connect(staff)
    await hub.command(staff, c.BagPin(command_id="pin", room="cr", product_id="p1"))
    [refused] = drain(staff)
    assert isinstance(refused, Refused)
    assert refused.code == Code.NO_ACCESS
    assert "cr" not in hub.rooms


async def test_members_see_events_in_order_and_leavers_stop_receiving() -> None:
    """Every member gets each event in seq order; a member who left gets no more."""
    # H2
    hub = make_hub()
    creator, watcher = session(CREATOR, "c1"), session(CREATOR, "c2")
    for s in (creator, watcher):
        hub.connect(s)
        await hub.join(s, "cr")
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    hub.leave(watcher, "cr")
    await hub.command(creator, c.FeedViewers(command_id="v", room="cr", total=3))
    seqs = [m.seq for m in drain(creator) if isinstance(m, Event)]
    watched = drain(watcher)
    assert seqs == [1, 2]
    assert isinstance(watched[0], Snapshot)
    assert [m.seq for m in watched if isinstance(m, Event)] == [1]
    hub.disconnect(creator)
    hub.disconnect(watcher)
    assert not hub.sessions
    await hub.drained()


class BrokenDisk(MemoryRoomLog):
    """A log whose writes fail, as on a full or failing disk."""

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
        raise LogWriteError("disk I/O error")


async def test_storage_failure_refuses_with_a_retryable_code_and_applies_nothing() -> None:
    """When the log cannot write, the command is refused UNAVAILABLE and the room is unchanged."""
    # H4 H6
    hub = make_hub(BrokenDisk())
    creator = session(CREATOR, "c1")
    hub.connect(creator)
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    [refused] = drain(creator)
    assert isinstance(refused, Refused)
    assert refused.code == Code.UNAVAILABLE
    assert (await hub.room("cr")).state.status == "offline"


class Gate(MemoryRoomLog):
    """A log whose appends wait at a gate: shows how many are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.waiting = 0
        self.all_waiting = anyio.Event()
        self.expect = 0

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
        self.waiting += 1
        if self.waiting == self.expect:
            self.all_waiting.set()
        await self.gate.wait()
        return await super().append(
            room,
            command_id,
            events,
            expected_seq,
            record,
            digest=digest,
            grant_version=grant_version,
        )


def comment(i: int | str) -> c.FeedComment:
    return c.FeedComment(
        command_id=f"c{i}", room="cr", comment_id=f"c{i}", user=Viewer(unique_id="v"), content="hi"
    )


async def test_a_rooms_appends_are_pipelined_not_serialized() -> None:
    """Commands of one room are all appending at once; acks and events keep their order."""
    # H2 H4
    log = Gate()
    hub = make_hub(log)
    creator = session(CREATOR, "c1")
    hub.connect(creator)
    await hub.join(creator, "cr")
    log.gate.set()
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    drain(creator)
    log.gate = anyio.Event()
    log.waiting, log.expect = 0, 10
    early: list[ServerMessage] = []
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(hub.command, creator, comment(i))
        try:
            with anyio.fail_after(5):
                await log.all_waiting.wait()  # ten appends in flight, none durable yet
            early = drain(creator)
        finally:
            log.gate.set()  # never leave the shielded commands waiting
    assert early == []  # nothing shown or acked before it is durable (H4)
    messages = drain(creator)
    assert [m.seq for m in messages if isinstance(m, Event)] == list(range(2, 12))
    assert len([m for m in messages if isinstance(m, Ack)]) == 10
    assert (await hub.room("cr")).state.seq == await log.last_seq("cr") == 11


async def test_a_resend_among_commands_in_flight_leaves_the_room_equal_to_its_log() -> None:
    """A resend decided again while others are in flight is acked once, and the room is
    rebuilt from the log so later commands are decided on the truth."""
    # H1 H2 H5
    log = Gate()
    log.gate.set()
    hub = make_hub(log)
    creator = session(CREATOR, "c1")
    hub.connect(creator)
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    await hub.command(creator, comment("dup"))
    log.gate = anyio.Event()
    log.waiting, log.expect = 0, 6
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.command, creator, comment("dup"))
        for i in range(5):
            tg.start_soon(hub.command, creator, comment(i))
        try:
            with anyio.fail_after(5):
                await log.all_waiting.wait()
        finally:
            log.gate.set()
    acks = [m for m in drain(creator) if isinstance(m, Ack)]
    assert [a.seq for a in acks if a.command_id == "cdup"] == [2, 2]
    assert sorted(a.command_id for a in acks) == sorted(
        ["go", "cdup", "cdup", *(f"c{i}" for i in range(5))]
    )
    await hub.command(creator, comment("after"))
    live = await hub.room("cr")
    rebuilt = await hub._load("cr")
    assert live.state == rebuilt
    assert live.state.seq == 8


async def test_a_resend_of_a_command_still_in_flight_gets_its_ack() -> None:
    """A resend arriving while the first append is not yet durable waits for it (H1)."""
    # H1
    log = Gate()
    log.gate.set()
    hub = make_hub(log)
    creator, again = session(CREATOR, "c1"), session(CREATOR, "c2")
    for s in (creator, again):
        hub.connect(s)
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    add = c.BagAdd(command_id="add", room="cr", item=BagItem(product_id="p1"))
    log.gate = anyio.Event()
    log.waiting, log.expect = 0, 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.command, creator, add)
        try:
            with anyio.fail_after(5):
                await log.all_waiting.wait()  # the first append is in flight
            tg.start_soon(hub.command, again, add)  # the client resends on a new session
            await anyio.wait_all_tasks_blocked()
        finally:
            log.gate.set()
    first = [m for m in drain(creator) if isinstance(m, Ack) and m.command_id == "add"]
    second = [m for m in drain(again) if isinstance(m, Ack | Refused)]
    assert first == second == [Ack(command_id="add", seq=2)]
    assert [i.product_id for i in (await hub.room("cr")).state.bag] == ["p1"]


class Spawned:
    """A task group's ``start_soon`` that counts what it starts."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        self.started = 0

    def __call__(self, fn: Callable[..., Coroutine[Any, Any, object]], *args: object) -> None:
        self.started += 1
        self.tg.start_soon(fn, *args)


async def live_creator(hub: Hub) -> Session:
    """The creator's session, connected, with the room live (seq 1)."""
    creator = session(CREATOR, "c1")
    hub.connect(creator)
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    return creator


async def pipelined(
    hub: Hub, sender: Session, command: RoomCommand, spawn: Callable[..., None]
) -> None:
    """Send ``command`` the way the endpoint does, then wait until it is answered."""
    answered = await hub.command(sender, command, spawn)
    assert answered is not None
    with anyio.fail_after(5):
        await answered


def snapshotting_hub(log: MemoryRoomLog) -> Hub:
    """A hub that saves a snapshot every 2 events."""
    return Hub(
        log,
        MemoryJournal(),
        lambda a, cr, now: Grant(agency=a, creator=cr),
        clock=lambda: NOW,
        metrics=Metrics(),
        snapshot_interval=2,
    )


async def test_pipelined_command_is_answered_without_a_task() -> None:
    """With spawn, an accepted command returns at once and is acked, counted and
    audited by a callback when durable: no task is started for it."""
    # H4 (acked once durable) R16 (audited)
    hub = make_hub()
    creator = await live_creator(hub)
    async with anyio.create_task_group() as tg:
        spawn = Spawned(tg)
        await pipelined(hub, creator, c.Mute(command_id="m1", room="cr", user_id="u1"), spawn)
    assert spawn.started == 0
    assert Ack(command_id="m1", seq=2) in drain(creator)
    trail = await hub.auditor.trail(AuditQuery(creator="cr"))
    assert sorted((e.seq, e.action) for e in trail) == [(1, "start_live"), (2, "mute")]


async def test_pipelined_command_with_work_left_runs_it_in_a_task() -> None:
    """With spawn, a command that leaves work to wait for (a snapshot is due)
    hands it to a task, and is answered once that is done."""
    # H3 (snapshots bound the replay)
    log = MemoryRoomLog()
    hub = snapshotting_hub(log)
    creator = await live_creator(hub)
    async with anyio.create_task_group() as tg:
        spawn = Spawned(tg)
        await pipelined(hub, creator, c.Mute(command_id="m1", room="cr", user_id="u1"), spawn)
    assert spawn.started == 1
    snapshot = await log.load_snapshot("cr")
    assert snapshot is not None
    assert snapshot.seq == 2


async def test_pipelined_command_after_a_conflict_is_decided_again() -> None:
    """With spawn, a command whose append conflicted is decided again in a task
    and acked with the seq it really got."""
    # H2 H5 (multi-node: optimistic append)
    hub = make_hub(OtherNodeFirst())
    creator = await live_creator(hub)
    async with anyio.create_task_group() as tg:
        spawn = Spawned(tg)
        await pipelined(
            hub,
            creator,
            c.BagAdd(command_id="mine", room="cr", item=BagItem(product_id="p-mine")),
            spawn,
        )
    assert spawn.started == 1
    acks = [m for m in drain(creator) if isinstance(m, Ack)]
    assert acks[-1] == Ack(command_id="mine", seq=3)


async def test_pipelined_command_is_answered_even_when_no_task_can_start() -> None:
    """When the work left cannot be started (no task group any more, at shutdown),
    the command still counts as answered: the connection's slot comes back."""
    hub = snapshotting_hub(MemoryRoomLog())
    creator = await live_creator(hub)

    def closed_group(fn: Callable[..., Coroutine[Any, Any, object]], *args: object) -> None:
        raise RuntimeError("this task group is no longer active")

    await pipelined(hub, creator, c.Mute(command_id="m1", room="cr", user_id="u1"), closed_group)
    assert Ack(command_id="m1", seq=2) in drain(creator)  # durable and acked all the same
    # R16: and on the audit trail
    trail = await hub.auditor.trail(AuditQuery(creator="cr", family="moderation"))
    assert [(e.action, e.seq) for e in trail] == [("mute", 2)]


class SnapshotsFail(MemoryRoomLog):
    """A log whose snapshots cannot be written (a full disk, say)."""

    async def save_snapshot(self, room: str, state: RoomState) -> None:
        raise LogWriteError("disk full")


async def test_failing_work_left_of_a_command_does_not_stop_its_task_group() -> None:
    """Work left of a command that fails (here: its snapshot) is logged; the task
    group it runs in (the runtime's, shared by the whole node) carries on."""
    hub = snapshotting_hub(SnapshotsFail())
    creator = await live_creator(hub)
    async with anyio.create_task_group() as tg:
        spawn = Spawned(tg)
        await pipelined(hub, creator, c.Mute(command_id="m1", room="cr", user_id="u1"), spawn)
        await pipelined(hub, creator, c.Mute(command_id="m2", room="cr", user_id="u2"), spawn)
    assert spawn.started == 2  # both ran their (failing) snapshot; the group was not cancelled
    acks = [m for m in drain(creator) if isinstance(m, Ack)]
    assert [a.command_id for a in acks][-2:] == ["m1", "m2"]


async def test_command_waiting_for_the_room_uses_the_access_in_force_when_decided() -> None:
    """A staff command held behind the room lock (a join, a snapshot) is decided with
    the grant in force when it gets the lock: revoked meanwhile, it is refused."""
    # R6 (every command is checked against the access in force) R9 (revoke)
    granted = {"ag": True}
    log = MemoryRoomLog()
    hub = Hub(
        log,
        MemoryJournal(),
        lambda a, cr, now: Grant(agency=a, creator=cr) if granted[a] else None,
        clock=lambda: NOW,
        metrics=Metrics(),
    )
    creator = await live_creator(hub)
    staff = session(STAFF, "s1")
    hub.connect(staff)
    live = await hub.room("cr")
    async with anyio.create_task_group() as tg:
        await live.lock.acquire()  # as a join settling or a snapshot would
        tg.start_soon(
            hub.command,
            staff,
            c.BagAdd(command_id="late", room="cr", item=BagItem(product_id="p1")),
        )
        await anyio.wait_all_tasks_blocked()  # the command waits for the lock
        granted["ag"] = False
        assert hub.access_ended("ag", "cr", "revoked") == 1
        live.lock.release()
    events = await log.read_since("cr", 0, 100)
    assert events is not None
    assert [e.command_id for e in events] == ["go"]
    assert creator.is_closed is False


class HeldNotice(MemoryRoomLog):
    """A log that holds the append of a staff-entered notice until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = anyio.Event()
        self.release = anyio.Event()

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
        if any(isinstance(e.body, CreatorNotified) for e in events):
            self.reached.set()
            await self.release.wait()
        return await super().append(
            room,
            command_id,
            events,
            expected_seq,
            record,
            digest=digest,
            grant_version=grant_version,
        )


async def test_join_whose_access_ends_meanwhile_never_becomes_a_member() -> None:
    """Access that ends while a join stores the creator's notice: the join is refused,
    no snapshot, no membership; the session is told and stays open."""
    # R6 (cut off at once: no member slips in after the end) R11 (joining needs access)
    granted = {"ag": True}
    log = HeldNotice()
    hub = Hub(
        log,
        MemoryJournal(),
        lambda a, cr, now: Grant(agency=a, creator=cr) if granted[a] else None,
        clock=lambda: NOW,
        metrics=Metrics(),
    )
    await live_creator(hub)
    staff = session(STAFF, "s1")
    hub.connect(staff)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub.join, staff, "cr")
            await log.reached.wait()
            granted["ag"] = False
            assert hub.access_ended("ag", "cr", "revoked") == 1  # it was using the access
            log.release.set()
    got = drain(staff)
    assert [type(m).__name__ for m in got] == ["AccessChanged", "Error"]
    assert isinstance(got[1], Error)
    assert (got[1].code, got[1].room) == (Code.NO_ACCESS, "cr")
    assert "s1" not in hub.rooms["cr"].members
    assert staff.rooms == set()
    assert not staff.is_closed


class WireSink:
    """A sink that keeps what the fan-out handed it: the frame and its framed bytes."""

    def __init__(self) -> None:
        self.writes: list[tuple[bytes, bytes | None]] = []

    def write(self, frame: bytes, wire: bytes | None = None, /) -> None:
        self.writes.append((frame, wire))

    def buffered(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass

    def flush(self) -> None:
        pass


async def test_fan_out_frames_each_event_once_per_format() -> None:
    """Members of one format get the very same framed bytes of an event (framed once,
    by the hub, not per member nor through a module-global cache); each format its own."""
    from server.wire import framed

    hub = make_hub()
    sinks = {name: WireSink() for name in ("j1", "j2", "m1", "m2")}
    members = [
        Session(
            name,
            CREATOR,
            Codec("msgpack" if name.startswith("m") else "json"),
            expires_at=NOW + 3_600_000,
            max_buffered=1 << 20,
            sink=sinks[name],
        )
        for name in sinks
    ]
    for member in members:
        hub.connect(member)
        await hub.join(member, "cr")
    await hub.command(members[0], c.StartLive(command_id="go", room="cr"))
    started = {
        name: [w for w in sink.writes if w[1] is not None][-1] for name, sink in sinks.items()
    }
    (j1_frame, j1_wire), (_, j2_wire) = started["j1"], started["j2"]
    (m1_frame, m1_wire), (_, m2_wire) = started["m1"], started["m2"]
    assert j1_wire is j2_wire  # one object: framed once for both JSON members
    assert m1_wire is m2_wire
    assert j1_wire == framed(j1_frame, False)
    assert m1_wire == framed(m1_frame, True)
