"""LiveRoom: appends in flight, published in order once durable."""

from __future__ import annotations

from protocol.codec import Codec
from protocol.events import ProductAdded
from protocol.messages import Event
from protocol.model import Actor, BagItem
from server.domain.room import new_room
from server.hub.liveroom import LiveRoom
from server.hub.session import Session
from server.log.base import PendingEvent
from server.log.memory import MemoryRoomLog

CODEC = Codec("json")
CREATOR = Actor(role="creator", id="cr")
STAFF = Actor(role="staff", id="st", agency="ag")


class RecordingSink:
    """A socket that records what the session does with it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, frame: bytes) -> None:
        self.calls.append("write")

    def buffered(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        self.calls.append("close")

    def flush(self) -> None:
        self.calls.append("flush")


def session(actor: Actor, sid: str, sink: RecordingSink) -> Session:
    return Session(sid, actor, CODEC, expires_at=2**62, max_buffered=1 << 20, sink=sink)


def fan_out(live: LiveRoom, event: Event) -> None:
    for member in live.members.values():
        member.send(event)


def added(product: str) -> PendingEvent:
    return PendingEvent(at=1, actor="cr", by=STAFF,
                        body=ProductAdded(item=BagItem(product_id=product), position=0))


async def test_publish_sends_what_it_wrote_at_once() -> None:
    """A publish flushes every member and the sender after its writes, not a turn later."""
    log = MemoryRoomLog()
    live = LiveRoom(new_room("cr", "cr"), fan_out)
    member_sink, sender_sink = RecordingSink(), RecordingSink()
    live.members["m1"] = session(CREATOR, "m1", member_sink)
    sender = session(STAFF, "s1", sender_sink)  # not in the room: a pre-LIVE command
    first = live.submit(log, "c1", [added("p1")], sender)
    second = live.submit(log, "c2", [added("p2")], sender)
    assert await first.outcome == 1
    assert await second.outcome == 2
    # Both appends completed before the first publish ran: one publish, one flush each.
    assert member_sink.calls == ["write", "write", "flush"]
    assert sender_sink.calls == ["write", "write", "flush"]  # the two acks
    third = live.submit(log, "c3", [added("p3")], sender)
    assert await third.outcome == 3
    assert member_sink.calls[3:] == ["write", "flush"]
    assert sender_sink.calls[3:] == ["write", "flush"]
