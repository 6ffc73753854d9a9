"""Subscriptions: async iterators over what a client receives, and their fan-out."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from client.errors import CLIENT_CLOSED, ClientClosed, ClientError
from protocol.messages import Event, ServerMessage, Snapshot

__all__ = ["Subscribers", "Subscription", "every", "room_stream"]

T = TypeVar("T")


class _End:
    """Queue marker: the client is closed."""

    __slots__ = ()


_END = _End()


class Subscription(Generic[T]):
    """An async iterator over messages a client receives from now on.

    It receives every message its selector keeps, in arrival order, from the
    moment it is created (not when iteration starts). Iteration stops when the
    client is closed by its owner, and raises :class:`ClientClosed` after the
    last buffered message when the client ended otherwise (terminal close,
    reconnect gave up). A room's stream raises
    :class:`~client.errors.AccessEnded` instead when the client left the room
    because access to its creator ended (the client goes on). The buffer is
    unbounded: read it, or :meth:`close` it. A subscription nothing refers to
    any more is dropped.
    """

    def __init__(
        self, select: Callable[[ServerMessage], T | None], room: str | None = None
    ) -> None:
        self._select = select
        self.room = room
        """The room whose stream this is (None: not a room's stream)."""
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue()
        self._closed = False
        self._reason: ClientError = ClientClosed(1000, "subscription closed")
        self._normal = True

    def _offer(self, message: ServerMessage) -> None:
        if self._closed:
            return
        kept = self._select(message)
        if kept is not None:
            self._queue.put_nowait(kept)

    def _end(self, reason: ClientError, *, normal: bool) -> None:
        """No more messages: iteration stops (``normal``) or raises ``reason``."""
        if self._closed:
            return
        self._closed = True
        self._reason = reason
        self._normal = normal
        self._queue.put_nowait(_END)

    def close(self) -> None:
        """Stop receiving; iteration ends after the messages already buffered."""
        self._end(ClientClosed(1000, "subscription closed"), normal=True)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except ClientError:
            if self._normal:
                raise StopAsyncIteration from None
            raise

    async def get(self) -> T:
        """The next message; at the end raises why it ended (:class:`ClientClosed`,
        or :class:`~client.errors.AccessEnded` for a room's stream), however it ended."""
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # later calls end too
            raise self._reason
        return item

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Subscribers:
    """A client's live subscriptions: each message received is offered to every one.

    Held weakly: a subscription nothing else refers to is dropped.
    """

    def __init__(self) -> None:
        self._subs: weakref.WeakSet[Subscription[Any]] = weakref.WeakSet()

    def subscribe(
        self,
        select: Callable[[ServerMessage], Any],
        closed: ClientClosed | None,
        room: str | None = None,
    ) -> Subscription[Any]:
        """A new subscription (of ``room``'s stream); already ended if the client is
        ``closed``."""
        sub: Subscription[Any] = Subscription(select, room)
        if closed is not None:
            sub._end(closed, normal=closed.code == CLIENT_CLOSED)
        else:
            self._subs.add(sub)
        return sub

    def publish(self, message: ServerMessage) -> None:
        """Offer ``message`` to every subscription."""
        for sub in list(self._subs):
            sub._offer(message)

    def end_room(self, room: str, reason: ClientError) -> None:
        """The client left ``room`` for good: its streams raise ``reason`` at their end."""
        for sub in list(self._subs):
            if sub.room == room:
                sub._end(reason, normal=False)
                self._subs.discard(sub)

    def end(self, reason: ClientClosed, *, normal: bool) -> None:
        """The client ended: every subscription stops (``normal``) or raises ``reason``."""
        for sub in list(self._subs):
            sub._end(reason, normal=normal)
        self._subs.clear()


def every(message: ServerMessage) -> ServerMessage:
    """The selector keeping every message."""
    return message


def room_stream(room: str) -> Callable[[ServerMessage], Event | Snapshot | None]:
    """The selector keeping the events and snapshots of ``room``."""

    def select(message: ServerMessage) -> Event | Snapshot | None:
        if isinstance(message, Event | Snapshot) and message.room == room:
            return message
        return None

    return select
