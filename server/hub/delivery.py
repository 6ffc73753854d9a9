"""Multi-node delivery of one room: every event of the log, in seq order, once.

With several nodes appending to one room's log, a node's members must see the
events *any* node appended, in order, with no gap and no double (H2). Each
loaded room keeps a cursor: the seq up to which its events were delivered here.

* A local append's events are offered as soon as they are durable. If the
  first is the cursor's next, they are delivered at once (the single-node fast
  path: no read). Otherwise another node appended in between: they wait, and
  the pump reads the log from the cursor.
* A wake-up from the bus (``room is at seq N``) with N beyond the cursor starts
  the pump; so does a new subscription or a reconnect (N unknown). The pump
  reads the log from the cursor until it is at the end - so a lost wake-up only
  delays events until the next one, it never loses them.
* An ack waits for its events: it is sent once the cursor reaches its seq, so a
  sender sees its events before its ack, as on one node.

The pump delivers under the room lock: a join holds that lock from the moment
it brings the cursor level with the room's state to the moment the session is a
member, so no event is delivered in between (it would be missed or doubled).

The cursor belongs to one *epoch* of the room's log: a shared store that lost
the room's data (Redis restarted without it) starts a new history, in a new
epoch, at seq 1. A wake-up in another epoch, or a read that cannot continue and
a log behind the cursor, resets the cursor: members get a snapshot with reason
``history_lost`` and delivery goes on from its seq (H3) - never a silent skip.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from protocol.messages import Event, SnapshotReason

if TYPE_CHECKING:
    from server.hub.liveroom import LiveRoom

__all__ = ["Delivery"]

logger = logging.getLogger("livepilot.hub")

READ_BATCH = 1000

Read = Callable[[str, int, int], Awaitable[list[Event] | None]]
"""The log's ``read_since(room, after_seq, limit)``."""
Deliver = Callable[["LiveRoom", Event, bool], None]
"""Deliver one event to the room's members here; the flag says whether this node
appended it (its side effects that write, such as inbox notices, are this node's)."""
Lost = Callable[["LiveRoom", SnapshotReason], Awaitable[int]]
"""The log cannot continue from the cursor (history trimmed, or lost): reload the
room, send its members a snapshot with that reason, and return the seq delivery
goes on from."""
Epoch = Callable[[str], Awaitable[str | None]]
"""The log's ``epoch(room)``: which history it holds (None: no room yet)."""


