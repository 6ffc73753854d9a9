"""The contract fixture: every test taking ``backend`` or ``log`` runs against every
RoomLog implementation: memory, SQLite, Redis (one server) and Redis Cluster (three
masters), the Redis ones on the session's servers (tests/redis_fixtures.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from protocol.messages import ProductPinned
from protocol.model import Actor
from server.log.base import PendingEvent, RoomLog
from server.log.memory import MemoryRoomLog, MemoryStore
from server.log.redis import RedisRoomLog
from server.log.sqlite import SqliteRoomLog
from tests.redis_fixtures import unique_prefix

STAFF = Actor(role="staff", id="staff-1", agency="agency-1")


def pending(product_id: str, at: int = 1_700_000_000_000) -> PendingEvent:
    """A small event whose product id tells it apart."""
    return PendingEvent(
        at=at, actor="creator-1", by=STAFF, body=ProductPinned(product_id=product_id)
    )


class Backend:
    """Opens logs over one storage; ``open`` again after ``close`` is a restart."""

    def __init__(self, name: str, opener: Callable[[], Awaitable[RoomLog]]) -> None:
        self.name = name
        self._opener = opener
        self._opened: list[RoomLog] = []

    async def open(self) -> RoomLog:
        """A new log over the same storage (a restart when the previous one is closed)."""
        log = await self._opener()
        self._opened.append(log)
        return log

    async def close_all(self) -> None:
        """Close every log this backend opened (close is idempotent)."""
        for log in self._opened:
            await log.close()


def make_backend(name: str, tmp_path: Path, redis_url: str | None = None) -> Backend:
    """A fresh storage of implementation ``name`` (a Redis one: a new key prefix on
    the server at ``redis_url``)."""
    if name == "memory":
        store = MemoryStore()

        async def open_memory() -> RoomLog:
            return MemoryRoomLog(store)

        return Backend(name, open_memory)
    if name == "sqlite":
        path = tmp_path / "livepilot.db"

        async def open_sqlite() -> RoomLog:
            return await SqliteRoomLog.open(path)

        return Backend(name, open_sqlite)
    if name.startswith("redis") and redis_url is not None:
        prefix = unique_prefix()

        async def open_redis() -> RoomLog:
            return await RedisRoomLog.open(redis_url, prefix=prefix)

        return Backend(name, open_redis)
    raise AssertionError(name)


BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis-cluster", marks=pytest.mark.redis),
]


def server_for(name: str, request: pytest.FixtureRequest) -> str | None:
    """The URL of the Redis server a backend ``name`` runs on (started on first use)."""
    match name:
        case "redis":
            return str(request.getfixturevalue("redis_url"))
        case "redis-cluster":
            return str(request.getfixturevalue("redis_cluster_url"))
    return None


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """One storage of each implementation, closed after the test."""
    b = make_backend(request.param, tmp_path, server_for(request.param, request))
    yield b
    await b.close_all()


@pytest.fixture
async def log(backend: Backend) -> RoomLog:
    """A started log on a fresh storage."""
    return await backend.open()
