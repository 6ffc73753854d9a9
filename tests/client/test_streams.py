"""Subscriptions: what each keeps, and how it ends (quietly, or raising why)."""

from __future__ import annotations

import pytest

from client import AccessEnded, ClientClosed
from client.streams import Subscribers, every, room_stream
from protocol.messages import Pong
from tests.client.fakehub import CREATOR, ROOM, event


async def test_room_stream_keeps_its_room_only() -> None:
    """A room's stream keeps that room's events; messages() keeps everything."""
    subs = Subscribers()
    mine = subs.subscribe(room_stream(ROOM), None, ROOM)
    other = subs.subscribe(room_stream("room-2"), None, "room-2")
    everything = subs.subscribe(every, None)
    subs.publish(event(1))
    subs.publish(Pong(nonce=1))
    for sub in (mine, other, everything):
        sub.close()
    assert [m async for m in mine] == [event(1)]
    assert [m async for m in other] == []
    assert [m async for m in everything] == [event(1), Pong(nonce=1)]


async def test_end_room_raises_access_ended_on_that_room_only() -> None:
    """end_room makes the room's streams raise AccessEnded after what they buffered (R6)."""
    # R6 (decision 0015: an access end touches that creator's room only)
    subs = Subscribers()
    mine = subs.subscribe(room_stream(ROOM), None, ROOM)
    other = subs.subscribe(room_stream("room-2"), None, "room-2")
    subs.publish(event(1))
    subs.end_room(ROOM, AccessEnded(ROOM, CREATOR, "agency-1", "revoked"))
    assert await mine.get() == event(1)
    with pytest.raises(AccessEnded):
        await mine.get()
    with pytest.raises(AccessEnded):  # and keeps raising
        await mine.get()
    subs.publish(event(2))
    other.close()
    assert [m async for m in other] == []


async def test_end_stops_quietly_or_raises() -> None:
    """A client closed by its owner stops iteration; one ended otherwise raises the reason,
    and so does a subscription made after."""
    quiet, loud = Subscribers(), Subscribers()
    calm = quiet.subscribe(every, None)
    quiet.end(ClientClosed(1000), normal=True)
    assert [m async for m in calm] == []
    failing = loud.subscribe(every, None)
    reason = ClientClosed(4500, "bad token")
    loud.end(reason, normal=False)
    with pytest.raises(ClientClosed) as raised:
        async for _ in failing:
            pass
    assert raised.value is reason
    with pytest.raises(ClientClosed):
        await loud.subscribe(every, reason).get()
