"""Where access events are kept: the store interface, its memory implementation,
and the error a shared store answers when another node wrote first.

Below the access service in the layers (storage): the SQLite and Redis stores
implement :class:`AccessEventStore` without importing the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from protocol.access import AccessEvent

__all__ = ["AccessEventStore", "AccessMovedError", "CatchingUpStore", "MemoryAccessEventStore"]


class AccessMovedError(Exception):
    """Another node stored access events of ``creator`` this store has not seen:
    nothing was stored. Catch up (:meth:`CatchingUpStore.catch_up`), fold what it
    returns, and decide again (a shared store: Redis, decision 0024)."""

    def __init__(self, creator: str, count: int) -> None:
        super().__init__(f"creator {creator} has {count} access events this node has not all seen")
        self.creator = creator
        self.count = count


@runtime_checkable
class CatchingUpStore(Protocol):
    """A store other nodes append to, kept per creator (:class:`RedisAccessEventStore`)."""

    async def catch_up(self, creator: str | None) -> list[AccessEvent]:
        """The creator's events (None: the platform's) this node has not seen yet."""
        ...


class AccessEventStore(Protocol):
    """Where access events are kept, in order."""

    async def load_access_events(self) -> list[AccessEvent]:
        """Every stored access event, oldest first."""
        ...

    async def append_access_events(self, events: Sequence[AccessEvent]) -> None:
        """Store events durably (returns after they are durable)."""
        ...


class MemoryAccessEventStore:
    """An :class:`AccessEventStore` in memory."""

    def __init__(self) -> None:
        self.events: list[AccessEvent] = []

    async def load_access_events(self) -> list[AccessEvent]:
        return list(self.events)

    async def append_access_events(self, events: Sequence[AccessEvent]) -> None:
        self.events.extend(events)
