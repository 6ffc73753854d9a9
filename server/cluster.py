"""Many nodes on Redis (``--redis-url``): the shared storage and the bus, opened.

Everything nodes must share is in Redis: room logs and snapshots, idempotency
keys and the audit trail, the access events (requests, links, grants), the
inbox, presence, and the bus. A node keeps in memory only what it rebuilds from
there: its rooms' state and members, its copy of the access book, each room's
delivery cursor (decision 0025).
"""

from __future__ import annotations

import importlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.access_service import AccessEventStore
from server.bus.redis import RedisBus
from server.journal import Journal
from server.log.base import RoomLog

__all__ = ["Shared", "node_id", "open_shared"]


def node_id() -> str:
    """A unique id of this node's run: host, pid, and random (a restarted node is a
    new node: its old presence entries lapse on their own)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(slots=True)
class Shared:
    """What the node shares with the others, and how to close it."""

    log: RoomLog
    journal: Journal
    events: AccessEventStore
    bus: RedisBus
    close: Callable[[], Awaitable[None]]


async def open_shared(url: str, node: str) -> Shared:
    """Open the Redis storage and bus at ``url`` for node ``node``."""
    # The storage half (decision 0024) is on the redis-store branch: looked up by
    # name until both halves are merged, then imported directly.
    redis_log = importlib.import_module("server.log.redis")
    conn = importlib.import_module("server.log.redis_conn")
    stores = importlib.import_module("server.redis_store")
    client = await conn.connect(url)
    log: RoomLog = redis_log.RedisRoomLog(client)
    journal: Journal = stores.RedisJournal(client)
    events: AccessEventStore = stores.RedisAccessEventStore(client)
    prefix = redis_log.DEFAULT_PREFIX
    bus = RedisBus(url, node, client=client,
                   wake_channel=lambda room: str(redis_log.wake_channel(room, prefix)),
                   parse_wake=lambda payload: int(redis_log.decode_wake(payload).last_seq))

    async def close() -> None:
        await bus.close()
        await log.close()
        await client.aclose()

    return Shared(log=log, journal=journal, events=events, bus=bus, close=close)
