"""Several hubs (nodes) on one shared log and a memory bus: cross-node delivery."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from protocol import commands as c
from protocol.codec import Codec
from protocol.messages import AccessChanged, Ack, Event, Presence, ServerMessage, Snapshot
from protocol.model import Actor, BagItem
from server.bus.memory import MemoryNetwork, WakingMemoryLog
from server.domain.grants import Grant
from server.hub.hub import Hub
from server.hub.nodes import NodeLink
from server.hub.session import Session
from server.journal import MemoryJournal
from server.log.memory import MemoryStore
from server.metrics import Metrics

CODEC = Codec("json")
CREATOR = Actor(role="creator", id="cr")
STAFF = Actor(role="staff", id="st", agency="ag")
STAFF2 = Actor(role="staff", id="st2", agency="ag")
NOW = 1_700_000_000_000
TIMEOUT = 5.0


class Cluster:
    """Nodes sharing one store and one memory network."""

    def __init__(self, tasks: anyio.abc.TaskGroup, presence_ttl_ms: int = 6_000) -> None:
        self.store = MemoryStore()
        self.network = MemoryNetwork()
        self.journal = MemoryJournal()
        self.tasks = tasks
        self.ttl = presence_ttl_ms
        self.granted = True
        self.links: dict[str, NodeLink] = {}
        self.epochs: dict[str, str] = {}
        self.logs: dict[str, WakingMemoryLog] = {}

    def node(self, name: str) -> Hub:
        bus = self.network.bus(name)
        log = self.logs[name] = WakingMemoryLog(self.store, bus, self.epochs)
        hub = Hub(log, self.journal, self._grants, clock=lambda: NOW, metrics=Metrics())
        self.links[name] = NodeLink(hub, bus, spawn=self.tasks.start_soon, presence_ttl_ms=self.ttl)
        return hub

    def _grants(self, agency: str, creator: str, now: int) -> Grant | None:
        return Grant(agency=agency, creator=creator) if self.granted else None


@asynccontextmanager
async def cluster(**kw: int) -> AsyncIterator[Cluster]:
    with anyio.fail_after(TIMEOUT * 4):
        async with anyio.create_task_group() as tasks:
            yield Cluster(tasks, **kw)
            tasks.cancel_scope.cancel()


def session(hub: Hub, actor: Actor, sid: str) -> Session:
    s = Session(sid, actor, CODEC, expires_at=NOW + 3_600_000, max_buffered=1 << 22)
    hub.connect(s)
    return s


class Inbox:
    """What a session received, decoded, waited for without sleeping."""

    def __init__(self, s: Session) -> None:
        self.session = s
        self.got: list[ServerMessage] = []

    async def until(self, done: Callable[[list[ServerMessage]], bool]) -> list[ServerMessage]:
        with anyio.fail_after(TIMEOUT):
            while not done(self.got):
                await self.session.wait_frames()
                self.got += [CODEC.decode_server(f) for f in self.session.take_frames()]
        return self.got

    def events(self) -> list[Event]:
        return [m for m in self.got if isinstance(m, Event)]

    def seqs(self) -> list[int]:
        return [e.seq for e in self.events()]


def upto(seq: int) -> Callable[[list[ServerMessage]], bool]:
    return lambda got: any(isinstance(m, Event) and m.seq >= seq for m in got)


def gap_free(inbox: Inbox, start: int) -> None:
    """Every event after the join's snapshot, once, in order (H2)."""
    seqs = inbox.seqs()
    assert seqs == list(range(start + 1, start + 1 + len(seqs))), seqs


def joined_at(inbox: Inbox) -> int:
    return next(m.seq for m in inbox.got if isinstance(m, Snapshot))


def add(cid: str, product: str) -> c.BagAdd:
    return c.BagAdd(command_id=cid, room="cr", item=BagItem(product_id=product))


