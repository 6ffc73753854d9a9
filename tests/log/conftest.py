"""The contract fixture: every test taking ``backend`` or ``log`` runs against every
RoomLog implementation (memory, SQLite; Redis joins the list when it exists)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from protocol.messages import ProductPinned
from protocol.model import Actor
from server.log.base import PendingEvent, RoomLog
from server.log.memory import MemoryRoomLog, MemoryStore
from server.log.sqlite import SqliteRoomLog

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


def make_backend(name: str, tmp_path: Path) -> Backend:
    """A fresh storage of implementation ``name``."""
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
    raise AssertionError(name)


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """One storage of each implementation, closed after the test."""
    b = make_backend(request.param, tmp_path)
    yield b
    await b.close_all()


@pytest.fixture
async def log(backend: Backend) -> RoomLog:
    """A started log on a fresh storage."""
    return await backend.open()
