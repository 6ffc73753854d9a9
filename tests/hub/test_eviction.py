"""Idle rooms leave memory and come back from their log."""

from __future__ import annotations

from protocol import commands as c
from protocol.codec import Codec
from protocol.model import Actor, BagItem
from server.domain.grants import Grant
from server.hub.hub import Hub
from server.hub.session import Session
from server.journal import MemoryJournal
from server.log.memory import MemoryRoomLog
from server.metrics import Metrics

CODEC = Codec("json")
CREATOR = Actor(role="creator", id="cr")
IDLE_MS = 60_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def make_hub(clock: Clock) -> Hub:
    def grants(agency: str, creator: str, now: int) -> Grant | None:
        return Grant(agency=agency, creator=creator)

    return Hub(MemoryRoomLog(), MemoryJournal(), grants, clock=clock, metrics=Metrics(),
               room_idle_ms=IDLE_MS)


def creator_session(clock: Clock) -> Session:
    return Session("c1", CREATOR, CODEC, expires_at=clock.now + 86_400_000,
                   max_buffered=1 << 20)


async def sweep(hub: Hub, clock: Clock, other_room: str) -> None:
    """Let the idle interval pass, then load another room (which sweeps)."""
    clock.now += IDLE_MS
    await hub.room(other_room)


async def used_then_left(hub: Hub, clock: Clock) -> Session:
    creator = creator_session(clock)
    hub.connect(creator)
    await hub.join(creator, "cr")
    await hub.command(creator, c.StartLive(command_id="go", room="cr"))
    await hub.command(creator, c.BagAdd(command_id="add", room="cr",
                                        item=BagItem(product_id="p1")))
    hub.disconnect(creator)
    return creator


async def test_an_idle_room_leaves_memory_and_comes_back_from_its_log() -> None:
    """A room idle for two sweeps is dropped; loading it again gives the same state."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    before = hub.rooms["cr"].state
    await sweep(hub, clock, "x")  # first sweep: the room was used since the last one
    assert "cr" in hub.rooms
    await sweep(hub, clock, "y")
    assert "cr" not in hub.rooms
    assert hub.metrics.registry.get_sample_value("livepilot_rooms") == len(hub.rooms) == 2
    again = await hub.room("cr")
    assert again.state == before
    assert [item.product_id for item in again.state.bag] == ["p1"]


async def test_a_room_with_a_member_stays() -> None:
    """A room someone is in is never dropped, however long it goes without commands."""
    clock = Clock()
    hub = make_hub(clock)
    creator = creator_session(clock)
    hub.connect(creator)
    await hub.join(creator, "cr")
    for other in ("x", "y", "z"):
        await sweep(hub, clock, other)
    assert "cr" in hub.rooms


async def test_a_room_used_between_sweeps_gets_a_second_chance() -> None:
    """A command since the last sweep keeps an otherwise idle room for one more."""
    clock = Clock()
    hub = make_hub(clock)
    creator = await used_then_left(hub, clock)
    await sweep(hub, clock, "x")
    hub.connect(creator)  # a command, sent without joining
    await hub.command(creator, c.BagAdd(command_id="add2", room="cr",
                                        item=BagItem(product_id="p2")))
    hub.disconnect(creator)
    await sweep(hub, clock, "y")
    assert "cr" in hub.rooms
    await sweep(hub, clock, "z")
    assert "cr" not in hub.rooms


async def test_sweeps_wait_for_the_idle_interval() -> None:
    """Loading rooms sooner than the interval sweeps nothing."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    for n in range(4):
        clock.now += IDLE_MS // 4 - 1
        await hub.room(f"x{n}")
    assert "cr" in hub.rooms


async def test_an_evicted_room_still_held_comes_back_as_the_same_object() -> None:
    """A room dropped while a task still holds it is not loaded twice."""
    clock = Clock()
    hub = make_hub(clock)
    await used_then_left(hub, clock)
    held = hub.rooms["cr"]
    await sweep(hub, clock, "x")
    await sweep(hub, clock, "y")
    assert "cr" not in hub.rooms
    assert await hub.room("cr") is held
    assert hub.rooms["cr"] is held
