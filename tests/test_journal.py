"""The Journal contract (audit trail R16, inbox R14) and the access event store:
every test taking ``journal`` or ``events`` runs against memory, SQLite, Redis and
a Redis Cluster (tests/log/conftest.py ``BACKENDS``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol import access as a
from protocol.messages import Notification
from protocol.model import Actor
from server.access_service import AccessEventStore, AccessService, MemoryAccessEventStore
from server.journal import AuditEntry, AuditQuery, Journal, MemoryJournal
from server.log.redis_conn import connect
from server.log.sqlite import SqliteStore
from server.redis_store import RedisAccessEventStore, RedisJournal
from server.store import SqliteAccessEventStore, SqliteJournal
from tests.actors import (
    AGENCY,
    ANN,
    ANN_ELSEWHERE,
    CREATOR,
    CREATOR_ID,
    EVE,
    OTHER_AGENCY,
    OTHER_CREATOR_ID,
)
from tests.log.conftest import BACKENDS, server_for
from tests.redis_fixtures import unique_prefix

T0 = 1_700_000_000_000
CREATOR_NAMED_ANN = Actor(role="creator", id="ann")


def entry(
    at: int,
    actor: Actor = ANN,
    *,
    creator: str = CREATOR_ID,
    family: str = "bag",
    action: str = "bag_pin",
    **more: object,
) -> AuditEntry:
    """An audit entry; extra fields (command_id, code, seq) by keyword."""
    return AuditEntry(at=at, creator=creator, actor=actor, family=family, action=action, **more)  # type: ignore[arg-type]


def note(
    nid: str, creator: str = CREATOR_ID, *, at: int = T0, text: str = "hi", read: bool = False
) -> Notification:
    """A notification from ANN."""
    return Notification(
        notification_id=nid,
        creator=creator,
        kind="agency_created",
        text=text,
        at=at,
        by=ANN,
        read=read,
    )


@pytest.fixture(params=BACKENDS)
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    """A fresh journal of each implementation."""
    url = server_for(request.param, request)
    if url is not None:
        client = await connect(url)
        yield RedisJournal(client, prefix=unique_prefix())
        await client.aclose()
        return
    if request.param == "memory":
        yield MemoryJournal()
        return
    async with SqliteStore(tmp_path / "journal.db") as store:
        yield SqliteJournal(store)


# --- audit ---------------------------------------------------------------------


async def test_audit_newest_first_with_every_field(journal: Journal) -> None:
    """R16: entries come back newest first, each with its real actor and fields."""
    first = entry(T0, CREATOR, family="live", action="start_live", command_id="c1", seq=1)
    second = entry(T0 + 1, ANN, command_id="c2", code=None, seq=2)
    third = entry(T0 + 2, EVE, family="live", action="end_live", command_id="c3", code=201)
    await journal.audit([first, second])
    await journal.audit([third])
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID)) == [third, second, first]


async def test_audit_is_per_creator(journal: Journal) -> None:
    """R16: a creator reads only their own trail."""
    mine, theirs = entry(T0), entry(T0, creator=OTHER_CREATOR_ID)
    await journal.audit([mine, theirs])
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID)) == [mine]
    assert await journal.query_audit(AuditQuery(creator=OTHER_CREATOR_ID)) == [theirs]
    assert await journal.query_audit(AuditQuery(creator="cr-3")) == []


async def test_audit_filter_by_staff_matches_staff_actors_only(journal: Journal) -> None:
    """R16: the staff filter is a staff member's id; a creator with that id is not them."""
    entries = [
        entry(T0, ANN),
        entry(T0 + 1, EVE),
        entry(T0 + 2, CREATOR_NAMED_ANN),
        entry(T0 + 3, ANN_ELSEWHERE),
    ]
    await journal.audit(entries)
    found = await journal.query_audit(AuditQuery(creator=CREATOR_ID, staff="ann"))
    assert found == [entries[3], entries[0]]


async def test_audit_filter_by_agency(journal: Journal) -> None:
    """R16: the agency filter keeps every staff member of that agency."""
    entries = [
        entry(T0, ANN),
        entry(T0 + 1, EVE),
        entry(T0 + 2, CREATOR),
        entry(T0 + 3, ANN_ELSEWHERE),
    ]
    await journal.audit(entries)
    found = await journal.query_audit(AuditQuery(creator=CREATOR_ID, agency=OTHER_AGENCY))
    assert found == [entries[3], entries[1]]


async def test_audit_filter_by_family(journal: Journal) -> None:
    """R16: the family filter (``access`` included) keeps that family only."""
    entries = [
        entry(T0, family="bag"),
        entry(T0 + 1, family="access", action="unlink"),
        entry(T0 + 2, family="bag"),
    ]
    await journal.audit(entries)
    found = await journal.query_audit(AuditQuery(creator=CREATOR_ID, family="access"))
    assert found == [entries[1]]


