"""The RoomLog contract: every implementation passes these (see conftest ``backend``).

Its other parts, on the same fixture: command records (``test_applied.py``) and
what an idempotency key matches (``test_keys.py``, H1, decision 0016)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from protocol.messages import Event, ProductPinned
from protocol.model import BagItem, CommentSettings, FlashSale, Giveaway, RoomState
from server.log.base import (
    Appended,
    AppendResult,
    Conflict,
    Duplicate,
    LogClosedError,
    RoomLog,
)
from tests.log.conftest import STAFF, Backend, pending

ROOM = "room-1"


async def fill(log: RoomLog, room: str, n: int, start: int = 0) -> None:
    """Append commands c<start+1>..c<start+n>, one event each."""
    for i in range(start + 1, start + n + 1):
        result = await log.append(room, f"c{i}", [pending(f"p{i}")], i - 1)
        assert isinstance(result, Appended)


async def all_events(log: RoomLog, room: str, after_seq: int = 0) -> list[Event]:
    """Every retained event after ``after_seq``."""
    events = await log.read_since(room, after_seq, 100_000)
    assert events is not None
    return events


async def append_retrying(log: RoomLog, room: str, command_id: str, product: str) -> int:
    """Append one command the way a node does: on Conflict, reload the seq and retry."""
    seq = await log.last_seq(room)
    while True:
        result = await log.append(room, command_id, [pending(product)], seq)
        match result:
            case Appended(last_seq=last) | Duplicate(last_seq=last):
                return last
            case Conflict(current_seq=current):
                seq = current


# --- append -------------------------------------------------------------------


async def test_new_room_is_empty(log: RoomLog) -> None:
    """A room never written to is at seq 0 with no history, snapshot or commands."""
    assert await log.last_seq(ROOM) == 0
    assert await log.read_since(ROOM, 0, 10) == []
    assert await log.load_snapshot(ROOM) is None
    assert await log.lookup_command(ROOM, "c1") is None


async def test_append_numbers_events_from_one(log: RoomLog) -> None:
    """The first append gets seqs 1..n, stamped with room and command id (H2)."""
    result = await log.append(ROOM, "c1", [pending("a"), pending("b"), pending("c")], 0)
    assert isinstance(result, Appended)
    assert [e.seq for e in result.events] == [1, 2, 3]
    assert (result.first_seq, result.last_seq) == (1, 3)
    assert {e.room for e in result.events} == {ROOM}
    assert {e.command_id for e in result.events} == {"c1"}
    assert [e.body for e in result.events] == [ProductPinned(product_id=p) for p in "abc"]
    assert result.events[0].by == STAFF
    assert await log.last_seq(ROOM) == 3
    assert await all_events(log, ROOM) == list(result.events)


async def test_appends_continue_the_sequence(log: RoomLog) -> None:
    """Each append continues right after the previous one, without gaps (H2)."""
    await log.append(ROOM, "c1", [pending("a"), pending("b")], 0)
    result = await log.append(ROOM, "c2", [pending("c")], 2)
    assert isinstance(result, Appended)
    assert [e.seq for e in result.events] == [3]
    assert [e.seq for e in await all_events(log, ROOM)] == [1, 2, 3]


async def test_append_without_command_id_has_no_key(log: RoomLog) -> None:
    """Server-made events (command_id None) append normally and record no key."""
    result = await log.append(ROOM, None, [pending("a")], 0)
    assert isinstance(result, Appended)
    assert result.events[0].command_id is None
    again = await log.append(ROOM, None, [pending("a")], 1)
    assert isinstance(again, Appended)
    assert again.last_seq == 2


async def test_resend_returns_first_result_and_appends_once(log: RoomLog) -> None:
    """A resent command id appends nothing and gets the first application's seqs (H1)."""
    await fill(log, ROOM, 2)
    first = await log.append(ROOM, "cmd", [pending("x"), pending("y")], 2)
    assert isinstance(first, Appended)
    again = await log.append(ROOM, "cmd", [pending("x"), pending("y")], 4)
    assert again == Duplicate(first_seq=3, last_seq=4)
    assert (again.first_seq, again.last_seq) == (first.first_seq, first.last_seq)
    assert await log.last_seq(ROOM) == 4
    assert await log.lookup_command(ROOM, "cmd") == again


async def test_resend_after_log_moved_on_is_duplicate_not_conflict(log: RoomLog) -> None:
    """A resend after a lost ack, with a stale expected seq, is recognised (H1 before H5)."""
    await log.append(ROOM, "cmd", [pending("x")], 0)
    await fill(log, ROOM, 3, start=1)
    assert await log.append(ROOM, "cmd", [pending("x")], 0) == Duplicate(first_seq=1, last_seq=1)
    assert await log.last_seq(ROOM) == 4


