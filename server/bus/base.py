"""What one node tells the others, and how it hears them (decision 0025).

The bus carries no event: the room log is the only source of events, and a
wake-up only says "room R is at seq N now". A node that misses a wake-up (its
connection to the bus dropped, a message was lost) still delivers every event:
the next wake-up, or the reconnect itself, makes it read the log from its
cursor (:mod:`server.hub.delivery`). So the bus may lose messages; it must not
invent them.

Three kinds of message:

* wake-ups, per room: sent by the log's append (the Redis script publishes in
  the same step as the write), heard only by the nodes subscribed to the room -
  a node subscribes to a room while it has members in it;
* presence, per room: each node keeps its own members of a room under its node
  id with an expiry (a crashed node's members disappear when it lapses) and
  says "presence of R changed"; every node reads the merged list;
* access notices, to every node: the shared access book changed (reload it), or
  an agency's access to a creator ended (cut its sessions off, R6).
"""

from __future__ import annotations

from typing import Literal, Protocol

from msgspec import Struct

from protocol.model import Actor
from server.domain.grants import AccessEnd

__all__ = ["AccessNotice", "Bus", "BusListener", "BusUnavailableError"]


class AccessNotice(Struct, frozen=True, kw_only=True):
    """The shared access book changed; with ``agency``/``creator``/``status``, that
    agency's access to that creator ended (every node cuts its own sessions off)."""

    kind: Literal["changed", "ended"] = "changed"
    agency: str = ""
    creator: str = ""
    status: AccessEnd = "revoked"
    origin: str = ""
    """The node that sent it (it has already acted on it)."""


class BusUnavailableError(Exception):
    """The bus (Redis) cannot be reached now; retry later."""


class BusListener(Protocol):
    """What a node does with what it hears (the :class:`~server.hub.nodes.NodeLink`)."""

    def on_wake(self, room: str, seq: int | None, epoch: str | None = None) -> None:
        """``room``'s log is at ``seq`` now; None: it may have moved while this node
        was not listening (a new subscription, a reconnect) - read it to know.
        ``epoch``: the log's history the seq belongs to, when known (another one than
        the node's means the history was lost and seqs started again, H3)."""

    def on_presence(self, room: str) -> None:
        """Some node's members of ``room`` changed: read the merged presence."""

    def on_access(self, notice: AccessNotice) -> None:
        """An access notice from a node (possibly this one)."""


class Bus(Protocol):
    """One node's end of the bus. ``subscribe``/``unsubscribe`` only state intent and
    never wait: the bus (re)subscribes in its own task, and calls
    ``on_wake(room, None)`` once a subscription is in force, so what was appended
    before it took effect is read from the log."""

    node: str
    """This node's id (unique per process run)."""

    def listen(self, listener: BusListener) -> None:
        """Where heard messages go (set once, before :meth:`run`)."""

    def subscribe(self, room: str) -> None:
        """Hear ``room``'s wake-ups and presence notices from now on."""

    def unsubscribe(self, room: str) -> None:
        """Stop hearing ``room``."""

    async def wake(self, room: str, seq: int) -> None:
        """Tell the room's subscribers its log is at ``seq`` (a log that cannot
        publish in its append calls this after it)."""

    async def put_presence(self, room: str, actors: list[Actor], ttl_ms: int) -> None:
        """Set this node's members of ``room`` (an empty list removes them), valid for
        ``ttl_ms`` unless put again, and notify the room's subscribers."""

    async def read_presence(self, room: str) -> list[Actor]:
        """Every node's unexpired members of ``room``, without repeats, in a stable order."""

    async def announce(self, notice: AccessNotice) -> None:
        """Send an access notice to every node (this one included)."""

    async def ping(self) -> bool:
        """Whether the bus is reachable now (bounded in time; ``/readyz``)."""

    async def run(self) -> None:
        """Hear messages until closed, reconnecting after a drop (run in a task)."""

    async def close(self) -> None:
        """Stop hearing and release connections; idempotent."""