class Delivery:
    """The delivered-up-to cursor of one room on this node, and its pump."""

    __slots__ = (
        "_acks",
        "_again",
        "_epoch",
        "_filling",
        "_local",
        "_lost",
        "_moved",
        "_order",
        "_pumping",
        "_read",
        "_spawn",
        "cursor",
        "deliver",
        "epoch",
        "live",
    )

    def __init__(
        self,
        live: LiveRoom,
        *,
        read: Read,
        deliver: Deliver,
        lost: Lost,
        spawn: Callable[..., object],
        epoch: Epoch | None = None,
    ) -> None:
        self.live = live
        self.epoch: str | None = None
        """The epoch of the log the cursor is in (None: not known yet)."""
        self._epoch = epoch
        self._moved = False
        """A wake-up came from another epoch: the next fill checks it."""
        self.cursor = live.state.seq
        """Every event up to this seq was delivered to this node's members."""
        self.deliver = deliver
        self._read = read
        self._lost = lost
        self._spawn = spawn
        self._acks: list[tuple[int, int, Callable[[], None]]] = []
        """(seq, order, send): acks waiting for the cursor to reach their seq."""
        self._order = itertools.count()
        self._local: set[int] = set()
        """Seqs this node appended that wait for the pump."""
        self._filling = False
        """A read of the log is under way (a local offer then waits for it)."""
        self._pumping = False
        self._again = False

    # --- local appends --------------------------------------------------------

    def offer(self, events: Sequence[Event], ack: Callable[[], None] | None, last_seq: int) -> None:
        """Events this node appended (durable now), and the ack to send after them."""
        if not self._filling:
            for event in events:
                if event.seq != self.cursor + 1:
                    break
                self._step(event, local=True)
        waiting = [e.seq for e in events if e.seq > self.cursor]
        if waiting:
            self._local.update(waiting)
            self.wake(None)
        if ack is not None:
            self.after(last_seq, ack)

    def after(self, seq: int, send: Callable[[], None]) -> None:
        """Call ``send`` once every event up to ``seq`` is delivered here."""
        if seq <= self.cursor:
            send()
        else:
            heapq.heappush(self._acks, (seq, next(self._order), send))
            self.wake(seq)

    # --- the pump ---------------------------------------------------------------

    def wake(self, seq: int | None, epoch: str | None = None) -> None:
        """The log is at ``seq`` (None: unknown) in ``epoch`` (None: unknown): read it
        if that is beyond the cursor, or in another history than the cursor's."""
        if epoch is not None and self.epoch is not None and epoch != self.epoch:
            self._moved = True  # H3: seqs started again; a lower seq is news too
            seq = None
        if seq is not None and seq <= self.cursor:
            return
        if self._pumping:
            self._again = True  # the pump's read may have come before this append
            return
        self._pumping = True
        self._spawn(self._pump)

    async def _pump(self) -> None:
        try:
            while True:
                self._again = False
                async with self.live.lock:
                    await self.fill()
                if not self._again:
                    return
        except Exception:  # the log is unreachable: the next wake-up or reconnect retries
            logger.warning(
                "reading a room's log for delivery failed",
                exc_info=True,
                extra={"room": self.live.room},
            )
        finally:
            self._pumping = False

    async def fill(self) -> None:
        """Under the room lock: deliver every event the log has after the cursor."""
        live = self.live
        filling, self._filling = self._filling, True
        try:
            if self.epoch is None or self._moved:
                await self._check_epoch(lost=False)
            while True:
                batch = await self._read(live.room, self.cursor, READ_BATCH)
                if batch is None:
                    await self._check_epoch(lost=True)
                    continue
                for event in batch:
                    if event.seq == self.cursor + 1:  # a local offer may have gone first
                        self._step(event, local=event.seq in self._local)
                for session in live.members.values():
                    session.flush()
                if len(batch) < READ_BATCH:
                    return
        finally:
            self._filling = filling

    async def _check_epoch(self, *, lost: bool) -> None:
        """Compare the log's epoch with the cursor's; on a change (or when the log
        could not continue), send members the snapshot and move the cursor."""
        self._moved = False
        current = None if self._epoch is None else await self._epoch(self.live.room)
        changed = current is not None and self.epoch is not None and current != self.epoch
        if current is not None:
            self.epoch = current
        if not (changed or lost):
            return
        seq = await self._lost(self.live, "history_lost" if changed else "history_truncated")
        if changed or seq < self.cursor:
            self._reset(seq)  # a new history: its seqs are not the old ones
        else:
            self._jump(seq)

    def _reset(self, seq: int) -> None:
        """The log's history was lost: delivery goes on after ``seq`` of the new one.
        Acks waiting were for appends the store had acknowledged: they go now (the
        start-up warning says what Redis settings lose acked commands, H4)."""
        self.cursor = seq
        self._local.clear()
        acks, self._acks = self._acks, []
        for _, _, send in sorted(acks):
            send()

    def _step(self, event: Event, *, local: bool) -> None:
        self._local.discard(event.seq)
        self.cursor = event.seq
        try:
            self.deliver(self.live, event, local)
        except Exception:  # a bug in fan-out: the room re-syncs, delivery goes on
            logger.exception("delivering an event failed", extra={"room": self.live.room})
            self.live.diverged = True
        acks = self._acks
        while acks and acks[0][0] <= self.cursor:
            heapq.heappop(acks)[2]()

    def _jump(self, seq: int) -> None:
        """Delivery goes on after ``seq`` (members were sent a snapshot at it)."""
        self.cursor = max(self.cursor, seq)
        self._local = {s for s in self._local if s > self.cursor}
        acks = self._acks
        while acks and acks[0][0] <= self.cursor:
            heapq.heappop(acks)[2]()
