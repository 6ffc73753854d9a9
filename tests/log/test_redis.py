"""What the Redis room log adds to the RoomLog contract (which it passes: see
conftest ``backend``): the wake-up, epochs, grant versions, trimming on append,
lost scripts and servers, and durability with the settings H4 needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from redis.asyncio import Redis
from redis.typing import EncodableT

from protocol.model import RoomState
from server.log.base import (
    Appended,
    Conflict,
    Duplicate,
    GrantVersion,
    LogError,
    LogWriteError,
)
from server.log.redis import RedisRoomLog, decode_wake, wake_channel
from server.log.redis_conn import Script, creator_key
from server.log.redis_scripts import TRIM
from tests.log.conftest import pending, server_for
from tests.log.test_contract import all_events, fill
from tests.redis_fixtures import RedisProcess, free_port, unique_prefix

pytestmark = pytest.mark.redis

ROOM = "cr-1"
AGENCY = "ag-1"


@pytest.fixture(params=["redis", "redis-cluster"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[RedisRoomLog]:
    """A Redis room log under a fresh prefix on the session's server, then Cluster."""
    url = server_for(request.param, request)
    assert url is not None
    opened = await RedisRoomLog.open(url, prefix=unique_prefix())
    yield opened
    await opened.close()


async def test_an_append_publishes_its_room_seq_and_epoch(log: RedisRoomLog) -> None:
    """Each append with events publishes (room, last seq, epoch) on the room's channel;
    one that appended nothing publishes nothing."""
    # H2 (the wake-up says where the log is; the stream stays the truth)
    pubsub = log.client.pubsub()
    await pubsub.subscribe(wake_channel(ROOM, log.prefix))
    await log.append(ROOM, "noop", [], 0)
    await log.append(ROOM, "c1", [pending("a"), pending("b")], 0)
    with anyio.fail_after(10):
        async for message in pubsub.listen():
            if message["type"] == "message":
                break
    wake = decode_wake(message["data"])
    assert (wake.room, wake.last_seq) == (ROOM, 2)
    assert wake.epoch == await log.epoch(ROOM)
    await pubsub.aclose()


async def test_a_lost_room_gets_a_new_epoch(redis_durable: RedisProcess) -> None:
    """When Redis loses a room (a flush), a stale node's append conflicts at seq 0, the
    room gets another epoch, and resuming from an old seq says reload (H3)."""
    # H3
    log = await RedisRoomLog.open(redis_durable.url)
    assert await log.epoch(ROOM) is None
    await fill(log, ROOM, 3)
    before = await log.epoch(ROOM)
    assert before is not None
    await log.client.flushall()
    assert await log.append(ROOM, "c4", [pending("p4")], 3) == Conflict(current_seq=0)
    after = await log.epoch(ROOM)
    assert after is not None
    assert after != before
    assert await log.read_since(ROOM, 3, 10) is None
    assert await log.lookup_command(ROOM, "c1") is None
    await log.close()


async def test_events_missing_from_the_stream_are_not_served(log: RedisRoomLog) -> None:
    """If the stream lost events its room says it has, read_since says reload (H3)
    instead of serving a gap."""
    # H3 H2
    await fill(log, ROOM, 4)
    events = creator_key(log.prefix, ROOM, "events")
    await log.client.xdel(events, "2-0")
    assert await log.read_since(ROOM, 0, 10) is None
    assert [e.seq for e in await all_events(log, ROOM, 2)] == [3, 4]
    await log.client.delete(events)
    assert await log.read_since(ROOM, 2, 10) is None
    assert await log.read_since(ROOM, 4, 10) == []


async def test_a_moved_grant_refuses_the_append(log: RedisRoomLog) -> None:
    """An append decided with an older grant version (a revoke stored by another node
    since) appends nothing and says the grant's current version; decided again with
    it, it appends. A resend of an applied command is still its first ack."""
    # R6 H1 H5
    first = GrantVersion(agency=AGENCY, version=0)
    assert isinstance(
        await log.append(ROOM, "c1", [pending("a")], 0, grant_version=first), Appended
    )
    await log.client.hincrby(creator_key(log.prefix, ROOM, "grants"), AGENCY, 1)
    refused = await log.append(ROOM, "c2", [pending("b")], 1, grant_version=first)
    assert refused == Conflict(current_seq=1, grant_version=1)
    assert await log.last_seq(ROOM) == 1
    assert await log.lookup_command(ROOM, "c2") is None
    assert await log.append(ROOM, "c1", [pending("a")], 1, grant_version=first) == Duplicate(
        first_seq=1, last_seq=1
    )
    other = GrantVersion(agency="ag-2", version=0)  # another agency's grant did not move
    assert isinstance(
        await log.append(ROOM, "c3", [pending("c")], 1, grant_version=other), Appended
    )
    again = GrantVersion(agency=AGENCY, version=1)
    assert isinstance(
        await log.append(ROOM, "c2", [pending("b")], 2, grant_version=again), Appended
    )