async def test_command_that_made_no_event_is_remembered(log: RoomLog) -> None:
    """A command deciding nothing still records its id: a resend is a Duplicate (H1)."""
    await fill(log, ROOM, 2)
    result = await log.append(ROOM, "noop", [], 2)
    assert result == Appended(events=(), last_seq=2)
    assert isinstance(result, Appended)
    assert result.first_seq == 3
    await fill(log, ROOM, 1, start=2)
    assert await log.append(ROOM, "noop", [], 3) == Duplicate(first_seq=3, last_seq=2)
    assert await log.last_seq(ROOM) == 3


async def test_command_ids_are_scoped_to_the_room(log: RoomLog) -> None:
    """The same command id in another room is another command (H1 is per room)."""
    await log.append("room-a", "c1", [pending("a")], 0)
    result = await log.append("room-b", "c1", [pending("b")], 0)
    assert isinstance(result, Appended)
    assert result.last_seq == 1


async def test_stale_expected_seq_conflicts_and_changes_nothing(log: RoomLog) -> None:
    """An append decided on a stale state gets Conflict with the current seq; no write."""
    await fill(log, ROOM, 3)
    assert await log.append(ROOM, "late", [pending("z")], 2) == Conflict(current_seq=3)
    assert await log.append(ROOM, "ahead", [pending("z")], 7) == Conflict(current_seq=3)
    assert await log.last_seq(ROOM) == 3
    assert await log.lookup_command(ROOM, "late") is None
    retried = await log.append(ROOM, "late", [pending("z")], 3)
    assert isinstance(retried, Appended)
    assert retried.last_seq == 4


async def test_append_rejects_negative_expected_seq(log: RoomLog) -> None:
    """A negative expected seq is a caller bug: ValueError, nothing stored."""
    with pytest.raises(ValueError, match="expected_seq"):
        await log.append(ROOM, "c1", [pending("a")], -1)
    assert await log.last_seq(ROOM) == 0


# --- concurrency ----------------------------------------------------------------


async def test_concurrent_appends_to_one_room_are_gap_free(log: RoomLog) -> None:
    """Many tasks appending to one room get one gap-free order, each command once (H2, H1)."""
    tasks, per_task = 20, 10

    async def worker(t: int) -> list[int]:
        acked = []
        for i in range(per_task):
            acked.append(await append_retrying(log, ROOM, f"t{t}-c{i}", f"p{t}-{i}"))
            # A resend after a (pretend) lost ack acks the same seq again (H1).
            assert await append_retrying(log, ROOM, f"t{t}-c{i}", f"p{t}-{i}") == acked[-1]
        return acked

    acks = await asyncio.gather(*(worker(t) for t in range(tasks)))
    events = await all_events(log, ROOM)
    total = tasks * per_task
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert sorted(s for acked in acks for s in acked) == list(range(1, total + 1))
    assert len({e.command_id for e in events}) == total
    by_seq = {e.seq: e.command_id for e in events}
    for t, acked in enumerate(acks):
        assert [by_seq[s] for s in acked] == [f"t{t}-c{i}" for i in range(per_task)]


async def test_concurrent_appends_to_many_rooms_are_gap_free(log: RoomLog) -> None:
    """Concurrent appends spread over rooms give each room its own gap-free order (H2)."""
    rooms, tasks_per_room, per_task = 8, 4, 5

    async def worker(room: str, t: int) -> None:
        for i in range(per_task):
            await append_retrying(log, room, f"t{t}-c{i}", f"p{i}")

    await asyncio.gather(
        *(worker(f"room-{r}", t) for r in range(rooms) for t in range(tasks_per_room))
    )
    for r in range(rooms):
        events = await all_events(log, f"room-{r}")
        assert [e.seq for e in events] == list(range(1, tasks_per_room * per_task + 1))
        assert {e.room for e in events} == {f"room-{r}"}
        assert await log.last_seq(f"room-{r}") == tasks_per_room * per_task


async def test_concurrent_resends_apply_once(log: RoomLog) -> None:
    """The same command sent concurrently many times is applied exactly once (H1)."""
    results: list[AppendResult] = await asyncio.gather(
        *(log.append(ROOM, "cmd", [pending("x")], 0) for _ in range(16))
    )
    applied = [r for r in results if isinstance(r, Appended)]
    assert len(applied) == 1
    assert all(r == Duplicate(first_seq=1, last_seq=1) for r in results if r is not applied[0])
    assert await log.last_seq(ROOM) == 1


