"""The access book's storage contract: an access book rebuilt from the stored events
after a restart is the one the node had - links, grants, requests in the order they
were sent, platform facts - on memory, SQLite, Redis and a Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from protocol import access as a
from protocol.model import Actor
from server.access_service import AccessEventStore, AccessService, MemoryAccessEventStore
from server.journal import MemoryJournal
from server.log.redis_conn import RedisClient, connect
from server.log.sqlite import SqliteStore
from server.redis_store import RedisAccessEventStore
from server.store import SqliteAccessEventStore
from tests.log.conftest import BACKENDS, server_for
from tests.redis_fixtures import unique_prefix

T0 = 1_700_000_000_000
DAY = 24 * 3600 * 1000


class Clock:
    """A clock that moves one millisecond each time it is read."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1
        return self.now


class Storage:
    """Opens access-event stores over one storage; ``restart`` closes what is open."""

    def __init__(
        self,
        opener: Callable[[], Awaitable[AccessEventStore]],
        closer: Callable[[], Awaitable[None]],
    ) -> None:
        self.open = opener
        self.restart = closer


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """One storage of each implementation."""
    url = server_for(request.param, request)
    opened_stores: list[SqliteStore] = []
    clients: list[RedisClient] = []
    memory = MemoryAccessEventStore()
    prefix = unique_prefix()

    async def open_store() -> AccessEventStore:
        if url is not None:
            clients.append(await connect(url))
            return RedisAccessEventStore(clients[-1], prefix=prefix)
        if request.param == "memory":
            return memory
        opened_stores.append(SqliteStore(tmp_path / "access.db"))
        await opened_stores[-1].start()
        return SqliteAccessEventStore(opened_stores[-1])

    async def close() -> None:
        for store in opened_stores:
            await store.close()
        for client in clients:
            await client.aclose()
        opened_stores.clear()
        clients.clear()

    yield Storage(open_store, close)
    await close()


def staff(agency: str) -> Actor:
    return Actor(role="staff", id=f"st-{agency}", agency=agency)


def creator(cid: str) -> Actor:
    return Actor(role="creator", id=cid)


async def submit(service: AccessService, who: Actor, command: a.AccessCommand) -> None:
    decision = await service.submit(who, command)
    assert isinstance(decision, list), decision


async def test_the_book_after_a_restart_is_the_book_before(storage: Storage) -> None:
    """Links, grants with their scopes and ends, revokes, declines, platform facts and
    requests - in the order they were sent, across creators - come back (R1-R9)."""
    # R1 R3 R5 R7 R8 R9
    clock = Clock()
    service = AccessService(await storage.open(), MemoryJournal(), clock=clock)
    await service.start()
    await service.record_platform_fact(a.RegisterAgency(agency="ag-2", cross_border=True))
    await service.record_platform_fact(a.RecordSharing(agency="ag-2", creator="cr-2", kind="data"))
    ends = T0 + 30 * DAY
    for rid, agency, cid in (
        ("r1", "ag-1", "cr-2"),
        ("r2", "ag-1", "cr-1"),
        ("r3", "ag-2", "cr-2"),
        ("r4", "ag-1", "cr-3"),
    ):
        await submit(
            service,
            staff(agency),
            a.RequestLink(request_id=rid, creator=cid, with_access=True, ends_at=ends),
        )
    await submit(service, creator("cr-1"), a.AcceptRequest(request_id="r2", scopes=["bag"]))
    await submit(service, creator("cr-2"), a.DeclineRequest(request_id="r1"))
    await submit(service, creator("cr-2"), a.AcceptRequest(request_id="r3"))
    await submit(
        service,
        staff("ag-1"),
        a.RequestExtension(request_id="r5", creator="cr-1", new_ends_at=ends + DAY),
    )
    await submit(service, creator("cr-1"), a.AcceptRequest(request_id="r5"))
    await submit(service, creator("cr-2"), a.RevokeAccess(agency="ag-2"))
    before = service.book
    await storage.restart()

    again = AccessService(await storage.open(), MemoryJournal(), clock=clock)
    await again.start()
    assert again.book == before
    assert list(again.book.requests) == ["r1", "r2", "r3", "r4", "r5"]
    grant = again.grant_for("ag-1", "cr-1", clock.now)
    assert grant is not None
    assert (grant.scopes, grant.ends_at) == (frozenset({"bag"}), ends + DAY)
    assert again.grant_for("ag-2", "cr-2", clock.now) is None
