"""What the Redis access store adds for many nodes: grant versions the room append
checks (a revoke stored by one node stops a command another node decided before
hearing of it), appends refused until a node has seen a creator's every access
event, catching up, the wake-up; and the journal's durability across clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from protocol import access as a
from protocol.messages import Notification
from protocol.model import Actor
from server.access_service import AccessService
from server.domain.access import evolve_access
from server.journal import AuditEntry, AuditQuery, MemoryJournal
from server.log.base import Appended, Conflict, GrantVersion
from server.log.redis import RedisRoomLog
from server.log.redis_conn import RedisClient, connect
from server.redis_store import (
    PLATFORM,
    AccessMovedError,
    RedisAccessEventStore,
    RedisJournal,
    access_channel,
    decode_access_wake,
)
from tests.log.conftest import pending, server_for
from tests.redis_fixtures import unique_prefix

pytestmark = pytest.mark.redis

T0 = 1_700_000_000_000
CREATOR = Actor(role="creator", id="cr-1")
STAFF = Actor(role="staff", id="st", agency="ag-1")


@pytest.fixture(params=["redis", "redis-cluster"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[RedisClient]:
    """A client of the session's Redis, then of its Cluster."""
    url = server_for(request.param, request)
    assert url is not None
    opened = await connect(url)
    yield opened
    await opened.aclose()


async def linked(service: AccessService) -> None:
    """ag-1 is linked to cr-1 with LIVE access (four events of that pair)."""
    sent = await service.submit(
        STAFF, a.RequestLink(request_id="r1", creator="cr-1", with_access=True)
    )
    assert isinstance(sent, list)
    assert isinstance(await service.submit(CREATOR, a.AcceptRequest(request_id="r1")), list)


async def test_a_revoke_on_one_node_stops_a_command_decided_on_another(
    client: RedisClient,
) -> None:
    """Node A decides a staff command with the grant it has; node B stores the revoke
    first: A's append is refused with the new grant version, nothing appended, and
    after catching up A has no grant any more."""
    # R6 H5
    prefix, clock = unique_prefix(), (lambda: T0)
    store_a = RedisAccessEventStore(client, prefix=prefix)
    node_a = AccessService(store_a, MemoryJournal(), clock=clock)
    await node_a.start()
    await linked(node_a)
    node_b = AccessService(
        RedisAccessEventStore(client, prefix=prefix), MemoryJournal(), clock=clock
    )
    await node_b.start()

    assert node_a.grant_for("ag-1", "cr-1", T0) is not None
    decided = GrantVersion(agency="ag-1", version=store_a.grant_version("ag-1", "cr-1"))
    assert decided.version == 4
    assert isinstance(await node_b.submit(CREATOR, a.RevokeAccess(agency="ag-1")), list)

    log = RedisRoomLog(client, prefix=prefix)
    result = await log.append("cr-1", "c1", [pending("p1")], 0, grant_version=decided)
    assert result == Conflict(current_seq=0, grant_version=5)
    assert await log.last_seq("cr-1") == 0
    for event in await store_a.catch_up("cr-1"):
        node_a.book = evolve_access(node_a.book, event)
    assert node_a.grant_for("ag-1", "cr-1", T0) is None
    assert store_a.grant_version("ag-1", "cr-1") == 5
    await log.close()


async def test_grant_versions_count_each_pairs_events(client: RedisClient) -> None:
    """Each access event of an (agency, creator) pair bumps that pair's version only;
    a store that loads the events later counts the same."""
    # R5 R6
    prefix = unique_prefix()
    store = RedisAccessEventStore(client, prefix=prefix)
    await store.append_access_events(
        [
            a.LinkCreated(at=T0, agency="ag-1", creator="cr-1", link_id="l1"),
            a.LinkCreated(at=T0, agency="ag-2", creator="cr-1", link_id="l2"),
            a.AccessGranted(
                at=T0, agency="ag-1", creator="cr-1", link_id="l1", request_id="r1", scopes=["bag"]
            ),
            a.AgencyRegistered(at=T0, agency="ag-1", cross_border=False),
        ]
    )
    assert [store.grant_version(ag, "cr-1") for ag in ("ag-1", "ag-2", "ag-3")] == [2, 1, 0]
    later = RedisAccessEventStore(client, prefix=prefix)
    assert len(await later.load_access_events()) == 4
    assert later.grant_version("ag-1", "cr-1") == 2
    log = RedisRoomLog(client, prefix=prefix)
    ok = await log.append(
        "cr-1", "c1", [pending("p")], 0, grant_version=GrantVersion(agency="ag-1", version=2)
    )
    assert isinstance(ok, Appended)
    await log.close()


