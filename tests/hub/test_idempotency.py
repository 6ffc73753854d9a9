"""A command id names one command by one actor (H1, decision 0016), through the hub:
the first ack again for the same command from the same actor, COMMAND_ID_REUSED
for anything else, on every path (applied, in flight, refused by the decider)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from protocol import commands as c
from protocol.errors import Code
from protocol.messages import Ack, Refused, RoomCommand
from protocol.model import Actor, BagItem
from server.hub.hub import Hub
from server.hub.session import Session
from server.journal import AuditQuery
from server.log.base import RoomLog
from server.log.memory import MemoryRoomLog
from server.log.sqlite import SqliteRoomLog
from tests.hub.test_hub import (
    CREATOR,
    STAFF,
    Gate,
    Spawned,
    drain,
    live_creator,
    make_hub,
    pipelined,
    session,
)

REUSED = Code.COMMAND_ID_REUSED


def add(
    cid: str, product: str, position: int | None = None, version: int | None = None
) -> c.BagAdd:
    return c.BagAdd(
        command_id=cid,
        room="cr",
        item=BagItem(product_id=product),
        position=position,
        expected_version=version,
    )


def answers(s: Session, cid: str) -> list[Ack | Refused]:
    """The acks and refusals ``s`` received for ``cid``."""
    return [m for m in drain(s) if isinstance(m, Ack | Refused) and m.command_id == cid]


def codes(replies: list[Ack | Refused]) -> list[int | None]:
    return [m.code if isinstance(m, Refused) else None for m in replies]


async def bag(hub: Hub) -> list[str]:
    return [i.product_id for i in (await hub.room("cr")).state.bag]


async def test_staff_reusing_the_creators_command_id_is_refused() -> None:
    """Staff sending the creator's command id is refused COMMAND_ID_REUSED, audited as
    theirs, and nothing is applied; the creator's resend still gets its ack."""
    # H1 R16
    hub = make_hub()
    creator = await live_creator(hub)
    staff = session(STAFF, "s1")
    hub.connect(staff)
    await hub.command(creator, add("shared", "p1"))
    [first] = answers(creator, "shared")
    assert isinstance(first, Ack)
    await hub.command(staff, add("shared", "p2"))
    assert codes(answers(staff, "shared")) == [REUSED]
    await hub.command(creator, add("shared", "p1"))
    assert answers(creator, "shared") == [first]
    assert await bag(hub) == ["p1"]
    assert await hub.log.last_seq("cr") == first.seq == 2
    trail = await hub.auditor.trail(AuditQuery(creator="cr", family="bag"))
    assert [(e.actor, e.code) for e in trail] == [(STAFF, REUSED), (CREATOR, None)]


async def test_the_same_actor_reusing_an_id_for_another_command_is_refused() -> None:
    """One actor sending another command under an applied command's id is refused."""
    # H1
    hub = make_hub()
    creator = await live_creator(hub)
    await hub.command(creator, add("add", "p1"))
    await hub.command(creator, add("add", "p2"))  # accepted by the decider: the log refuses
    await hub.command(creator, add("add", "p1", position=0))  # refused by the decider first
    assert codes(answers(creator, "add")) == [None, REUSED, REUSED]
    assert await bag(hub) == ["p1"]
    live = await hub.room("cr")
    assert live.state == await hub._load("cr")  # re-synced after the refused prediction


async def test_reusing_the_id_of_a_command_in_flight_is_refused_once_it_lands() -> None:
    """A command with the id of one still appending waits for it, then is refused if it
    is not the same command by the same actor (H1: the in-flight path compares too)."""
    # H1
    log = Gate()
    log.gate.set()
    hub = make_hub(log)
    creator = await live_creator(hub)
    staff, again = session(STAFF, "s1"), session(CREATOR, "c2")
    for s in (staff, again):
        hub.connect(s)
    log.gate = anyio.Event()
    log.waiting, log.expect = 0, 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.command, creator, add("add", "p1"))
        try:
            with anyio.fail_after(5):
                await log.all_waiting.wait()  # the creator's append is in flight
            # Both are refused by the decider (p1 is in the bag): the twin path.
            tg.start_soon(hub.command, staff, add("add", "p1"))
            tg.start_soon(hub.command, again, add("add", "p1", position=0))
            await anyio.wait_all_tasks_blocked()
        finally:
            log.gate.set()
    assert answers(creator, "add") == [Ack(command_id="add", seq=2)]
    assert codes(answers(staff, "add")) == [REUSED]
    assert codes(answers(again, "add")) == [REUSED]
    assert await bag(hub) == ["p1"]


async def test_a_pipelined_reuse_is_refused_and_the_room_follows_its_log() -> None:
    """On the pipelined path a reuse found by the log is refused and the room's
    predicted state is rebuilt from the log."""
    # H1 H2
    hub = make_hub()
    creator = await live_creator(hub)
    staff = session(STAFF, "s1")
    hub.connect(staff)
    async with anyio.create_task_group() as tg:
        await pipelined(hub, staff, c.Mute(command_id="go", room="cr", user_id="u1"), Spawned(tg))
    assert codes(answers(staff, "go")) == [REUSED]
    live = await hub.room("cr")
    assert live.state == await hub._load("cr")
    assert live.state.muted == {}
    assert creator.is_closed is False


async def test_a_refused_command_keeps_no_key() -> None:
    """A command the decider refused stores no key: its resend is decided again, and
    another actor may use its id; a command refused as a reuse stays refused."""
    # H1
    hub = make_hub()
    creator = await live_creator(hub)
    staff = session(STAFF, "s1")
    hub.connect(staff)
    await hub.command(staff, c.BagDelete(command_id="del", room="cr", product_id="p1"))
    assert codes(answers(staff, "del")) == [Code.NOT_FOUND]
    await hub.command(creator, add("del", "p1"))  # the id was never a key
    await hub.command(staff, c.BagDelete(command_id="del", room="cr", product_id="p1"))
    await hub.command(staff, c.BagDelete(command_id="del", room="cr", product_id="p1"))
    assert codes(answers(creator, "del")) == [None]
    assert codes(answers(staff, "del")) == [REUSED, REUSED]
    assert await bag(hub) == ["p1"]


