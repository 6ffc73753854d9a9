"""One node among several (multi-node mode): the hub's link to the bus.

The node keeps in memory only what it can rebuild: its rooms (state, members,
delivery cursor) and a copy of the access book. What nodes share lives in the
shared store (Redis): room logs, the access events, presence. The bus only
wakes nodes up (decision 0025):

* wake-ups make a room's :class:`~server.hub.delivery.Delivery` read the log;
* a room's membership changing here writes this node's presence entry (with an
  expiry, refreshed while the node lives) and every node re-reads the merged
  presence of the room and shows it to its members;
* an access change reloads every node's book; an access end, announced by the
  node where it happened, cuts the agency's sessions off on every node (R6).
  Each node also keeps its own timer for end dates (decision 0015).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio

from protocol.messages import Event, Presence, Snapshot, SnapshotReason
from protocol.model import Actor
from server.bus.base import AccessNotice, Bus
from server.domain.evolve import evolve
from server.domain.grants import AccessEnd
from server.hub.delivery import Delivery
from server.hub.liveroom import LiveRoom

if TYPE_CHECKING:
    from server.hub.hub import Hub

__all__ = ["PRESENCE_TTL_MS", "NodeLink"]

logger = logging.getLogger("livepilot.nodes")

PRESENCE_TTL_MS: Final = 6_000
"""A node's presence entry lapses this long after its last refresh: a crashed node's
members disappear from every room within it (plus one refresh period)."""

Sync = Callable[[], Awaitable[object]]
"""Reload the access book from the shared store."""


class NodeLink:
    """Wires a :class:`~server.hub.hub.Hub` to a :class:`~server.bus.base.Bus`."""

    def __init__(
        self,
        hub: Hub,
        bus: Bus,
        *,
        spawn: Callable[..., object],
        sync_access: Sync | None = None,
        presence_ttl_ms: int = PRESENCE_TTL_MS,
    ) -> None:
        self.hub = hub
        self.bus = bus
        self.spawn = spawn
        self.sync_access = sync_access
        self.presence_ttl_ms = presence_ttl_ms
        self._shown: dict[str, list[Actor]] = {}
        """The presence last shown to each room's members here."""
        hub.nodes = self
        bus.listen(self)

    # --- rooms ------------------------------------------------------------------

    def attach(self, live: LiveRoom) -> None:
        """A room was loaded: deliver its events through a cursor from its state."""
        live.delivery = Delivery(
            live,
            read=self.hub.log.read_since,
            deliver=self._deliver,
            lost=self._lost,
            spawn=self.spawn,
            epoch=getattr(self.hub.log, "epoch", None),
        )

    def _deliver(self, live: LiveRoom, event: Event, local: bool) -> None:
        if not local:
            self._follow(live, event)
        self.hub.deliver(live, event, local=local)
        if local and self.hub._notes:  # delivered late, after its command finished
            self.spawn(self.hub._store_notes)

    @staticmethod
    def _follow(live: LiveRoom, event: Event) -> None:
        """Keep the room's state level with another node's event: folded when it is
        the next one and nothing of ours is in flight; otherwise the room re-syncs
        before its next decision (our appends in flight will conflict anyway)."""
        if not live.inflight and not live.diverged and event.seq == live.state.seq + 1:
            live.state = evolve(live.state, event)
        elif event.seq > live.state.seq:
            live.diverged = True

    async def _lost(self, live: LiveRoom, reason: SnapshotReason) -> int:
        """History after the cursor was trimmed, or lost with the store's data: members
        reload from a snapshot (H3), told which."""
        live.state = await self.hub._load(live.room)
        live.diverged = False
        snapshot = Snapshot(room=live.room, seq=live.state.seq, state=live.state, reason=reason)
        for session in live.members.values():
            session.send(snapshot)
        return live.state.seq

    async def catch_up(self, live: LiveRoom) -> None:
        """Under the room lock, settled: deliver what the log has and make the state
        exactly the delivered log, so a joining session starts where members are."""
        delivery = live.delivery
        if delivery is None:
            return
        for _ in range(10):
            await delivery.fill()
            if delivery.cursor == live.state.seq:
                return
            live.diverged = True
            await live.settle(lambda: self.hub._load(live.room))
        raise RuntimeError(f"room {live.room} moves too fast to join")  # pragma: no cover

    def on_wake(self, room: str, seq: int | None, epoch: str | None = None) -> None:
        live = self.hub.rooms.get(room)
        if live is not None and live.delivery is not None:
            live.delivery.wake(seq, epoch)

    # --- presence ---------------------------------------------------------------

    def members_changed(self, live: LiveRoom) -> None:
        """This node's members of a room changed: (un)subscribe, publish our part."""
        actors = list({s.actor: None for s in live.members.values()})
        if actors:
            self.bus.subscribe(live.room)
        self.spawn(self._put_presence, live.room, actors)

    async def _put_presence(self, room: str, actors: list[Actor]) -> None:
        try:
            await self.bus.put_presence(room, actors, self.presence_ttl_ms)
        except Exception:
            logger.warning("publishing presence failed", exc_info=True, extra={"room": room})
        live = self.hub.rooms.get(room)
        if not actors and (live is None or not live.members):
            self.bus.unsubscribe(room)
            self._shown.pop(room, None)

    def on_presence(self, room: str) -> None:
        self.spawn(self._show_presence, room)

    async def _show_presence(self, room: str) -> None:
        live = self.hub.rooms.get(room)
        if live is None or not live.members:
            return
        try:
            actors = await self.bus.read_presence(room)
        except Exception:
            logger.warning("reading presence failed", exc_info=True, extra={"room": room})
            return
        # Our own members are here now, whatever the shared entry says yet.
        merged = list(dict.fromkeys([*actors, *(s.actor for s in live.members.values())]))
        if self._shown.get(room) == merged:
            return
        self._shown[room] = merged
        self.hub.broadcast(live, Presence(room=room, members=merged))

    async def run(self) -> None:
        """Refresh this node's presence entries and notice others' lapsing, forever."""
        period = self.presence_ttl_ms / 3000
        while True:
            await anyio.sleep(period)
            for room, live in list(self.hub.rooms.items()):
                if live.members:
                    actors = list({s.actor: None for s in live.members.values()})
                    try:
                        await self.bus.put_presence(room, actors, self.presence_ttl_ms)
                    except Exception:
                        logger.warning("refreshing presence failed", exc_info=True)
                        continue
                    await self._show_presence(room)

    # --- access -----------------------------------------------------------------

    def access_ended_here(self, agency: str, creator: str, status: AccessEnd) -> None:
        """This node's access service saw an end: cut our sessions, tell every node."""
        self.hub.access_ended(agency, creator, status)
        self.spawn(
            self._announce,
            AccessNotice(
                kind="ended", agency=agency, creator=creator, status=status, origin=self.bus.node
            ),
        )

    def access_changed_here(self) -> None:
        """This node changed the shared access book: every other node reloads it."""
        self.spawn(self._announce, AccessNotice(kind="changed", origin=self.bus.node))

    async def _announce(self, notice: AccessNotice) -> None:
        try:
            await self.bus.announce(notice)
        except Exception:  # each node's own timer and the next change still get there
            logger.warning("announcing an access change failed", exc_info=True)

    def on_access(self, notice: AccessNotice) -> None:
        if notice.origin != self.bus.node:
            self.spawn(self._apply_notice, notice)

    async def _apply_notice(self, notice: AccessNotice) -> None:
        # The book first: a command right after the cut must already be refused (R6).
        if self.sync_access is not None:
            try:
                await self.sync_access()
            except Exception:
                logger.warning("reloading the access book failed", exc_info=True)
        if notice.kind == "ended":
            self.hub.access_ended(notice.agency, notice.creator, notice.status)

    async def refresh_access(self) -> None:
        """Reload the access book now (a join refused for want of a grant another
        node may have just made)."""
        if self.sync_access is not None:
            await self.sync_access()
