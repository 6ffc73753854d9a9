"""ClientState: what each message received does, what a new connection gets, how it all ends."""

from __future__ import annotations

import asyncio

import pytest

from client import AccessEnded, ClientClosed, CommandRefused, make_command
from client.state import ClientState
from protocol.commands import BagPin
from protocol.errors import CloseCode, Code
from protocol.events import ProductPinned
from protocol.messages import (
    AccessChanged,
    Ack,
    Event,
    Join,
    Ping,
    Pong,
    Refused,
    Resume,
    Snapshot,
)
from protocol.model import RoomState
from tests.client.fakehub import (
    BOUND,
    CREATOR,
    ROOM,
    STAFF,
    T0,
    FakeHub,
    Sleeps,
    event,
    new_client,
    settle,
)


async def test_access_changed_terminal_ends_the_client(hub: FakeHub, sleeps: Sleeps) -> None:
    """AccessChanged(terminal=True) is delivered, then the client ends: no reconnect."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        messages = client.messages()
        revoked = AccessChanged(creator=CREATOR, agency="agency-1", status="revoked")
        await hub.push(
            AccessChanged(creator=CREATOR, agency="agency-1", status="granted", terminal=False)
        )
        await hub.push(revoked)
        closed = await client.wait_closed()
        assert closed.code == CloseCode.ACCESS_REVOKED
        assert closed.retryable is False
        assert await messages.get() == AccessChanged(
            creator=CREATOR, agency="agency-1", status="granted", terminal=False
        )
        assert await messages.get() == revoked
        with pytest.raises(ClientClosed):
            await messages.get()
        assert sleeps.delays == []
        assert len(hub.conns) == 1
        with pytest.raises(ClientClosed):
            await client.messages().get()


async def test_access_ended_for_one_room_ends_that_stream_only(
    hub: FakeHub, sleeps: Sleeps
) -> None:
    """A non-terminal AccessChanged naming a room ends that room's stream with AccessEnded
    after its events, forgets the room (not resumed after a reconnect) and keeps the
    client and the other rooms going."""
    # R6 R9 (decision 0015: an access end touches that creator's room only)
    other = "room-2"
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        mine, theirs = client.events(ROOM), client.events(other)
        await client.join(ROOM)
        await client.join(other)
        await hub.push(event(1))
        await hub.push(
            AccessChanged(
                creator=CREATOR, agency="agency-1", status="expired", terminal=False, room=ROOM
            )
        )
        assert isinstance(await mine.get(), Snapshot)
        assert await mine.get() == event(1)  # what came before the end is delivered first
        with pytest.raises(AccessEnded) as ended:
            await mine.get()
        assert (ended.value.room, ended.value.creator, ended.value.status) == (
            ROOM,
            CREATOR,
            "expired",
        )
        assert client.rooms == frozenset({other})
        assert client.last_seq(ROOM) is None
        # The other room keeps streaming on the same client...
        later = Event(
            room=other, seq=1, at=T0, actor=CREATOR, by=STAFF, body=ProductPinned(product_id="p1")
        )
        await hub.push(later)
        assert isinstance(await theirs.get(), Snapshot)
        assert await theirs.get() == later
        assert client.closed is None
        # ...and a reconnect restores it alone.
        await hub.close(CloseCode.GOING_AWAY)
        await hub.wait_for(lambda c, m: c == 1 and isinstance(m, Resume))
        await settle(client)
        assert [m for m in hub.on(1) if isinstance(m, Join | Resume)] == [
            Resume(room=other, last_seq=1)
        ]
        with pytest.raises(AccessEnded):  # the stream stays ended
            await mine.get()


# --- the pure state, no socket ------------------------------------------------------------


def joined_state(last_seq: int = 2) -> ClientState:
    """A state with ROOM joined at ``last_seq``."""
    state = ClientState()
    room, join = state.rooms.begin_join(ROOM)
    room_state = RoomState(room=ROOM, creator=CREATOR, seq=last_seq)
    state.dispatch(Snapshot(room=ROOM, seq=last_seq, state=room_state), 1)
    state.rooms.end_join(room, join)
    return state


async def test_restore_resumes_rejoins_and_resends_in_order() -> None:
    """A new connection gets: joined rooms resumed from their last seq, rooms still joining
    joined again, unanswered commands with their command_id (H1), unanswered pings."""
    state = joined_state(last_seq=2)
    state.rooms.begin_join("room-2")
    pin = make_command(BagPin, room=ROOM, product_id="p1")
    pending = state.pending.track(pin)
    nonce, _ = state.pings.add()
    assert state.restore(2) == [
        Resume(room=ROOM, last_seq=2),
        Join(room="room-2"),
        pin,
        Ping(nonce=nonce),
    ]
    assert pending.generation == 2
    assert not pending.claim(2)  # sent there already: a flush on that connection skips it


async def test_dispatch_drops_duplicates_and_answers_a_gap_with_one_resume() -> None:
    """dispatch publishes the next event only; a gap returns one Resume from the last seq."""
    state = joined_state(last_seq=2)
    events = state.subs.subscribe(lambda m: m if isinstance(m, Event) else None, None)
    assert state.dispatch(event(2), 1) == []  # a duplicate
    assert state.dispatch(event(4), 1) == [Resume(room=ROOM, last_seq=2)]
    assert state.dispatch(event(5), 1) == []  # resuming already: no second resume
    assert state.dispatch(event(3), 1) == []
    assert state.rooms[ROOM].last_seq == 3
    events.close()
    assert [e.seq async for e in events] == [3]


async def test_dispatch_settles_answers() -> None:
    """An Ack settles its command, a Refused fails it with CommandRefused, a Pong its ping."""
    state = ClientState()
    acked = state.pending.track(make_command(BagPin, room=ROOM, product_id="p1"))
    refused = state.pending.track(make_command(BagPin, room=ROOM, product_id="p2"))
    nonce, pong = state.pings.add()
    ack = Ack(command_id=acked.command.command_id, seq=1)
    state.dispatch(ack, 1)
    state.dispatch(Refused(command_id=refused.command.command_id, code=Code.NOT_FOUND), 1)
    state.dispatch(Pong(nonce=nonce), 1)
    assert acked.future.result() == ack
    assert isinstance(refused.future.exception(), CommandRefused)
    assert pong.result() == Pong(nonce=nonce)
    assert len(state.pending) == 0


async def test_finish_fails_what_waits_once() -> None:
    """finish ends the client once: pending calls fail with its reason, a second one is ignored."""
    state = joined_state()
    pending = state.pending.track(make_command(BagPin, room=ROOM, product_id="p1"))
    reason = ClientClosed(CloseCode.BAD_TOKEN, "forged")
    assert state.finish(reason, normal=False)
    assert not state.finish(ClientClosed(1000), normal=True)
    assert pending.future.exception() is reason
    assert await state.wait_closed() is reason
    with pytest.raises(ClientClosed):
        await state.subs.subscribe(lambda m: m, state.closed).get()