# --- read_since -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after_seq", "limit", "expected"),
    [
        (0, 100, list(range(1, 11))),
        (0, 3, [1, 2, 3]),
        (3, 4, [4, 5, 6, 7]),
        (9, 5, [10]),
        (10, 5, []),
    ],
)
async def test_read_since_returns_exact_slices(
    log: RoomLog, after_seq: int, limit: int, expected: list[int]
) -> None:
    """read_since gives the events right after after_seq, in order, at most limit (H3)."""
    await fill(log, ROOM, 10)
    events = await log.read_since(ROOM, after_seq, limit)
    assert events is not None
    assert [e.seq for e in events] == expected
    assert [e.command_id for e in events] == [f"c{s}" for s in expected]


async def test_read_since_beyond_the_log_is_none(log: RoomLog) -> None:
    """A client claiming a seq the log never reached is told to reload (H3)."""
    await fill(log, ROOM, 3)
    assert await log.read_since(ROOM, 4, 10) is None
    assert await log.read_since("unknown", 1, 10) is None
    assert await log.read_since("unknown", 0, 10) == []


async def test_read_since_rejects_bad_arguments(log: RoomLog) -> None:
    """Negative seqs and non-positive limits are caller bugs (ValueError)."""
    with pytest.raises(ValueError, match="after_seq"):
        await log.read_since(ROOM, -1, 10)
    with pytest.raises(ValueError, match="limit"):
        await log.read_since(ROOM, 0, 0)


# --- snapshots and trim -------------------------------------------------------------


def rich_state(seq: int) -> RoomState:
    """A room state touching most kinds of field, as of ``seq``."""
    return RoomState(
        room=ROOM,
        creator="creator-1",
        seq=seq,
        status="live",
        live_id="live-1",
        title="Spring drop",
        bag=[BagItem(product_id="p1", title="Mug", price_cents=1299, stock=5)],
        pinned="p1",
        giveaways={"g1": Giveaway(giveaway_id="g1", product_id="p1", deployed_at=5)},
        flash_sales={"s1": FlashSale(sale_id="s1", product_id="p1", price_cents=999, stock=3)},
        comment_settings=CommentSettings(allow_comments=False),
        muted={"viewer-9": 1_700_000_300_000},
        versions={"bag": seq},
    )


async def test_snapshot_round_trip(log: RoomLog) -> None:
    """A saved snapshot loads back equal."""
    await fill(log, ROOM, 4)
    await log.save_snapshot(ROOM, rich_state(4))
    assert await log.load_snapshot(ROOM) == rich_state(4)


async def test_older_snapshot_does_not_replace_newer(log: RoomLog) -> None:
    """Saving a snapshot older than the stored one keeps the newer."""
    await fill(log, ROOM, 4)
    await log.save_snapshot(ROOM, rich_state(4))
    await log.save_snapshot(ROOM, rich_state(2))
    loaded = await log.load_snapshot(ROOM)
    assert loaded is not None
    assert loaded.seq == 4


async def test_snapshot_must_match_room_and_log(log: RoomLog) -> None:
    """A snapshot ahead of the log or of another room is refused (ValueError)."""
    await fill(log, ROOM, 2)
    with pytest.raises(ValueError, match="ahead"):
        await log.save_snapshot(ROOM, rich_state(3))
    with pytest.raises(ValueError, match="room"):
        await log.save_snapshot("room-2", rich_state(0))
    assert await log.load_snapshot(ROOM) is None


async def test_trim_without_snapshot_keeps_everything(log: RoomLog) -> None:
    """History is never trimmed unless a snapshot covers it (H3)."""
    await fill(log, ROOM, 5)
    assert await log.trim(ROOM, 4) == 0
    assert len(await all_events(log, ROOM)) == 5


async def test_trim_never_passes_the_snapshot(log: RoomLog) -> None:
    """Trim stops at the snapshot: snapshot + history always rebuild the room (H3)."""
    await fill(log, ROOM, 15)
    await log.save_snapshot(ROOM, rich_state(10))
    assert await log.trim(ROOM, 1_000) == 10
    assert await log.read_since(ROOM, 9, 100) is None
    assert [e.seq for e in await all_events(log, ROOM, 10)] == [11, 12, 13, 14, 15]
    assert await log.last_seq(ROOM) == 15


