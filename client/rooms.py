"""Joined rooms and where each one's event stream stands: once each, in ``seq`` order.

An event is delivered only if it is the next one of a joined room: duplicates
(a resume replays from the last ``seq`` seen) are dropped, and a gap asks the
server to resume the room from its last ``seq`` instead. On a new connection a
joined room is resumed; one still joining is joined again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from client.errors import ClientClosed, ClientError, ServerError
from client.pending import answer_future
from protocol.messages import Error, Event, Join, Resume, Resumed, Snapshot

__all__ = ["Room", "Rooms"]

log = logging.getLogger("livepilot.client")


@dataclass(eq=False)
class Room:
    """A joined room: where its event stream stands."""

    name: str
    last_seq: int | None = None
    """Seq of the last event delivered (or of the snapshot); None until joined."""
    resuming: bool = False
    join: asyncio.Future[Snapshot] | None = None
    """The join awaiting its snapshot (or its last one, answered)."""
    join_generation: int = 0
    """The connection the join was last sent on; 0: not sent yet."""
    join_waiters: int = 0

    @property
    def joining(self) -> bool:
        """Whether a join of the room awaits its snapshot."""
        return self.join is not None and not self.join.done()

    def restore(self, generation: int) -> Join | Resume:
        """The message restoring the room on connection ``generation``: join or resume."""
        if self.joining or self.last_seq is None:
            self.join_generation = generation
            self.resuming = False
            return Join(room=self.name)
        self.resuming = True
        return Resume(room=self.name, last_seq=self.last_seq)

    def claim_join(self, generation: int) -> bool:
        """Whether to send the join on connection ``generation`` (then it counts as sent
        there): not when it was sent there already."""
        if self.join_generation == generation:
            return False
        self.join_generation = generation
        return True


class Rooms(dict[str, Room]):
    """The joined (or being joined) rooms by name, and the ordering of their events.

    ``resume`` is handed each ``Resume`` to send (after a gap, or a replay that
    missed events); the driver sends it, or drops it while the connection is
    down since the reconnect resumes the room anyway.
    """

    def __init__(self, resume: Callable[[Resume], None]) -> None:
        super().__init__()
        self._send_resume = resume

    def begin_join(self, name: str) -> tuple[Room, asyncio.Future[Snapshot]]:
        """Room ``name`` (added if new) and the join its caller awaits, with one more waiter.

        Callers joining the same room at once share one join.
        """
        room = self.get(name)
        if room is None:
            room = self[name] = Room(name)
        if room.join is None or room.join.done():
            room.join = answer_future()
            room.join_generation = 0
        room.join_waiters += 1
        return room, room.join

    def end_join(self, room: Room, join: asyncio.Future[Snapshot]) -> bool:
        """One waiter of ``join`` is gone; True when the room, never joined, was forgotten.

        When the last waiter leaves before the snapshot, the join is cancelled and a room
        not joined before is forgotten: tell the server (``Leave``) in case it answers late.
        """
        room.join_waiters -= 1
        if room.join_waiters > 0 or join.done():
            return False
        join.cancel()
        if room.last_seq is None and self.get(room.name) is room:
            del self[room.name]
            return True
        return False

    def leave(self, name: str) -> bool:
        """Forget room ``name``: no more events, no resume; False if it was not joined.

        A join still waiting fails with :class:`ClientError`.
        """
        room = self.pop(name, None)
        if room is None:
            return False
        if room.join is not None and not room.join.done():
            room.join.set_exception(ClientError(f"left room {name} before joining it"))
        return True

    def accept(self, event: Event) -> bool:
        """Whether to deliver ``event``: the next one of a joined room."""
        room = self.get(event.room)
        if room is None or room.last_seq is None:
            return False
        if event.seq <= room.last_seq:
            return False  # already delivered (a resume replays from last_seq)
        if event.seq > room.last_seq + 1:
            if not room.resuming:
                log.info(
                    "gap in %s after seq %d (got %d); resuming", room.name, room.last_seq, event.seq
                )
                self._resume(room)
            return False  # the resume replays it in order
        room.last_seq = event.seq
        return True

    def _resume(self, room: Room) -> None:
        """Ask for every event after the room's last seq (in the background)."""
        assert room.last_seq is not None
        room.resuming = True
        self._send_resume(Resume(room=room.name, last_seq=room.last_seq))

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot restarts the room's stream at its seq and answers a waiting join."""
        room = self.get(snapshot.room)
        if room is None:
            return
        room.last_seq = snapshot.seq
        room.resuming = False
        if room.join is not None and not room.join.done():
            room.join.set_result(snapshot)

    def on_resumed(self, resumed: Resumed) -> None:
        """A resume is over; if its replay missed events, resume again."""
        room = self.get(resumed.room)
        if room is None or room.last_seq is None:
            return
        room.resuming = False
        if resumed.seq > room.last_seq:  # the replay missed events: ask again
            log.warning(
                "resume of %s ended at %d but only %d arrived; resuming again",
                room.name,
                resumed.seq,
                room.last_seq,
            )
            self._resume(room)

    def refuse_join(self, error: Error, generation: int) -> None:
        """Fail the join an access or room error answers (sent on ``generation``)."""
        # An access or room error answers the join of the room it names (or,
        # when it names none, the oldest join still waiting); commands are
        # answered by Refused instead.
        for room in self.values():
            if error.room is not None and room.name != error.room:
                continue
            if room.joining and room.join_generation == generation:
                assert room.join is not None
                room.join.set_exception(
                    ServerError(error.code, error.message, retryable=error.retryable)
                )
                if room.last_seq is None:
                    del self[room.name]
                break

    def drop(self, name: str, reason: ClientError) -> None:
        """Forget a room the server took the client out of: no resume on reconnect;
        a join still waiting fails with ``reason``."""
        room = self.pop(name, None)
        if room is not None and room.join is not None and not room.join.done():
            room.join.set_exception(reason)

    def fail(self, reason: ClientClosed) -> None:
        """The client ended: fail every join still waiting."""
        for room in self.values():
            if room.join is not None and not room.join.done():
                room.join.set_exception(reason)
