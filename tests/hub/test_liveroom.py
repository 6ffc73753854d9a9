"""LiveRoom: appends in flight, published in order once durable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from protocol.codec import Codec
from protocol.errors import Code
from protocol.events import ProductAdded
from protocol.messages import Ack, Event
from protocol.model import Actor, BagItem
from server.domain.refusal import Refusal
from server.domain.room import new_room
from server.hub.liveroom import LiveRoom
from server.hub.session import Session
from server.log.base import (
    Appended,
    AppendResult,
    CommandRecord,
    GrantVersion,
    PendingEvent,
    RoomLog,
)
from server.log.memory import MemoryRoomLog
from server.log.sqlite import SqliteRoomLog
from server.log.sqlite_store import SqliteStore

CODEC = Codec("json")
CREATOR = Actor(role="creator", id="cr")
STAFF = Actor(role="staff", id="st", agency="ag")


class RecordingSink:
    """A socket that records what the session does with it, in one shared list."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def write(self, frame: bytes, wire: bytes | None = None, /) -> None:
        match CODEC.decode_server(frame):
            case Event(seq=seq):
                self.calls.append(f"{self.name} event {seq}")
            case Ack(seq=seq):
                self.calls.append(f"{self.name} ack {seq}")
            case other:
                self.calls.append(f"{self.name} {type(other).__name__}")

    def buffered(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        self.calls.append(f"{self.name} close")

    def flush(self) -> None:
        self.calls.append(f"{self.name} flush")


def session(actor: Actor, sid: str, calls: list[str]) -> Session:
    return Session(
        sid, actor, CODEC, expires_at=2**62, max_buffered=1 << 20, sink=RecordingSink(sid, calls)
    )


def fan_out(live: LiveRoom, event: Event) -> None:
    for member in live.members.values():
        member.send(event)


def added(product: str) -> PendingEvent:
    return PendingEvent(
        at=1, actor="cr", by=STAFF, body=ProductAdded(item=BagItem(product_id=product), position=0)
    )


async def publish_two(log: RoomLog, calls: list[str]) -> None:
    live = LiveRoom(new_room("cr", "cr"), fan_out)
    live.members["m1"] = session(CREATOR, "m1", calls)
    staff = session(STAFF, "s1", calls)
    live.members["s1"] = staff  # the sender is in the room
    outsider = session(STAFF, "s2", calls)  # a pre-LIVE command: not in the room
    first = live.submit(log, "c1", [added("p1")], staff)
    second = live.submit(log, "c2", [added("p2")], outsider)
    first.append.add_done_callback(lambda _: calls.append("done callback"))
    assert await first.outcome == 1
    assert await second.outcome == 2


async def test_publish_writes_in_log_order_then_flushes_once() -> None:
    """Each event reaches every member in order, its ack follows it, then one flush each."""
    # H2 H4
    calls: list[str] = []
    await publish_two(MemoryRoomLog(), calls)
    assert [c for c in calls if c != "done callback"] == [
        "m1 event 1",
        "s1 event 1",
        "s1 ack 1",
        "m1 event 2",
        "s1 event 2",
        "s2 ack 2",
        "m1 flush",
        "s1 flush",
        "s2 flush",
    ]


class ManualLog(MemoryRoomLog):
    """A log whose appends the test completes by hand, calling ``then`` itself."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[asyncio.Future[AppendResult], Callable[[], None] | None]] = []

    def append_soon(
        self,
        room: str,
        command_id: str | None,
        events: Sequence[PendingEvent],
        expected_seq: int,
        record: CommandRecord | None = None,
        *,
        digest: bytes | None = None,
        grant_version: GrantVersion | None = None,
        then: Callable[[], None] | None = None,
    ) -> asyncio.Future[AppendResult]:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self.pending.append((future, then))
        return future


async def test_publish_runs_in_the_logs_completion_call() -> None:
    """The room hands the log its publish as ``then``: frames leave in that very call."""
    calls: list[str] = []
    log = ManualLog()
    live = LiveRoom(new_room("cr", "cr"), fan_out)
    live.members["m1"] = session(CREATOR, "m1", calls)
    entry = live.submit(log, "c1", [added("p1")], None)
    [(future, then)] = log.pending
    future.set_result(Appended(events=tuple(entry.predicted), last_seq=1))
    assert then is not None
    then()  # no turn of the loop in between
    assert calls == ["m1 event 1", "m1 flush"]
    assert entry.outcome.result() == 1


async def test_with_the_sqlite_log_frames_leave_before_the_done_callbacks(
    tmp_path: Path,
) -> None:
    """On the SQLite log the publish and its flushes run in the store's own callback."""
    calls: list[str] = []
    async with SqliteStore(tmp_path / "db.sqlite") as store:
        await publish_two(SqliteRoomLog(store), calls)
    assert calls.index("s2 flush") < calls.index("done callback")


async def test_a_failing_fan_out_answers_the_command_and_resyncs_the_room() -> None:
    """A bug while publishing does not leave the command waiting: UNAVAILABLE, diverged."""

    def broken(live: LiveRoom, event: Event) -> None:
        raise RuntimeError("a bug in fan-out")

    live = LiveRoom(new_room("cr", "cr"), broken)
    entry = live.submit(MemoryRoomLog(), "c1", [added("p1")], None)
    assert await entry.outcome == Refusal(Code.UNAVAILABLE, "storage unavailable; retry")
    assert live.diverged
    assert not live.inflight
