"""ClientState: what each message received does, what a new connection gets, how it all ends."""

from __future__ import annotations

import asyncio

import pytest

from client import AccessEnded, ClientClosed
from protocol.errors import CloseCode
from protocol.events import ProductPinned
from protocol.messages import AccessChanged, Event, Join, Resume, Snapshot
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


async def test_access_changed_terminal_ends_the_session(hub: FakeHub, sleeps: Sleeps) -> None:
    """AccessChanged(terminal=True) is delivered, then the session ends: no reconnect."""
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
    session and the other rooms going."""
    # R6 R9 (decision 0015: an access end touches that creator's room only)
    other = "room-2"
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        mine, theirs = client.events(ROOM), client.events(other)
        await client.join(ROOM)
        await client.join(other)
        await hub.push(event(1))
        await hub.push(AccessChanged(creator=CREATOR, agency="agency-1", status="expired",
                                     terminal=False, room=ROOM))
        assert isinstance(await mine.get(), Snapshot)
        assert await mine.get() == event(1)  # what came before the end is delivered first
        with pytest.raises(AccessEnded) as ended:
            await mine.get()
        assert (ended.value.room, ended.value.creator, ended.value.status) == (
            ROOM, CREATOR, "expired")
        assert client.rooms == frozenset({other})
        assert client.last_seq(ROOM) is None
        # The other room keeps streaming on the same session...
        later = Event(room=other, seq=1, at=T0, actor=CREATOR, by=STAFF,
                      body=ProductPinned(product_id="p1"))
        await hub.push(later)
        assert isinstance(await theirs.get(), Snapshot)
        assert await theirs.get() == later
        assert client.closed is None
        # ...and a reconnect restores it alone.
        await hub.close(CloseCode.GOING_AWAY)
        await hub.wait_for(lambda c, m: c == 1 and isinstance(m, Resume))
        await settle(client)
        assert [m for m in hub.on(1) if isinstance(m, Join | Resume)] == [
            Resume(room=other, last_seq=1)]
        with pytest.raises(AccessEnded):  # the stream stays ended
            await mine.get()
