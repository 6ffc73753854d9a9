"""The RoomLog contract for command records (the audit trail of applied commands):
every implementation passes these (see conftest ``backend``)."""

from __future__ import annotations

import asyncio

from protocol.model import Actor, RoomState
from server.log.base import (
    Appended,
    AppliedCommand,
    AppliedQuery,
    CommandRecord,
    Conflict,
    Duplicate,
    RoomLog,
)
from tests.log.conftest import STAFF, Backend, pending

ROOM = "room-1"
OTHER = Actor(role="staff", id="staff-2", agency="agency-2")
CREATOR = Actor(role="creator", id=ROOM)


def record(at: int, by: Actor = STAFF, family: str = "bag") -> CommandRecord:
    return CommandRecord(at=at, by=by, family=family, action="bag_pin")


async def apply(log: RoomLog, n: int, rec: CommandRecord | None) -> None:
    """Append command c<n> (one event) with ``rec``, after whatever is in the room."""
    result = await log.append(ROOM, f"c{n}", [pending(f"p{n}")], await log.last_seq(ROOM), rec)
    assert isinstance(result, Appended)


def ids(applied: list[AppliedCommand]) -> list[str]:
    return [a.command_id for a in applied]


async def test_a_record_is_stored_with_its_command(log: RoomLog) -> None:
    """An append with a record lists it in applied(), with the seq it was acked with."""
    # R16 H4
    rec = record(1_000)
    result = await log.append(ROOM, "c1", [pending("a"), pending("b")], 0, rec)
    assert isinstance(result, Appended)
    assert await log.applied(ROOM, AppliedQuery()) == [
        AppliedCommand(command_id="c1", last_seq=2, record=rec)
    ]
    assert await log.applied("another-room", AppliedQuery()) == []


async def test_a_command_without_events_is_recorded_too(log: RoomLog) -> None:
    """A command that changed nothing is still on the trail, at the seq it was decided on."""
    # R16
    await apply(log, 1, record(1))
    await log.append(ROOM, "noop", [], 1, record(2))
    [latest, _] = await log.applied(ROOM, AppliedQuery())
    assert (latest.command_id, latest.last_seq) == ("noop", 1)


async def test_only_the_first_application_is_recorded(log: RoomLog) -> None:
    """A resend (Duplicate) and a conflicting append store no record."""
    # R16 H1
    await apply(log, 1, record(1))
    assert isinstance(await log.append(ROOM, "c1", [pending("x")], 1, record(2)), Duplicate)
    assert isinstance(await log.append(ROOM, "c2", [pending("y")], 0, record(3)), Conflict)
    assert [a.record.at for a in await log.applied(ROOM, AppliedQuery())] == [1]


async def test_appends_without_a_record_are_not_listed(log: RoomLog) -> None:
    """Feed items and server-made events (no record) are not on the trail."""
    await apply(log, 1, None)
    await log.append(ROOM, None, [pending("z")], 1, record(5))  # no id: nothing to keep
    await apply(log, 3, record(7))
    assert ids(await log.applied(ROOM, AppliedQuery())) == ["c3"]


async def test_applied_is_newest_first_and_filtered(log: RoomLog) -> None:
    """applied() orders by time then seq, newest first, and every filter must match."""
    # R16
    await apply(log, 1, record(10))
    await apply(log, 2, record(30, by=OTHER))
    await apply(log, 3, record(20, family="moderation"))
    await apply(log, 4, record(30, by=CREATOR, family="live"))
    assert ids(await log.applied(ROOM, AppliedQuery())) == ["c4", "c2", "c3", "c1"]
    assert ids(await log.applied(ROOM, AppliedQuery(limit=2))) == ["c4", "c2"]
    assert await log.applied(ROOM, AppliedQuery(limit=0)) == []
    assert ids(await log.applied(ROOM, AppliedQuery(agency="agency-2"))) == ["c2"]
    assert ids(await log.applied(ROOM, AppliedQuery(staff="staff-1"))) == ["c3", "c1"]
    assert ids(await log.applied(ROOM, AppliedQuery(staff=ROOM))) == []  # the creator is no staff
    assert ids(await log.applied(ROOM, AppliedQuery(family="moderation"))) == ["c3"]
    assert ids(await log.applied(ROOM, AppliedQuery(since=20, until=30))) == ["c3"]
    assert ids(await log.applied(ROOM, AppliedQuery(since=-(2**70), until=2**70))) == [
        "c4",
        "c2",
        "c3",
        "c1",
    ]
    assert await log.applied(ROOM, AppliedQuery(since=2**70)) == []
    assert await log.applied(ROOM, AppliedQuery(until=-(2**70))) == []


async def test_ties_in_time_list_the_later_command_first(log: RoomLog) -> None:
    """Commands of the same millisecond are listed later first, even one that
    changed nothing (it shares its predecessor's last seq)."""
    # R16
    await apply(log, 1, record(5))
    await log.append(ROOM, "noop", [], 1, record(5))
    await apply(log, 3, record(5))
    assert ids(await log.applied(ROOM, AppliedQuery())) == ["c3", "noop", "c1"]
    assert ids(await log.applied(ROOM, AppliedQuery(limit=2))) == ["c3", "noop"]


async def test_records_and_their_keys_outlive_a_trim(log: RoomLog) -> None:
    """Trimming history keeps recorded commands (and so their keys); it forgets the
    keys of unrecorded ones with their events."""
    # R16 H1 H3
    for n in range(1, 7):
        await apply(log, n, record(n) if n % 2 else None)
    await log.save_snapshot(ROOM, RoomState(room=ROOM, creator=ROOM, seq=6))
    assert await log.trim(ROOM, 7) == 6
    assert ids(await log.applied(ROOM, AppliedQuery())) == ["c5", "c3", "c1"]
    assert await log.lookup_command(ROOM, "c1") == Duplicate(first_seq=1, last_seq=1)
    assert await log.lookup_command(ROOM, "c2") is None
    assert await log.append(ROOM, "c3", [pending("again")], 6) == Duplicate(first_seq=3, last_seq=3)


async def test_records_survive_close_and_reopen(backend: Backend) -> None:
    """Records are durable with their append (H4)."""
    # R16
    log = await backend.open()
    await apply(log, 1, record(1))
    await log.close()
    reopened = await backend.open()
    assert await reopened.applied(ROOM, AppliedQuery()) == [
        AppliedCommand(command_id="c1", last_seq=1, record=record(1))
    ]


async def test_append_soon_carries_the_record(log: RoomLog) -> None:
    """append_soon stores the record like append."""
    # R16
    await asyncio.gather(
        log.append_soon(ROOM, "c1", [pending("a")], 0, record(1)),
        log.append_soon(ROOM, "c2", [pending("b")], 1, record(2)),
    )
    assert ids(await log.applied(ROOM, AppliedQuery())) == ["c2", "c1"]
