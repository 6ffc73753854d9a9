"""Many nodes on Redis (``--redis-url``): the shared storage and the bus, opened.

Everything nodes must share is in Redis: room logs and snapshots, idempotency
keys and the audit trail, the access events (requests, links, grants), the
inbox, presence, and the bus. A node keeps in memory only what it rebuilds from
there: its rooms' state and members, its copy of the access book, each room's
delivery cursor (decision 0025).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.bus.redis import RedisBus
from server.journal import Journal
from server.log.base import RoomLog
from server.log.redis import DEFAULT_PREFIX, RedisRoomLog, decode_wake, wake_channel
from server.log.redis_conn import DEFAULT_TIMEOUT_S, connect, warn_about_persistence
from server.redis_store import RedisAccessEventStore, RedisJournal

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
    events: RedisAccessEventStore
    bus: RedisBus
    close: Callable[[], Awaitable[None]]


def _parse_wake(payload: bytes) -> tuple[int, str | None]:
    wake = decode_wake(payload)
    return int(wake.last_seq), str(wake.epoch)


async def open_shared(url: str, node: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Shared:
    """Open the Redis storage and bus at ``url`` for node ``node``; every call to
    Redis answers or fails within ``timeout_s`` (H6: refused, retryable, never hung)."""
    client = await connect(url, timeout_s=timeout_s)
    await warn_about_persistence(client)  # H4: an ack is as durable as Redis makes it
    log = RedisRoomLog(client)
    journal = RedisJournal(client)
    events = RedisAccessEventStore(client)
    bus = RedisBus(
        url,
        node,
        client=client,
        wake_channel=lambda room: wake_channel(room, DEFAULT_PREFIX),
        parse_wake=_parse_wake,
        timeout_s=timeout_s,
    )

    async def close() -> None:
        await bus.close()
        await log.close()
        await client.aclose()

    return Shared(log=log, journal=journal, events=events, bus=bus, close=close)
