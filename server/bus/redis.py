"""The bus on Redis: pub/sub for wake-ups and notices, keys with expiry for presence.

One pub/sub connection per node, subscribed to the access channel and, per room
with members here, to the room's wake-up and presence channels. Pub/sub is
at-most-once: a message published while the connection is down is lost. That is
why it only wakes nodes up (decision 0025): a new subscription, confirmed by
Redis, and every reconnect call ``on_wake(room, None)`` for the rooms
concerned, and the node reads the log from its cursor - nothing appended before
or during the outage is missed.

Presence: each node's members of a room are one key with an expiry
(``PX``), refreshed by the node while it lives, listed in a set per room; a key
that expired (a crashed node) is dropped from the set by the next reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from protocol.model import Actor
from server.bus.base import AccessNotice, BusListener

__all__ = ["RedisBus", "wake_channel"]

logger = logging.getLogger("livepilot.bus")

PREFIX: Final = "lp:"
POLL_S: Final = 0.1
"""How long the reader waits for a message before applying (un)subscriptions."""
TIMEOUT_S: Final = 1.0
"""Every command to Redis answers or fails within this (never a hang)."""
MAX_BACKOFF_S: Final = 1.0


def wake_channel(room: str, prefix: str = PREFIX) -> str:
    """The channel the room log's append publishes the room's new last seq on."""
    return f"{prefix}wake:{room}"


class RedisBus:
    """One node's end of the bus on Redis (a :class:`~server.bus.base.Bus`)."""

    def __init__(
        self,
        url: str,
        node: str,
        *,
        client: Any = None,
        prefix: str = PREFIX,
        wake_channel: Callable[[str], str] | None = None,
        parse_wake: Callable[[bytes], tuple[int, str | None]] = lambda b: (int(b), None),
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        """``client``: for commands (a plain or Cluster client); pub/sub always uses
        its own connection to the server of ``url`` (a Cluster forwards PUBLISH to
        every node). ``timeout_s`` bounds every connect and ping."""
        self.node = node
        self.prefix = prefix
        self._wake_channel = wake_channel or (lambda room: f"{prefix}wake:{room}")
        self._parse_wake = parse_wake
        """The room's new last seq and epoch in a wake-up (the log's append publishes
        them)."""
        self._timeout_s = timeout_s
        self._own_client = client is None
        self.redis: Any = (
            client
            if client is not None
            else Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        )
        self._url = url
        self._listener: BusListener | None = None
        self._rooms: set[str] = set()
        """Rooms this node wants to hear."""
        self._subscribed: set[str] = set()
        """Rooms subscribed on the current connection."""
        self._channels: dict[bytes, tuple[str, str]] = {}
        """channel -> (kind, room)."""
        self._access = f"{prefix}access".encode()
        self._notice = msgspec.msgpack.Encoder()
        self._decode_notice = msgspec.msgpack.Decoder(AccessNotice).decode
        self._actors = msgspec.msgpack.Decoder(list[Actor]).decode
        self._closed = asyncio.Event()
        self.connected = False
        """Whether the pub/sub connection is up now."""

    def listen(self, listener: BusListener) -> None:
        self._listener = listener

    def subscribe(self, room: str) -> None:
        self._rooms.add(room)

    def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)

    def _presence_channel(self, room: str) -> str:
        return f"{self.prefix}presence:{room}"

    async def wake(self, room: str, seq: int) -> None:
        await self.redis.publish(self._wake_channel(room), str(seq))

    async def put_presence(self, room: str, actors: list[Actor], ttl_ms: int) -> None:
        key, nodes = self._presence_key(room, self.node), self._nodes_key(room)
        async with self.redis.pipeline(transaction=False) as pipe:
            if actors:
                pipe.set(key, self._notice.encode(actors), px=ttl_ms)
                pipe.sadd(nodes, self.node)
            else:
                pipe.delete(key)
                pipe.srem(nodes, self.node)
            pipe.publish(self._presence_channel(room), self.node)
            await pipe.execute()

    def _presence_key(self, room: str, node: str) -> str:
        # {room}: one Cluster slot for a room's presence keys (MGET in one step)
        return f"{self.prefix}{{{room}}}:presence:{node}"

    def _nodes_key(self, room: str) -> str:
        return f"{self.prefix}{{{room}}}:pnodes"

    async def read_presence(self, room: str) -> list[Actor]:
        nodes_key = self._nodes_key(room)
        nodes = sorted(_text(n) for n in await self.redis.smembers(nodes_key))
        if not nodes:
            return []
        values = await self.redis.mget([self._presence_key(room, n) for n in nodes])
        seen: dict[Actor, None] = {}
        lapsed = []
        for node, value in zip(nodes, values, strict=True):
            if value is None:
                lapsed.append(node)  # its key expired: that node stopped refreshing
                continue
            seen.update(dict.fromkeys(self._actors(_raw(value))))
        if lapsed:
            await self.redis.srem(nodes_key, *lapsed)
        return list(seen)

    async def announce(self, notice: AccessNotice) -> None:
        await self.redis.publish(self._access, self._notice.encode(notice))

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), self._timeout_s))
        except (RedisError, OSError, TimeoutError):
            return False

    async def run(self) -> None:
        """Hear messages until closed; after a drop, reconnect with a backoff,
        subscribe again and make every room read its log (the gap)."""
        backoff = 0.05
        while not self._closed.is_set():
            try:
                await self._session()
            except (RedisError, OSError, TimeoutError) as exc:
                if self.connected:
                    logger.warning("bus connection lost: %s", exc)
                self.connected = False
            if self._closed.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _session(self) -> None:
        """One pub/sub connection, from subscribing to its loss."""
        client = Redis.from_url(
            self._url, socket_connect_timeout=self._timeout_s, health_check_interval=1
        )
        pubsub = client.pubsub()
        self._subscribed = set()
        try:
            await pubsub.subscribe(self._access)
            self.connected = True
            logger.info("bus connected", extra={"node": self.node})
            while not self._closed.is_set():
                await self._apply_rooms(pubsub)
                message = await pubsub.get_message(timeout=POLL_S)
                while message is not None:
                    self._dispatch(message)
                    message = await pubsub.get_message(timeout=0)
        finally:
            self.connected = False
            try:
                await pubsub.aclose()
                await client.aclose()
            except Exception:  # the connection is gone anyway
                pass

    async def _apply_rooms(self, pubsub: Any) -> None:
        wanted, have = self._rooms, self._subscribed
        new, old = wanted - have, have - wanted
        if new:
            channels = []
            for room in new:
                for kind, name in (
                    ("wake", self._wake_channel(room)),
                    ("presence", self._presence_channel(room)),
                ):
                    self._channels[name.encode()] = (kind, room)
                    channels.append(name)
            await pubsub.subscribe(*channels)
            have |= new
        if old:
            await pubsub.unsubscribe(
                *[
                    c
                    for room in old
                    for c in (self._wake_channel(room), self._presence_channel(room))
                ]
            )
            have -= old

    def _dispatch(self, message: dict[str, Any]) -> None:
        listener = self._listener
        if listener is None:
            return
        kind, channel, data = message.get("type"), message.get("channel"), message.get("data")
        if channel == self._access:
            if kind == "message":
                try:
                    listener.on_access(self._decode_notice(_raw(data)))
                except msgspec.DecodeError:
                    logger.warning("an access notice did not decode")
            return
        target = self._channels.get(channel) if isinstance(channel, bytes) else None
        if target is None:
            return
        what, room = target
        if what == "wake":
            if kind == "subscribe":  # in force from now: read what came before (the gap)
                listener.on_wake(room, None)
            elif kind == "message":
                seq: int | None
                epoch: str | None
                try:
                    seq, epoch = self._parse_wake(_raw(data))
                except (TypeError, ValueError):  # msgspec's DecodeError is a ValueError
                    seq, epoch = None, None  # unknown: the node reads the log to know
                listener.on_wake(room, seq, epoch)
        elif kind in ("message", "subscribe"):
            listener.on_presence(room)

    async def close(self) -> None:
        self._closed.set()
        if self._own_client:
            await self.redis.aclose()


def _raw(value: object) -> bytes:
    """A reply's bytes (the client is not asked to decode replies)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected reply {type(value).__name__}")


def _text(value: object) -> str:
    return _raw(value).decode()