async def test_a_node_that_missed_events_cannot_append_until_it_catches_up(
    client: RedisClient,
) -> None:
    """A store that has not seen another node's events of a creator stores nothing
    (AccessMovedError); catch_up gives it those events, then its append goes in."""
    # R1 H5
    prefix = unique_prefix()
    node_a = RedisAccessEventStore(client, prefix=prefix)
    node_b = RedisAccessEventStore(client, prefix=prefix)
    assert await node_b.load_access_events() == []
    first = a.LinkCreated(at=T0, agency="ag-1", creator="cr-1", link_id="l1")
    second = a.LinkRemoved(at=T0 + 1, agency="ag-1", creator="cr-1", link_id="l1", by="creator")
    await node_a.append_access_events([first])
    with pytest.raises(AccessMovedError) as refused:
        await node_b.append_access_events([second])
    assert (refused.value.creator, refused.value.count) == ("cr-1", 1)
    assert await node_b.catch_up("cr-1") == [first]
    assert await node_b.catch_up("cr-1") == []
    await node_b.append_access_events([second])
    assert await node_a.catch_up("cr-1") == [second]
    assert await RedisAccessEventStore(client, prefix=prefix).load_access_events() == [
        first,
        second,
    ]


async def test_platform_facts_have_their_own_stream(client: RedisClient) -> None:
    """Facts about an agency alone are stored and caught up on as the platform's."""
    # R8
    prefix = unique_prefix()
    node_a = RedisAccessEventStore(client, prefix=prefix)
    node_b = RedisAccessEventStore(client, prefix=prefix)
    fact = a.AgencyRegistered(at=T0, agency="ag-1", cross_border=True)
    await node_a.append_access_events([fact])
    assert await node_b.catch_up(None) == [fact]
    assert PLATFORM.startswith("~")  # no id can be it


async def test_an_access_append_wakes_every_node(client: RedisClient) -> None:
    """An access append publishes (creator, how many events it has) on the access channel."""
    # R6 (every node hears of a revoke)
    prefix = unique_prefix()
    pubsub = client.pubsub()
    await pubsub.subscribe(access_channel(prefix))
    store = RedisAccessEventStore(client, prefix=prefix)
    await store.append_access_events(
        [a.LinkCreated(at=T0, agency="ag-1", creator="cr-1", link_id="l1")]
    )
    with anyio.fail_after(10):
        async for message in pubsub.listen():
            if message["type"] == "message":
                break
    wake = decode_access_wake(message["data"])
    assert (wake.creator, wake.count) == ("cr-1", 1)
    await pubsub.aclose()


async def test_an_unencodable_event_writes_nothing(client: RedisClient) -> None:
    """An event that cannot be encoded raises before anything is written."""
    store = RedisAccessEventStore(client, prefix=unique_prefix())
    bad = a.LinkCreated(at=T0, agency="ag-1", creator="cr-1", link_id="r1", ends_at=2**64)
    with pytest.raises(OverflowError):
        await store.append_access_events(
            [a.LinkCreated(at=T0, agency="ag-1", creator="cr-2", link_id="r0"), bad]
        )
    assert await store.load_access_events() == []


async def test_the_journal_is_shared_by_every_node(client: RedisClient) -> None:
    """Audit entries, notifications and read flags written by one node's journal are
    what another node's journal reads: a journal keeps nothing of its own."""
    # R14 R16
    prefix = unique_prefix()
    entry = AuditEntry(at=T0, creator="cr-1", actor=STAFF, family="bag", action="bag_pin")
    note = Notification(
        notification_id="n1", creator="cr-1", kind="agency_created", text="hi", at=T0, by=STAFF
    )
    writer = RedisJournal(client, prefix=prefix)
    await writer.audit([entry])
    await writer.notify([note])
    await writer.mark_read("cr-1", ["n1"])
    reader = RedisJournal(client, prefix=prefix)
    assert await reader.query_audit(AuditQuery(creator="cr-1")) == [entry]
    [stored] = await reader.inbox("cr-1")
    assert stored.read
