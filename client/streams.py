"""Subscriptions: async iterators over what a client receives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from client.errors import SessionClosed
from protocol.messages import ServerMessage

__all__ = ["Subscription"]

T = TypeVar("T")


class _End:
    """Queue marker: the client is closed."""

    __slots__ = ()


_END = _End()


class Subscription(Generic[T]):
    """An async iterator over messages a client receives from now on.

    It receives every message its selector keeps, in arrival order, from the
    moment it is created (not when iteration starts). Iteration stops when the
    client is closed by its owner, and raises :class:`SessionClosed` after the
    last buffered message when the session ended otherwise (terminal close,
    access revoked, reconnect gave up). The buffer is unbounded: read it, or
    :meth:`close` it. A subscription nothing refers to any more is dropped.
    """

    def __init__(self, select: Callable[[ServerMessage], T | None]) -> None:
        self._select = select
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue()
        self._closed = False
        self._reason = SessionClosed(1000, "subscription closed")
        self._normal = True

    def _offer(self, message: ServerMessage) -> None:
        if self._closed:
            return
        kept = self._select(message)
        if kept is not None:
            self._queue.put_nowait(kept)

    def _end(self, reason: SessionClosed, *, normal: bool) -> None:
        """No more messages: iteration stops (``normal``) or raises ``reason``."""
        if self._closed:
            return
        self._closed = True
        self._reason = reason
        self._normal = normal
        self._queue.put_nowait(_END)

    def close(self) -> None:
        """Stop receiving; iteration ends after the messages already buffered."""
        self._end(SessionClosed(1000, "subscription closed"), normal=True)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except SessionClosed:
            if self._normal:
                raise StopAsyncIteration from None
            raise

    async def get(self) -> T:
        """The next message; at the end raises :class:`SessionClosed`, however it ended."""
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