async def test_a_query_is_never_a_resend() -> None:
    """A refused bag_list whose id is an applied command's gets its own refusal: a
    query keeps no key, so it is neither acked nor refused as a reuse."""
    # H1
    hub = make_hub()
    creator = await live_creator(hub)
    await hub.command(creator, c.EndLive(command_id="end", room="cr"))
    drain(creator)
    await hub.command(creator, c.BagList(command_id="go", room="cr"))
    assert codes(answers(creator, "go")) == [Code.NOT_LIVE]


# --- property: random (actor, id, content) resends -----------------------------------

ACTORS = (
    CREATOR,
    STAFF,
    Actor(role="staff", id="st2", agency="ag"),
    Actor(role="staff", id="st", agency="ag2"),
)
"""The creator, a staff member, a colleague, and the same staff id in another agency."""
IDS = ("go", "k0", "k1", "k2")
PRODUCTS = ("p1", "p2")


@st.composite
def step(draw: st.DrawFn) -> tuple[Actor, RoomCommand]:
    """One actor sending one command, with an id from a small pool (so ids collide)."""
    actor = draw(st.sampled_from(ACTORS))
    cid = draw(st.sampled_from(IDS))
    version = draw(st.sampled_from([None, None, 0, 10**6]))
    what = draw(st.sampled_from(PRODUCTS))
    options: list[RoomCommand] = [
        add(cid, what, version=version),
        c.BagDelete(command_id=cid, room="cr", product_id=what, expected_version=version),
        c.Mute(command_id=cid, room="cr", user_id=what, expected_version=version),
    ]
    return actor, draw(st.sampled_from(options))


def same(a: RoomCommand, b: RoomCommand) -> bool:
    """The same command, whatever its expected_version (a precondition, not content)."""
    return replace(a, expected_version=None) == replace(b, expected_version=None)


async def send(hub: Hub, s: Session, command: RoomCommand, pipeline: bool) -> Ack | Refused:
    """Send ``command`` (pipelined or not) and return its one answer."""
    if pipeline:  # as the endpoint does; None: answered already (e.g. refused)
        async with anyio.create_task_group() as tg:
            answered = await hub.command(s, command, tg.start_soon)
            if answered is not None:
                with anyio.fail_after(5):
                    await answered
    else:
        await hub.command(s, command)
    [answer] = answers(s, command.command_id)
    return answer


async def check_resends(
    log: RoomLog, steps: list[tuple[Actor, RoomCommand]], pipeline: bool
) -> None:
    """Run ``steps`` through a hub on ``log`` and check every answer against the model:
    id -> (actor, command, ack seq) of its first application."""
    hub = make_hub()
    hub.log = log
    sessions = {actor: session(actor, f"s{i}") for i, actor in enumerate(ACTORS)}
    for s in sessions.values():
        hub.connect(s)
    go = c.StartLive(command_id="go", room="cr")
    await hub.command(sessions[CREATOR], go)
    drain(sessions[CREATOR])
    keys: dict[str, tuple[Actor, RoomCommand, int]] = {"go": (CREATOR, go, 1)}
    for actor, command in steps:
        cid = command.command_id
        before = await log.last_seq("cr")
        answer = await send(hub, sessions[actor], command, pipeline)
        after = await log.last_seq("cr")
        key = keys.get(cid)
        if key is None:  # a new id: decided on the room, never refused as a reuse
            if isinstance(answer, Ack):
                assert answer.seq == after
                keys[cid] = (actor, command, answer.seq)
            else:
                assert answer.code != REUSED
                assert after == before
        elif key[0] == actor and same(key[1], command):  # a resend: the first ack again
            assert answer == Ack(command_id=cid, seq=key[2])
            assert after == before
        else:  # another actor, or another command: refused, the log unchanged
            assert isinstance(answer, Refused)
            assert answer.code == REUSED
            assert after == before
    events = await log.read_since("cr", 0, 10_000)
    assert events is not None
    for cid, (actor, _, seq) in keys.items():  # each id applied once, by its own actor
        mine = [e for e in events if e.command_id == cid]
        assert {e.by for e in mine} <= {actor}
        assert [e.seq for e in mine] == list(range(seq - len(mine) + 1, seq + 1))
    # The room follows its log: equal to it, or marked to reload before its next decision
    # (a resend found by the log leaves the prediction it folded until then).
    live = await hub.room("cr")
    assert live.diverged or live.state == await hub._load("cr")


STEPS = st.lists(step(), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, pipeline=st.booleans())
def test_random_resends_on_the_memory_log(
    steps: list[tuple[Actor, RoomCommand]], pipeline: bool
) -> None:
    """Random (actor, id, content) sends: the same actor and content get the first ack
    and apply once; anything else under a used id is refused 112, the log unchanged."""
    # H1
    asyncio.run(check_resends(MemoryRoomLog(), steps, pipeline))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, pipeline=st.booleans())
def test_random_resends_on_the_sqlite_log(
    steps: list[tuple[Actor, RoomCommand]], pipeline: bool
) -> None:
    """The same property on the SQLite log (its keys and lookups are SQL)."""
    # H1

    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            log = await SqliteRoomLog.open(Path(folder) / "keys.db", synchronous="NORMAL")
            try:
                await check_resends(log, steps, pipeline)
            finally:
                await log.close()

    asyncio.run(main())
