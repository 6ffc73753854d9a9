"""Rooms: events once each in seq order, a gap resumed, a truncated history replaced."""

from __future__ import annotations

import asyncio

from client import ClientError
from client.rooms import Rooms
from protocol.errors import CloseCode
from protocol.events import ProductPinned
from protocol.messages import Event, Resume, Snapshot
from tests.client.fakehub import (
    BOUND,
    CREATOR,
    ROOM,
    STAFF,
    T0,
    FakeHub,
    Sleeps,
    drain,
    new_client,
    settle,
)


async def test_events_deduplicated_and_gap_resumed(hub: FakeHub, sleeps: Sleeps) -> None:
    """Duplicates (seq <= last) are dropped; a gap (seq > last + 1) sends one resume
    from the last seq, and the replay fills it in order."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        e = hub.append(ROOM, 5)
        for seq in (1, 2, 2, 1, 4, 5, 3):
            await hub.push(e[seq - 1])
        await hub.wait_for(lambda _, m: isinstance(m, Resume))
        delivered = [await events.get() for _ in range(5)]
        assert [m.seq for m in delivered] == [1, 2, 3, 4, 5]
        assert delivered == e
        await hub.push(e[4])  # a late duplicate
        await settle(client)
        assert await drain(events) == []
        assert [m for _, m in hub.received if isinstance(m, Resume)] == [
            Resume(room=ROOM, last_seq=2)
        ]
        assert client.last_seq(ROOM) == 5
        assert sleeps.delays == []


async def test_history_truncated_snapshot_replaces_state(hub: FakeHub, sleeps: Sleeps) -> None:
    """A resume history cannot serve is answered by a snapshot: it reaches the room
    stream and resets last_seq."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        hub.append(ROOM, 6)
        hub.history_floor = 3
        await hub.close(CloseCode.SLOW_CONSUMER)
        snapshot = await events.get()
        assert isinstance(snapshot, Snapshot)
        assert (snapshot.seq, snapshot.reason) == (6, "history_truncated")
        assert client.last_seq(ROOM) == 6
        assert hub.on(1)[1:] == [Resume(room=ROOM, last_seq=0)]


async def test_events_of_other_rooms_are_not_mixed_in(hub: FakeHub, sleeps: Sleeps) -> None:
    """events(room) carries only that room; events of rooms not joined are dropped."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        messages = client.messages()
        stray = Event(
            room="room-2",
            seq=1,
            at=T0,
            actor=CREATOR,
            by=STAFF,
            body=ProductPinned(product_id="p1"),
        )
        await hub.push(stray)
        await hub.push(hub.append(ROOM, 1)[0])
        assert (await events.get()).seq == 1
        await settle(client)
        assert not any(isinstance(m, Event) and m.room == "room-2" for m in await drain(messages))


async def test_joins_of_one_room_share_one_future() -> None:
    """Two joins of a room at once share one join; when both give up before the snapshot,
    the never-joined room is forgotten (the caller tells the server: Leave)."""
    rooms = Rooms(resume=lambda _: None)
    room, first = rooms.begin_join(ROOM)
    same, second = rooms.begin_join(ROOM)
    assert (same, second) == (room, first)
    assert room.claim_join(1)
    assert not room.claim_join(1)  # sent on this connection already
    assert not rooms.end_join(room, first)  # one waiter left
    assert rooms.end_join(room, first)
    assert first.cancelled()
    assert ROOM not in rooms


async def test_leave_fails_a_waiting_join() -> None:
    """Leaving a room still joining fails its join; leaving an unknown room is a no-op."""
    rooms = Rooms(resume=lambda _: None)
    _, join = rooms.begin_join(ROOM)
    assert rooms.leave(ROOM)
    assert isinstance(join.exception(), ClientError)
    assert not rooms.leave(ROOM)
