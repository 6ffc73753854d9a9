"""What a client keeps across connections, and what each message received does to it.

:class:`ClientState` holds the commands and pings awaiting their answer
(:mod:`client.pending`), the joined rooms and where each one's event stream
stands (:mod:`client.rooms`) and the subscriptions (:mod:`client.streams`).
It does no I/O: :meth:`~ClientState.dispatch` applies one server message and
returns what to send in answer, :meth:`~ClientState.restore` returns what to
send on a new connection, and the driver (:mod:`client.driver`) sends them.
Everything here is synchronous, so it never makes reading wait behind sending.

A terminal close (4500-4999), an ``access_changed`` with ``terminal`` set, or
a reconnect that gives up ends the client (:meth:`~ClientState.finish`): every
pending call fails with :class:`~client.errors.ClientClosed`. An
``access_changed`` that is not terminal but names a ``room`` ends that room
only (decision 0015): its streams raise :class:`~client.errors.AccessEnded`.
"""

from __future__ import annotations

import asyncio

from client.errors import AccessEnded, ClientClosed, CommandRefused
from client.pending import PendingCommands, Pings
from client.rooms import Rooms
from client.streams import Subscribers
from protocol.errors import CloseCode
from protocol.messages import (
    AccessChanged,
    Ack,
    BagListing,
    ClientMessage,
    Error,
    Event,
    Ping,
    Pong,
    Refused,
    Resumed,
    ServerMessage,
    Snapshot,
)

__all__ = ["ClientState"]


class ClientState:
    """A client's pending requests, rooms and subscriptions, and whether it has ended."""

    def __init__(self) -> None:
        self.pending = PendingCommands()
        """Commands awaiting their ``Ack``, ``BagListing`` or ``Refused``."""
        self.pings = Pings()
        """Pings awaiting their ``Pong``."""
        self._outbox: list[ClientMessage] = []
        self.rooms = Rooms(resume=self._outbox.append)
        """The joined (or being joined) rooms."""
        self.subs = Subscribers()
        """The live subscriptions."""
        self.closed: ClientClosed | None = None
        """Why the client ended; None while it is going on."""
        self._done = asyncio.Event()

    def restore(self, generation: int) -> list[ClientMessage]:
        """What to send on the new connection ``generation``, in order.

        Every room is rejoined (a join still waiting) or resumed from its last
        ``seq``; every unanswered command is resent with its ``command_id`` (H1);
        every unanswered ping is sent again.
        """
        out: list[ClientMessage] = [room.restore(generation) for room in self.rooms.values()]
        out.extend(p.command for p in self.pending.all() if p.claim(generation))
        out.extend(Ping(nonce=nonce) for nonce in self.pings.nonces())
        return out

    def dispatch(self, message: ServerMessage, generation: int) -> list[ClientMessage]:
        """Apply one message received on connection ``generation``; return what to send.

        Events are published once each, in ``seq`` order per room; a gap or an
        incomplete replay returns a ``Resume``. Every other message settles what
        it answers, then is published.
        """
        match message:
            case Event():
                if self.rooms.accept(message):
                    self.subs.publish(message)
                return self._take_outbox()
            case Snapshot():
                self.rooms.on_snapshot(message)
            case Resumed():
                self.rooms.on_resumed(message)
            case Ack() | BagListing():
                self.pending.settle(message.command_id, message)
            case Refused():
                self.pending.settle(
                    message.command_id,
                    CommandRefused(message.command_id, message.code, message.message),
                )
            case Pong():
                self.pings.answer(message)
            case Error() if 200 <= message.code <= 399:
                # An access or room error answers a join; commands get Refused instead.
                self.rooms.refuse_join(message, generation)
        self.subs.publish(message)
        if isinstance(message, AccessChanged):
            self._on_access_changed(message)
        return self._take_outbox()

    def _take_outbox(self) -> list[ClientMessage]:
        out = self._outbox.copy()
        self._outbox.clear()
        return out

    def _on_access_changed(self, message: AccessChanged) -> None:
        """Access ended: for one room (leave it, end its streams) or the whole client."""
        if message.terminal:  # the server closes the connection after this
            self.finish(
                ClientClosed(
                    CloseCode.ACCESS_REVOKED,
                    f"access to {message.creator} {message.status}",
                    retryable=False,
                ),
                normal=False,
            )
        elif message.room is not None and message.status != "granted":
            # Only this room ends (decision 0015): not resumed, its streams raise.
            reason = AccessEnded(message.room, message.creator, message.agency, message.status)
            self.rooms.drop(message.room, reason)
            self.subs.end_room(message.room, reason)

    def finish(self, reason: ClientClosed, *, normal: bool) -> bool:
        """End the client once, for ``reason``: fail what waits, end the subscriptions.

        ``normal`` (closed by its owner) makes subscriptions stop iterating
        instead of raising ``reason``. False if it had ended already.
        """
        if self.closed is not None:
            return False
        self.closed = reason
        self.pending.fail(reason)
        self.rooms.fail(reason)
        self.pings.fail(reason)
        self.subs.end(reason, normal=normal)
        self._done.set()
        return True

    async def wait_closed(self) -> ClientClosed:
        """Wait until the client ends, and return why it ended."""
        await self._done.wait()
        assert self.closed is not None
        return self.closed