async def test_audit_time_window_since_inclusive_until_exclusive(journal: Journal) -> None:
    """R16: ``since`` <= at < ``until``."""
    entries = [entry(T0 + i) for i in range(5)]
    await journal.audit(entries)
    found = await journal.query_audit(AuditQuery(creator=CREATOR_ID, since=T0 + 1, until=T0 + 3))
    assert found == [entries[2], entries[1]]
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID, since=T0 + 4)) == [entries[4]]
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID, until=T0 + 1)) == [entries[0]]


async def test_audit_out_of_range_bounds(journal: Journal) -> None:
    """Bounds beyond 64 bits are accepted and mean 'everything' / 'nothing'."""
    entries = [entry(T0), entry(T0 + 1)]
    await journal.audit(entries)
    huge = 10**30
    assert (
        await journal.query_audit(AuditQuery(creator=CREATOR_ID, since=-huge, until=huge))
        == entries[::-1]
    )
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID, since=huge)) == []


async def test_audit_filters_combine(journal: Journal) -> None:
    """R16: every given filter must match."""
    entries = [
        entry(T0, ANN, family="bag"),
        entry(T0 + 1, ANN, family="live"),
        entry(T0 + 2, EVE, family="bag"),
        entry(T0 + 3, ANN, family="bag"),
    ]
    await journal.audit(entries)
    query = AuditQuery(creator=CREATOR_ID, agency=AGENCY, staff="ann", family="bag", since=T0 + 1)
    assert await journal.query_audit(query) == [entries[3]]


async def test_audit_limit(journal: Journal) -> None:
    """At most ``limit`` entries, the newest; a limit of 0 gives none."""
    entries = [entry(T0 + i) for i in range(10)]
    await journal.audit(entries)
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID, limit=3)) == entries[:-4:-1]
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID, limit=0)) == []


async def test_audit_nothing(journal: Journal) -> None:
    """Recording no entries is a no-op."""
    await journal.audit([])
    assert await journal.query_audit(AuditQuery(creator=CREATOR_ID)) == []


# --- inbox -------------------------------------------------------------------------


async def test_inbox_newest_first(journal: Journal) -> None:
    """R14: the creator's inbox lists notifications newest first."""
    await journal.notify([note("n1"), note("n2")])
    await journal.notify([note("n3")])
    assert [n.notification_id for n in await journal.inbox(CREATOR_ID)] == ["n3", "n2", "n1"]


async def test_notify_is_idempotent_per_id(journal: Journal) -> None:
    """R14: a notification stored again (same id) is ignored: the first one stays."""
    await journal.notify([note("n1", text="first"), note("n2")])
    await journal.notify([note("n1", text="second")])
    inbox = await journal.inbox(CREATOR_ID)
    assert [(n.notification_id, n.text) for n in inbox] == [("n2", "hi"), ("n1", "first")]


async def test_inbox_is_per_creator(journal: Journal) -> None:
    """R14: the same id in two creators' inboxes is two notifications."""
    await journal.notify([note("n1", CREATOR_ID), note("n1", OTHER_CREATOR_ID, text="other")])
    assert await journal.inbox(CREATOR_ID) == [note("n1", CREATOR_ID)]
    assert await journal.inbox(OTHER_CREATOR_ID) == [note("n1", OTHER_CREATOR_ID, text="other")]
    assert await journal.inbox("cr-3") == []


async def test_mark_read_and_unread_only(journal: Journal) -> None:
    """R14: marking read counts changes once; unread_only hides read notifications."""
    await journal.notify([note("n1"), note("n2"), note("n3")])
    assert await journal.mark_read(CREATOR_ID, ["n1", "n3", "n3", "nope"]) == 2
    assert await journal.mark_read(CREATOR_ID, ["n1"]) == 0
    assert await journal.mark_read(CREATOR_ID, []) == 0
    unread = await journal.inbox(CREATOR_ID, unread_only=True)
    assert [n.notification_id for n in unread] == ["n2"]
    everything = await journal.inbox(CREATOR_ID)
    assert [(n.notification_id, n.read) for n in everything] == [
        ("n3", True),
        ("n2", False),
        ("n1", True),
    ]


async def test_mark_read_only_touches_that_creator(journal: Journal) -> None:
    """A creator cannot mark another creator's notification read."""
    await journal.notify([note("n1", CREATOR_ID), note("n1", OTHER_CREATOR_ID)])
    assert await journal.mark_read(OTHER_CREATOR_ID, ["n1"]) == 1
    assert [n.read for n in await journal.inbox(CREATOR_ID)] == [False]


async def test_notification_stored_read(journal: Journal) -> None:
    """A notification stored already read stays out of the unread list."""
    await journal.notify([note("n1", read=True)])
    assert await journal.inbox(CREATOR_ID, unread_only=True) == []
    assert await journal.inbox(CREATOR_ID) == [note("n1", read=True)]


