"""Everything one server node runs on, built from :class:`~server.config.Settings`.

:func:`open_runtime` opens the storage (the embedded SQLite file, or memory for
``:memory:``), rebuilds access, and wires the hub; closing it closes every
session with "going away" and flushes the store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from protocol.errors import CloseCode
from protocol.model import Actor
from server.access_service import AccessEventStore, AccessService, MemoryAccessEventStore
from server.auth import AuthKeys
from server.bus.base import Bus
from server.cluster import Shared
from server.config import Settings
from server.hub.hub import Hub
from server.hub.nodes import NodeLink
from server.hub.ratelimit import Budgets
from server.journal import Journal, MemoryJournal
from server.log.base import RoomLog
from server.log.memory import MemoryRoomLog
from server.log.sqlite import SqliteRoomLog, SqliteStore
from server.metrics import Metrics

__all__ = ["Runtime", "open_runtime", "wall_clock"]


def wall_clock() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Runtime:
    """The parts of a running node, shared by the WebSocket endpoint and the HTTP API."""

    settings: Settings
    keys: AuthKeys
    clock: Callable[[], int]
    metrics: Metrics
    log: RoomLog
    journal: Journal
    access: AccessService
    hub: Hub
    spawn: Callable[..., object]
    """Start a task owned by the runtime (``start_soon``): what is left of a command
    after its append, when it has to wait (it outlives the connection that sent it)."""
    actors: Budgets[Actor]
    """Each actor's WebSocket budget, shared by its connections, and their count."""
    api_writers: Budgets[Actor]
    """Each actor's budget of HTTP API writes (decision 0021)."""
    bus: Bus | None = None
    """Multi-node (``redis_url``): this node's end of the bus to the others."""


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, clock: Callable[[], int] = wall_clock, metrics: Metrics | None = None
) -> AsyncIterator[Runtime]:
    """Open storage, rebuild access, wire the hub; close everything on exit.

    ``metrics``: the registry to count in, when the server counts there too
    (connection admission, :mod:`server.admission`); a new one by default."""
    keys = AuthKeys.from_settings(settings)
    metrics = metrics if metrics is not None else Metrics()
    store: SqliteStore | None = None
    shared: Shared | None = None
    log: RoomLog
    journal: Journal
    events: AccessEventStore
    if settings.redis_url is not None:  # many nodes: everything shared is in Redis
        from server.cluster import node_id, open_shared

        shared = await open_shared(
            settings.redis_url, node_id(), timeout_s=settings.redis_timeout_s
        )
        log, journal, events = shared.log, shared.journal, shared.events
    elif settings.data_path == ":memory:":
        log, journal, events = MemoryRoomLog(), MemoryJournal(), MemoryAccessEventStore()
    else:
        from server.store import SqliteAccessEventStore, SqliteJournal

        store = SqliteStore(settings.data_path)
        await store.start()
        log = SqliteRoomLog(store)
        journal, events = SqliteJournal(store), SqliteAccessEventStore(store)
    access = AccessService(events, journal, clock=clock, metrics=metrics)
    hub = Hub(
        log,
        journal,
        access.grant_for,
        related=access.related,
        clock=clock,
        metrics=metrics,
        snapshot_interval=settings.snapshot_interval,
        history_retention=settings.history_retention,
        room_idle_ms=int(settings.room_idle_s * 1000),
    )
    access.on_access_ended = hub.access_ended
    try:
        await access.start()
        async with anyio.create_task_group() as tasks:
            loops = anyio.CancelScope()
            bus = None
            if shared is not None:
                bus = shared.bus
                link = NodeLink(hub, bus, spawn=tasks.start_soon, sync_access=access.sync)
                access.shared = True
                access.on_access_ended = link.access_ended_here
                access.on_changed = link.access_changed_here
                # R6 across nodes: staff appends carry the grant's version; a moved
                # grant is caught up and the command decided again (decision 0024).
                hub.grant_version = shared.events.grant_version
                hub.catch_up_access = access.catch_up
                tasks.start_soon(_forever, loops, bus.run, link.run)
            yield Runtime(
                settings=settings,
                keys=keys,
                clock=clock,
                metrics=metrics,
                log=log,
                journal=journal,
                access=access,
                hub=hub,
                spawn=tasks.start_soon,
                actors=Budgets(
                    settings.actor_rate_per_s,
                    settings.actor_rate_burst,
                    settings.max_connections_per_actor,
                ),
                api_writers=Budgets(settings.api_rate_per_s, settings.api_rate_burst),
                bus=bus,
            )
            loops.cancel()  # what commands left to do still finishes
    finally:
        access.close()  # its deadline timer
        hub.close_all(CloseCode.GOING_AWAY, "server shutting down")
        if shared is not None:
            await shared.close()
        else:
            await log.close()
        if store is not None:
            await store.close()


async def _forever(
    scope: anyio.CancelScope, *loops: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run loops that never return (the bus, presence refresh) until ``scope`` is cancelled."""
    with scope:
        async with anyio.create_task_group() as tasks:
            for loop in loops:
                tasks.start_soon(loop)