async def test_two_nodes_deliver_both_ways_in_order() -> None:
    """Staff on node A and the creator on node B see each other's events, in order."""
    # H2 (multi-node)
    async with cluster() as cl:
        a, b = cl.node("a"), cl.node("b")
        creator, staff = session(b, CREATOR, "c1"), session(a, STAFF, "s1")
        ci, si = Inbox(creator), Inbox(staff)
        await b.command(creator, c.StartLive(command_id="go", room="cr"))
        await b.join(creator, "cr")
        await a.join(staff, "cr")
        await si.until(lambda got: any(isinstance(m, Snapshot) for m in got))
        await a.command(staff, add("s-1", "p1"))
        await b.command(creator, add("c-1", "p2"))
        await a.command(staff, add("s-2", "p3"))
        last = await a.log.last_seq("cr")
        await ci.until(upto(last))
        await si.until(upto(last))
        gap_free(ci, joined_at(ci))
        gap_free(si, joined_at(si))
        assert [e.command_id for e in si.events()][-3:] == ["s-1", "c-1", "s-2"]
        assert [e.command_id for e in ci.events()][-3:] == ["s-1", "c-1", "s-2"]
        # Each sender sees its event before its ack, as on one node.
        got = si.got
        ack = got.index(Ack(command_id="s-2", seq=last))
        assert any(isinstance(m, Event) and m.command_id == "s-2" for m in got[:ack])


async def test_concurrent_appends_on_two_nodes_are_one_order() -> None:
    """Commands sent to two nodes at once are ordered by the log; every member sees
    every event once, in order, and every sender's ack names its own event's seq."""
    # H2 H5 (multi-node)
    async with cl_ctx() as (_cl, a, b, creator, staff, ci, si):

        async def send(hub: Hub, s: Session, prefix: str) -> None:
            for i in range(15):
                await hub.command(s, add(f"{prefix}{i}", f"{prefix}p{i}"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, a, staff, "s")
            tg.start_soon(send, b, creator, "c")
        last = await a.log.last_seq("cr")
        await ci.until(upto(last))
        await si.until(upto(last))
        for inbox in (ci, si):
            gap_free(inbox, joined_at(inbox))
            assert inbox.seqs()[-1] == last
        by_id = {e.command_id: e.seq for e in si.events()}
        acks = [m for m in ci.got + si.got if isinstance(m, Ack) and m.command_id != "go"]
        assert len(acks) == 30
        assert all(by_id[ack.command_id] == ack.seq for ack in acks)
        for hub in (a, b):  # each node's room settles on the log's state
            live = await hub.room("cr")
            async with live.lock:
                await live.settle(functools.partial(hub._load, "cr"))
            assert len(live.state.bag) == 30


@asynccontextmanager
async def cl_ctx() -> AsyncIterator[tuple[Cluster, Hub, Hub, Session, Session, Inbox, Inbox]]:
    async with cluster() as cl:
        a, b = cl.node("a"), cl.node("b")
        creator, staff = session(b, CREATOR, "c1"), session(a, STAFF, "s1")
        ci, si = Inbox(creator), Inbox(staff)
        await b.command(creator, c.StartLive(command_id="go", room="cr"))
        await b.join(creator, "cr")
        await a.join(staff, "cr")
        await si.until(lambda got: any(isinstance(m, Snapshot) for m in got))
        await ci.until(lambda got: any(isinstance(m, Snapshot) for m in got))
        yield cl, a, b, creator, staff, ci, si


async def test_a_cut_bus_is_filled_from_the_log() -> None:
    """A node that heard no wake-ups for a while (its bus connection cut) delivers
    every missed event once, in order, as soon as it hears again."""
    # H2 H3 (multi-node)
    async with cl_ctx() as (cl, a, _b, _creator, staff, ci, _si):
        cl.network.cut("b")
        for i in range(5):
            await a.command(staff, add(f"s{i}", f"p{i}"))
        assert not [e for e in ci.events() if e.command_id == "s0"]
        cl.network.restore("b")
        last = await a.log.last_seq("cr")
        await ci.until(upto(last))
        gap_free(ci, joined_at(ci))
        # A wake-up that names a seq past a gap fills the gap too.
        cl.network.cut("b")
        await a.command(staff, add("x1", "x1"))
        cl.network.restore("b")
        await a.command(staff, add("x2", "x2"))
        await ci.until(upto(last + 2))
        gap_free(ci, joined_at(ci))


async def test_lost_history_sends_members_a_snapshot_instead_of_skipping() -> None:
    """The shared store lost the room (a new epoch, seqs from 1 again): members on
    the other node get a snapshot with reason history_lost, then its events in order."""
    # H3 H2 (multi-node: a restarted Redis without the room's data)
    async with cl_ctx() as (cl, a, b, creator, _staff, ci, si):
        for i in range(3):
            await b.command(creator, add(f"old{i}", f"p{i}"))
        await si.until(upto(4))
        cl.logs["a"].lose_history("cr")
        # Decided on b's stale state, it conflicts: b reloads (the room is not LIVE
        # any more), and the creator starts the LIVE again - at seq 1 of a new history.
        await b.command(creator, add("new0", "n0"))
        await b.command(creator, c.StartLive(command_id="go-again", room="cr"))
        await b.command(creator, add("new1", "n1"))
        await si.until(
            lambda got: any(isinstance(m, Snapshot) and m.reason == "history_lost" for m in got)
        )
        lost = next(m for m in si.got if isinstance(m, Snapshot) and m.reason == "history_lost")
        assert lost.seq < 4  # the new history's seqs, not the old ones
        last = await a.log.last_seq("cr")
        at = si.got.index(lost) + 1
        if lost.seq < last:
            await si.until(lambda got: upto(last)(got[at:]))
        after = si.got[at:]
        seqs = [m.seq for m in after if isinstance(m, Event)]
        assert seqs == list(range(lost.seq + 1, last + 1))
        assert "p0" not in {p.product_id for p in lost.state.bag}  # the old history's
        for inbox in (si, ci):  # on both nodes
            await inbox.until(
                lambda got: any(isinstance(m, Snapshot) and m.reason == "history_lost" for m in got)
            )


async def test_same_command_on_both_nodes_applies_once() -> None:
    """The same command id sent to both nodes at once is applied once; both senders
    get the same ack."""
    # H1 (multi-node)
    async with cl_ctx() as (_cl, a, b, _creator, staff, ci, si):
        staff_b = session(b, STAFF, "s2")
        sb = Inbox(staff_b)
        cmd = add("same", "p-same")
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.command, staff, cmd)
            tg.start_soon(b.command, staff_b, cmd)
        await si.until(lambda got: any(isinstance(m, Ack) and m.command_id == "same" for m in got))
        await sb.until(lambda got: any(isinstance(m, Ack) for m in got))
        [ack_a] = [m for m in si.got if isinstance(m, Ack) and m.command_id == "same"]
        [ack_b] = [m for m in sb.got if isinstance(m, Ack)]
        assert ack_a == ack_b
        await ci.until(upto(ack_a.seq))
        assert [e.command_id for e in ci.events()].count("same") == 1
        stored = await a.log.read_since("cr", 0, 100) or []
        assert [e.command_id for e in stored].count("same") == 1


