"""The bus in one process: nodes (hubs) sharing a :class:`MemoryNetwork`.

For tests of cross-node delivery without Redis: two hubs, one memory log, one
network. Messages are delivered on a later turn of the loop, as a real bus
would, and a node can be cut off (:meth:`MemoryNetwork.cut`): it hears nothing
until :meth:`MemoryNetwork.restore`, which behaves as a reconnect does (every
subscription is announced again with ``on_wake(room, None)``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from protocol.model import Actor
from server.bus.base import AccessNotice, BusListener
from server.log.base import (
    Appended,
    AppendResult,
    CommandRecord,
    GrantVersion,
    PendingEvent,
)
from server.log.memory import MemoryRoomLog, MemoryStore

__all__ = ["MemoryBus", "MemoryNetwork", "WakingMemoryLog"]


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _waker(room: str) -> Callable[[BusListener], None]:
    return lambda listener: listener.on_wake(room, None)


class MemoryNetwork:
    """What every :class:`MemoryBus` of a test shares: subscriptions and presence."""

    def __init__(self, clock: Callable[[], int] = _monotonic_ms) -> None:
        self.clock = clock
        self.nodes: dict[str, MemoryBus] = {}
        self.presence: dict[str, dict[str, tuple[int, list[Actor]]]] = {}
        """room -> node -> (expires at, actors)."""
        self.cut_off: set[str] = set()

    def bus(self, node: str) -> MemoryBus:
        """A new node's end of the bus."""
        bus = MemoryBus(self, node)
        self.nodes[node] = bus
        return bus

    def cut(self, node: str) -> None:
        """``node`` hears nothing from now on (a dropped connection)."""
        self.cut_off.add(node)

    def restore(self, node: str) -> None:
        """``node`` hears again, and re-reads every room it is subscribed to."""
        self.cut_off.discard(node)
        bus = self.nodes[node]
        for room in list(bus.rooms):
            bus.post(_waker(room))

    def _send(self, room: str | None, call: Callable[[BusListener], None]) -> None:
        for node, bus in list(self.nodes.items()):
            if node in self.cut_off or bus.closed:
                continue
            if room is None or room in bus.rooms:
                bus.post(call)


class MemoryBus:
    """One node's end of a :class:`MemoryNetwork` (a :class:`~server.bus.base.Bus`)."""

    def __init__(self, network: MemoryNetwork, node: str) -> None:
        self.network = network
        self.node = node
        self.rooms: set[str] = set()
        self.listener: BusListener | None = None
        self.closed = False
        self._stopped = asyncio.Event()
        self.sent = 0
        """Messages sent through this end (wake-ups, presence, notices)."""

    def listen(self, listener: BusListener) -> None:
        self.listener = listener

    def post(self, call: Callable[[BusListener], None]) -> None:
        """Run ``call`` on the listener on a later turn of the loop."""

        def deliver() -> None:
            if self.listener is not None and not self.closed:
                call(self.listener)

        asyncio.get_running_loop().call_soon(deliver)

    def subscribe(self, room: str) -> None:
        if room not in self.rooms:
            self.rooms.add(room)
            self.post(lambda listener: listener.on_wake(room, None))

    def unsubscribe(self, room: str) -> None:
        self.rooms.discard(room)

    async def wake(self, room: str, seq: int, epoch: str | None = None) -> None:
        self.sent += 1
        self.network._send(room, lambda listener: listener.on_wake(room, seq, epoch))

    async def put_presence(self, room: str, actors: list[Actor], ttl_ms: int) -> None:
        self.sent += 1
        entries = self.network.presence.setdefault(room, {})
        if actors:
            entries[self.node] = (self.network.clock() + ttl_ms, list(actors))
        else:
            entries.pop(self.node, None)
        self.network._send(room, lambda listener: listener.on_presence(room))

    async def read_presence(self, room: str) -> list[Actor]:
        now = self.network.clock()
        seen: dict[Actor, None] = {}
        for _node, (expires, actors) in sorted(self.network.presence.get(room, {}).items()):
            if expires > now:
                seen.update(dict.fromkeys(actors))
        return list(seen)

    async def announce(self, notice: AccessNotice) -> None:
        self.sent += 1
        self.network._send(None, lambda listener: listener.on_access(notice))

    async def ping(self) -> bool:
        return not self.closed and self.node not in self.network.cut_off

    async def run(self) -> None:
        await self._stopped.wait()  # nothing to pump: messages are posted to the loop

    async def close(self) -> None:
        self.closed = True
        self._stopped.set()


class WakingMemoryLog(MemoryRoomLog):
    """A memory log that wakes the room's subscribers after each append, as the
    Redis log's append script does (for tests of several hubs on one store)."""

    def __init__(
        self, store: MemoryStore, bus: MemoryBus, epochs: dict[str, str] | None = None
    ) -> None:
        super().__init__(store)
        self.bus = bus
        self.epochs = epochs if epochs is not None else {}
        """Each room's epoch, shared by the logs on one store (as Redis keeps it)."""

    async def epoch(self, room: str) -> str | None:
        """The room's epoch (None: never written to), as :meth:`RedisRoomLog.epoch`."""
        if self._room(room) is None:
            return None
        return self.epochs.setdefault(room, "e1")

    def lose_history(self, room: str) -> None:
        """What a store restarted without its data does to a room: gone, and the next
        append starts a new history (epoch) at seq 1 (H3)."""
        self._store.rooms.pop(room, None)
        self.epochs[room] = f"e{int(self.epochs.get(room, 'e1')[1:]) + 1}"

    async def append(
        self,
        room: str,
        command_id: str | None,
        events: Sequence[PendingEvent],
        expected_seq: int,
        record: CommandRecord | None = None,
        *,
        digest: bytes | None = None,
        grant_version: GrantVersion | None = None,
    ) -> AppendResult:
        result = await super().append(
            room,
            command_id,
            events,
            expected_seq,
            record,
            digest=digest,
            grant_version=grant_version,
        )
        if isinstance(result, Appended) and result.events:
            await self.bus.wake(room, result.last_seq, await self.epoch(room))
        return result
