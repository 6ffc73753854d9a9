"""Idle rooms leave memory and come back from their log."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Sequence

from protocol import commands as c
from protocol.codec import Codec
from protocol.events import ProductAdded
from protocol.model import BagItem
from server.domain.grants import Grant
from server.hub.hub import Hub
from server.hub.session import Session
from server.journal import MemoryJournal
from server.log.base import AppendResult, CommandRecord, GrantVersion, PendingEvent
from server.log.memory import MemoryRoomLog
from server.metrics import Metrics
from tests.actors import CREATOR, CREATOR_ID

CODEC = Codec("json")
IDLE_MS = 60_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


class HeldLog(MemoryRoomLog):
    """A log whose appends wait until :attr:`release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.release.set()

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


def make_hub(clock: Clock, log: MemoryRoomLog | None = None) -> Hub:
    def grants(agency: str, creator: str, now: int) -> Grant | None:
        return Grant(agency=agency, creator=creator)

    return Hub(
        log or MemoryRoomLog(),
        MemoryJournal(),
        grants,
        clock=clock,
        metrics=Metrics(),
        room_idle_ms=IDLE_MS,
    )


def creator_session(clock: Clock) -> Session:
    return Session("c1", CREATOR, CODEC, expires_at=clock.now + 86_400_000, max_buffered=1 << 20)


async def sweep(hub: Hub, clock: Clock, other_room: str) -> None:
    """Let the idle interval pass, then load another room (which sweeps)."""
    clock.now += IDLE_MS
    await hub.room(other_room)


async def used_then_left(hub: Hub, clock: Clock) -> Session:
    creator = creator_session(clock)
    hub.connect(creator)
    await hub.join(creator, CREATOR_ID)
    await hub.command(creator, c.StartLive(command_id="go", room=CREATOR_ID))
    await hub.command(
        creator, c.BagAdd(command_id="add", room=CREATOR_ID, item=BagItem(product_id="p1"))
    )
    hub.disconnect(creator)
    return creator


async def test_an_idle_room_leaves_memory_and_comes_back_from_its_log() -> None:
    """A room idle for two sweeps is dropped; loading it again gives the same state."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    before = hub.rooms[CREATOR_ID].state
    gone = weakref.ref(hub.rooms[CREATOR_ID])
    await sweep(hub, clock, "x")  # first sweep: the room was used since the last one
    assert CREATOR_ID in hub.rooms
    await sweep(hub, clock, "y")
    assert CREATOR_ID not in hub.rooms
    assert hub.metrics.registry.get_sample_value("livepilot_rooms") == len(hub.rooms) == 2
    gc.collect()
    assert gone() is None  # nothing kept the room object alive
    again = await hub.room(CREATOR_ID)
    assert again.state == before
    assert [item.product_id for item in again.state.bag] == ["p1"]


async def test_a_reloaded_room_counts_the_events_since_its_snapshot() -> None:
    """Events replayed at reload count towards the next snapshot, as if never evicted."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    assert hub.rooms[CREATOR_ID].since_snapshot == 2  # live_started, product_added
    await sweep(hub, clock, "x")
    await sweep(hub, clock, "y")
    assert CREATOR_ID not in hub.rooms
    gc.collect()
    assert (await hub.room(CREATOR_ID)).since_snapshot == 2


async def test_a_room_with_an_append_in_flight_stays() -> None:
    """A room whose append is not yet durable is not dropped."""
    clock = Clock()
    log = HeldLog()
    hub = make_hub(clock, log)
    await used_then_left(hub, clock)
    live = hub.rooms[CREATOR_ID]
    log.release.clear()
    pending = [
        PendingEvent(
            at=clock.now,
            actor=CREATOR_ID,
            by=CREATOR,
            body=ProductAdded(item=BagItem(product_id="p9"), position=1),
        )
    ]
    entry = live.submit(log, "held", pending, None)
    for other in ("x", "y", "z"):
        await sweep(hub, clock, other)
    assert hub.rooms[CREATOR_ID] is live
    log.release.set()
    assert await entry.outcome == 3


async def test_a_locked_room_stays() -> None:
    """A room whose lock is held (a join, a settle, a snapshot) is not dropped."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    live = hub.rooms[CREATOR_ID]
    async with live.lock:
        for other in ("x", "y"):
            await sweep(hub, clock, other)
    assert hub.rooms[CREATOR_ID] is live
    await sweep(hub, clock, "z")  # busy at the last sweep: one more chance
    assert hub.rooms[CREATOR_ID] is live


async def test_a_room_with_a_member_stays() -> None:
    """A room someone is in is never dropped, however long it goes without commands."""
    clock = Clock()
    hub = make_hub(clock)
    creator = creator_session(clock)
    hub.connect(creator)
    await hub.join(creator, CREATOR_ID)
    for other in ("x", "y", "z"):
        await sweep(hub, clock, other)
    assert CREATOR_ID in hub.rooms


async def test_a_room_used_between_sweeps_gets_a_second_chance() -> None:
    """A command since the last sweep keeps an otherwise idle room for one more."""
    clock = Clock()
    hub = make_hub(clock)
    creator = await used_then_left(hub, clock)
    await sweep(hub, clock, "x")
    hub.connect(creator)  # a command, sent without joining
    await hub.command(
        creator, c.BagAdd(command_id="add2", room=CREATOR_ID, item=BagItem(product_id="p2"))
    )
    hub.disconnect(creator)
    await sweep(hub, clock, "y")
    assert CREATOR_ID in hub.rooms
    await sweep(hub, clock, "z")
    assert CREATOR_ID not in hub.rooms


async def test_sweeps_wait_for_the_idle_interval() -> None:
    """Loading rooms sooner than the interval sweeps nothing."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    for n in range(4):
        clock.now += IDLE_MS // 4 - 1
        await hub.room(f"x{n}")
    assert CREATOR_ID in hub.rooms


async def test_an_evicted_room_still_held_comes_back_as_the_same_object() -> None:
    """A room dropped while a task still holds it is not loaded twice."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    held = hub.rooms[CREATOR_ID]
    await sweep(hub, clock, "x")
    await sweep(hub, clock, "y")
    assert CREATOR_ID not in hub.rooms
    assert await hub.room(CREATOR_ID) is held
    assert hub.rooms[CREATOR_ID] is held