async def test_access_end_on_one_node_cuts_sessions_on_the_other() -> None:
    """An access end seen by node A cuts the agency's staff off the room on node B."""
    # R6 (every server node)
    async with cluster() as cl:
        a, b = cl.node("a"), cl.node("b")
        creator, staff = session(a, CREATOR, "c1"), session(b, STAFF, "s1")
        ci, si = Inbox(creator), Inbox(staff)
        await a.command(creator, c.StartLive(command_id="go", room="cr"))
        await a.join(creator, "cr")
        await b.join(staff, "cr")
        await si.until(lambda got: any(isinstance(m, Snapshot) for m in got))
        cl.granted = False
        cl.links["a"].access_ended_here("ag", "cr", "revoked")
        await si.until(lambda got: any(isinstance(m, AccessChanged) for m in got))
        assert "cr" not in staff.rooms
        await a.command(creator, add("after", "p-after"))
        await ci.until(lambda got: any(isinstance(m, Ack) and m.command_id == "after" for m in got))
        await b.command(staff, add("late", "p-late"))  # refused: no grant any more
        assert not [m for m in si.got if isinstance(m, Event) and m.command_id == "after"]


async def test_presence_merges_nodes_and_a_dead_node_lapses() -> None:
    """Members on every node show in the room's presence; a node that stops
    refreshing (crashed) disappears from it once its entry expires."""
    # R15 (multi-node presence)
    async with cluster(presence_ttl_ms=300) as cl:
        a, b = cl.node("a"), cl.node("b")
        cl.tasks.start_soon(cl.links["b"].run)  # node a never refreshes: it "crashed"
        creator, staff = session(b, CREATOR, "c1"), session(a, STAFF, "s1")
        ci = Inbox(creator)
        await b.command(creator, c.StartLive(command_id="go", room="cr"))
        await b.join(creator, "cr")
        await a.join(staff, "cr")

        def shows(members: set[Actor]) -> Callable[[list[ServerMessage]], bool]:
            return lambda got: any(
                isinstance(m, Presence) and set(m.members) == members for m in got
            )

        await ci.until(shows({CREATOR, STAFF}))
        cl.network.cut("a")
        cl.links["a"].bus.listen(None)  # type: ignore[arg-type]
        ci.got.clear()
        await ci.until(shows({CREATOR}))