async def test_trim_with_retention_marks_truncated_history(log: RoomLog) -> None:
    """After a trim, resuming from before the retained history says so (None, H3)."""
    await fill(log, ROOM, 15)
    await log.save_snapshot(ROOM, rich_state(10))
    assert await log.trim(ROOM, 8) == 7  # keep 3 events behind the snapshot
    assert await log.read_since(ROOM, 6, 100) is None
    assert await log.read_since(ROOM, 0, 100) is None
    assert [e.seq for e in await all_events(log, ROOM, 7)] == list(range(8, 16))
    assert await log.trim(ROOM, 5) == 0  # already trimmed further
    # Idempotency keys live as long as their events (H1 window = retained history).
    assert await log.lookup_command(ROOM, "c7") is None
    assert await log.lookup_command(ROOM, "c8") == Duplicate(first_seq=8, last_seq=8)


async def test_append_after_trim_continues_the_sequence(log: RoomLog) -> None:
    """Trimming does not disturb the numbering of later events (H2)."""
    await fill(log, ROOM, 5)
    await log.save_snapshot(ROOM, rich_state(5))
    assert await log.trim(ROOM, 6) == 5
    assert await log.read_since(ROOM, 5, 10) == []
    result = await log.append(ROOM, "c6", [pending("p6")], 5)
    assert isinstance(result, Appended)
    assert result.last_seq == 6
    assert [e.seq for e in await all_events(log, ROOM, 5)] == [6]


# --- durability and lifecycle ---------------------------------------------------------


async def test_everything_survives_close_and_reopen(backend: Backend) -> None:
    """Events, snapshot and command keys are there after a clean restart (H4, H1)."""
    log = await backend.open()
    await fill(log, ROOM, 6)
    await log.save_snapshot(ROOM, rich_state(6))
    written = await all_events(log, ROOM)
    await log.close()

    reopened = await backend.open()
    assert await reopened.last_seq(ROOM) == 6
    assert await all_events(reopened, ROOM) == written
    assert await reopened.load_snapshot(ROOM) == rich_state(6)
    assert await reopened.append(ROOM, "c3", [pending("p3")], 0) == Duplicate(
        first_seq=3, last_seq=3
    )
    result = await reopened.append(ROOM, "c7", [pending("p7")], 6)
    assert isinstance(result, Appended)
    assert result.last_seq == 7


async def test_closed_log_refuses_calls(log: RoomLog) -> None:
    """After close every call raises LogClosedError; close is idempotent."""
    await log.close()
    await log.close()
    with pytest.raises(LogClosedError):
        await log.append(ROOM, "c1", [pending("a")], 0)
    with pytest.raises(LogClosedError):
        await log.read_since(ROOM, 0, 10)


async def test_append_soon_applies_in_call_order(log: RoomLog) -> None:
    """Appends queued with append_soon apply in the order they were queued."""
    # H2 (one order per room: the hub pipelines a room's commands on this)
    first = log.append_soon(ROOM, "c1", [pending("a")], 0)
    second = log.append_soon(ROOM, "c2", [pending("b")], 1)
    results = await asyncio.gather(first, second)
    assert [r.last_seq for r in results if isinstance(r, Appended)] == [1, 2]
    assert [e.command_id for e in await all_events(log, ROOM)] == ["c1", "c2"]


async def test_append_soon_on_a_closed_log_fails_its_future(log: RoomLog) -> None:
    """append_soon never raises for a closed log: the error is on the future."""
    await log.close()
    future = log.append_soon(ROOM, "c1", [pending("a")], 0)
    with pytest.raises(LogClosedError):
        await future


async def test_append_soon_calls_then_once_when_done(log: RoomLog) -> None:
    """``then`` runs once per append, in queue order, each when its future is done."""
    seen: list[tuple[str, bool]] = []
    futures: dict[str, asyncio.Future[AppendResult]] = {}

    def then(cid: str) -> Callable[[], None]:
        return lambda: seen.append((cid, futures[cid].done()))

    for cid, seq in (("c1", 0), ("c2", 1)):
        futures[cid] = log.append_soon(ROOM, cid, [pending(cid)], seq, then=then(cid))
    await asyncio.gather(*futures.values())
    await asyncio.sleep(0)  # a done callback (the memory log's) runs one turn later
    assert seen == [("c1", True), ("c2", True)]


async def test_append_soon_calls_then_when_the_log_is_closed(log: RoomLog) -> None:
    """A failed append still calls ``then``, after its future holds the error."""
    await log.close()
    seen: list[bool] = []
    future = log.append_soon(ROOM, "c1", [pending("a")], 0, then=lambda: seen.append(future.done()))
    with pytest.raises(LogClosedError):
        await future
    await asyncio.sleep(0)
    assert seen == [True]