async def test_a_stale_seq_and_a_moved_grant_are_both_said(log: RedisRoomLog) -> None:
    """A conflict reports the current seq, and the grant's version when it moved too."""
    # H5
    await fill(log, ROOM, 2)
    await log.client.hincrby(creator_key(log.prefix, ROOM, "grants"), AGENCY, 3)
    result = await log.append(
        ROOM, "c9", [pending("x")], 1, grant_version=GrantVersion(agency=AGENCY, version=0)
    )
    assert result == Conflict(current_seq=2, grant_version=3)
    assert await log.append(ROOM, "c9", [pending("x")], 1) == Conflict(current_seq=2)


async def test_appends_trim_behind_the_snapshot_when_asked(redis_url: str) -> None:
    """With retain_events, each append trims its room to that many events behind the
    snapshot, never past it; the keys of trimmed unrecorded commands go too (H1, H3)."""
    # H3 H1
    log = await RedisRoomLog.open(redis_url, prefix=unique_prefix(), retain_events=3)
    await fill(log, ROOM, 15)
    assert len(await all_events(log, ROOM)) == 15  # no snapshot: nothing trimmed
    await log.save_snapshot(ROOM, RoomState(room=ROOM, creator=ROOM, seq=10))
    await fill(log, ROOM, 1, start=15)  # 16 - 3 = 13 > 10: cut at the snapshot
    assert await log.read_since(ROOM, 9, 10) is None
    assert [e.seq for e in await all_events(log, ROOM, 10)] == [11, 12, 13, 14, 15, 16]
    assert await log.lookup_command(ROOM, "c10") is None
    assert await log.lookup_command(ROOM, "c11") == Duplicate(first_seq=11, last_seq=11)
    await log.close()


async def test_a_long_trim_goes_in_bounded_steps(
    log: RedisRoomLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trim() drops at most TRIM_CHUNK events per script run (a script blocks Redis),
    and still trims all it was asked to, never past the snapshot (H3)."""
    # H3
    monkeypatch.setattr("server.log.redis.TRIM_CHUNK", 3)
    runs: list[object] = []
    run = log._run

    async def counted(
        script: Script, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> list[object]:
        reply = await run(script, keys, args)
        if script is TRIM:
            runs.append(reply[0])
        return reply

    monkeypatch.setattr(log, "_run", counted)
    await fill(log, ROOM, 12)
    await log.save_snapshot(ROOM, RoomState(room=ROOM, creator=ROOM, seq=10))
    assert await log.trim(ROOM, 100) == 10
    assert runs == [3, 3, 3, 1]
    assert [e.seq for e in await all_events(log, ROOM, 10)] == [11, 12]
    assert await log.read_since(ROOM, 9, 10) is None


async def test_appends_survive_a_flushed_script_cache(log: RedisRoomLog) -> None:
    """After Redis forgot the scripts (a restart, a failover), the next calls load them
    again: nothing fails."""
    await fill(log, ROOM, 2)
    await log.client.script_flush()
    queued = [log.append_soon(ROOM, f"d{i}", [pending(f"d{i}")], 2 + i) for i in range(3)]
    results = [await future for future in queued]
    assert [r.last_seq for r in results if isinstance(r, Appended)] == [3, 4, 5]
    await log.client.script_flush()
    assert len(await all_events(log, ROOM)) == 5


async def test_an_unreachable_server_fails_the_append_not_hangs() -> None:
    """With Redis down, an append fails with LogWriteError (never acked) and still calls
    ``then``; a read raises LogError."""
    # H4
    log = RedisRoomLog(Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"), owns_client=True)
    done: list[bool] = []
    future = log.append_soon(ROOM, "c1", [pending("a")], 0, then=lambda: done.append(True))
    with anyio.fail_after(30):
        with pytest.raises(LogWriteError):
            await future
        with pytest.raises(LogError):
            await log.last_seq(ROOM)
    assert done == [True]
    await log.close()


def test_room_ids_with_braces_are_refused() -> None:
    """A room id with a brace would break the hash tag: ValueError, nothing sent."""
    log = RedisRoomLog(Redis())
    with pytest.raises(ValueError, match="braces"):
        log.append_soon("a{b}", "c1", [pending("a")], 0)


async def test_acked_appends_survive_a_kill_with_appendfsync_always(
    redis_durable: RedisProcess,
) -> None:
    """Acked appends, their keys, records and the snapshot are there after Redis is
    killed -9 and restarted (AOF, appendfsync always), with the same epoch."""
    # H4 H1
    log = await RedisRoomLog.open(redis_durable.url)
    await fill(log, ROOM, 5)
    await log.save_snapshot(ROOM, RoomState(room=ROOM, creator=ROOM, seq=5))
    written, epoch = await all_events(log, ROOM), await log.epoch(ROOM)
    await log.close()
    redis_durable.kill()
    redis_durable.start()
    reopened = await RedisRoomLog.open(redis_durable.url)
    assert await all_events(reopened, ROOM) == written
    assert await reopened.epoch(ROOM) == epoch
    assert await reopened.load_snapshot(ROOM) == RoomState(room=ROOM, creator=ROOM, seq=5)
    assert await reopened.append(ROOM, "c2", [pending("p2")], 5) == Duplicate(
        first_seq=2, last_seq=2
    )
    await reopened.close()