async def test_inbox_limit(journal: Journal) -> None:
    """At most ``limit`` notifications, the newest."""
    await journal.notify([note(f"n{i}") for i in range(5)])
    assert [n.notification_id for n in await journal.inbox(CREATOR_ID, limit=2)] == ["n4", "n3"]
    assert await journal.inbox(CREATOR_ID, limit=0) == []


async def test_sqlite_journal_survives_reopen(tmp_path: Path) -> None:
    """Audit entries, notifications and read flags are durable across a restart."""
    path = tmp_path / "journal.db"
    async with SqliteStore(path) as store:
        journal = SqliteJournal(store)
        await journal.audit([entry(T0), entry(T0 + 1, EVE)])
        await journal.notify([note("n1"), note("n2")])
        await journal.mark_read(CREATOR_ID, ["n2"])
    async with SqliteStore(path) as store:
        journal = SqliteJournal(store)
        assert await journal.query_audit(AuditQuery(creator=CREATOR_ID)) == [
            entry(T0 + 1, EVE),
            entry(T0),
        ]
        assert await journal.inbox(CREATOR_ID) == [note("n2", read=True), note("n1")]


# --- access event store ----------------------------------------------------------------

REQUEST = a.AccessRequest(
    request_id="r1",
    kind="link_and_access",
    agency=AGENCY,
    creator=CREATOR_ID,
    sent_by="ann",
    sent_at=T0,
    expires_at=T0 + 7,
)
EVENTS: list[a.AccessEvent] = [
    a.AgencyRegistered(at=T0, agency=AGENCY, cross_border=True),
    a.SharingRecorded(at=T0, agency=AGENCY, creator=CREATOR_ID, kind="data"),
    a.RequestSent(at=T0, request=REQUEST),
    a.RequestAccepted(
        at=T0 + 1, request_id="r1", agency=AGENCY, creator=CREATOR_ID, kind="link_and_access"
    ),
    a.LinkCreated(at=T0 + 1, agency=AGENCY, creator=CREATOR_ID, link_id="r1", ends_at=T0 + 10**9),
    a.AccessGranted(
        at=T0 + 1,
        agency=AGENCY,
        creator=CREATOR_ID,
        link_id="r1",
        request_id="r1",
        scopes=["bag", "planning"],
    ),
    a.LinkExtended(
        at=T0 + 2, agency=AGENCY, creator=CREATOR_ID, link_id="r1", ends_at=T0 + 2 * 10**9
    ),
    a.AccessRevoked(at=T0 + 3, agency=AGENCY, creator=CREATOR_ID, link_id="r1"),
    a.RequestDeclined(at=T0 + 4, request_id="r2", agency=AGENCY, creator=CREATOR_ID, kind="access"),
    a.RequestCancelled(
        at=T0 + 5, request_id="r3", agency=AGENCY, creator=CREATOR_ID, kind="extension"
    ),
    a.LinkRemoved(at=T0 + 6, agency=AGENCY, creator=CREATOR_ID, link_id="r1", by="creator"),
]


@pytest.fixture(params=BACKENDS)
async def events(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AccessEventStore]:
    """A fresh access event store of each implementation."""
    url = server_for(request.param, request)
    if url is not None:
        client = await connect(url)
        yield RedisAccessEventStore(client, prefix=unique_prefix())
        await client.aclose()
        return
    if request.param == "memory":
        yield MemoryAccessEventStore()
        return
    async with SqliteStore(tmp_path / "access.db") as store:
        yield SqliteAccessEventStore(store)


async def test_access_events_round_trip_in_order(events: AccessEventStore) -> None:
    """R1-R9: every kind of access event comes back equal, in the order appended."""
    assert await events.load_access_events() == []
    await events.append_access_events(EVENTS[:3])
    await events.append_access_events([])
    await events.append_access_events(EVENTS[3:])
    assert await events.load_access_events() == EVENTS


async def test_access_events_survive_reopen(tmp_path: Path) -> None:
    """R5: a grant recorded before a restart is in force after it (events are durable)."""
    path = tmp_path / "access.db"
    async with SqliteStore(path) as store:
        await SqliteAccessEventStore(store).append_access_events(EVENTS[:6])
    async with SqliteStore(path) as store:
        stored = SqliteAccessEventStore(store)
        assert await stored.load_access_events() == EVENTS[:6]
        service = AccessService(stored, MemoryJournal(), clock=lambda: T0 + 2)
        await service.start()
        grant = service.grant_for(AGENCY, CREATOR_ID, T0 + 2)
        assert grant is not None
        assert grant.scopes == frozenset({"bag", "planning"})


async def test_unencodable_event_writes_nothing(tmp_path: Path) -> None:
    """An event that cannot be encoded raises before anything is written."""
    async with SqliteStore(tmp_path / "access.db") as store:
        stored = SqliteAccessEventStore(store)
        bad = a.LinkCreated(at=T0, agency=AGENCY, creator=CREATOR_ID, link_id="r1", ends_at=2**64)
        with pytest.raises(OverflowError):
            await stored.append_access_events([EVENTS[0], bad])
        assert await stored.load_access_events() == []
