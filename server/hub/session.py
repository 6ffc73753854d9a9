"""One client connection as the hub sees it: who, which codec, which rooms, and a
bounded outbox drained by the connection's own writer task.

Transport-free: the WebSocket endpoint (:mod:`server.ws`) moves frames between
the socket and a :class:`Session`; the hub only ever calls :meth:`Session.deliver`
and :meth:`Session.close`, which never wait. A session whose outbox is full is
closed as a slow consumer (retryable): the hub never waits for a client.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import anyio

from protocol.codec import Codec
from protocol.errors import CloseCode
from protocol.messages import Message
from protocol.model import Actor

__all__ = ["Frame", "Session"]

Frame = str | bytes
"""An encoded message: text for JSON sessions, bytes for MessagePack ones."""

CLOSE_NORMAL: Final = 1000


class Session:
    """A connected, authenticated client."""

    __slots__ = (
        "_max", "_queue", "_wakeup", "actor", "close_code", "close_reason", "closed", "codec",
        "expires_at", "id", "rooms",
    )  # fmt: skip

    def __init__(
        self, session_id: str, actor: Actor, codec: Codec, expires_at: int, queue_size: int
    ) -> None:
        self.id = session_id
        self.actor = actor
        self.codec = codec
        self.expires_at = expires_at
        """The token's expiry (ms); the session is closed then unless refreshed."""
        self.rooms: set[str] = set()
        self.closed = anyio.Event()
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        # A plain deque, and an Event only while the writer sleeps: the profile showed
        # an anyio memory stream's per-frame checkpoint and Event cost dominating
        # fan-out (docs/benchmarks.md).
        self._queue: deque[Frame] = deque()
        self._max = queue_size
        self._wakeup: anyio.Event | None = None

    @property
    def format(self) -> str:
        """The session's wire format: ``json`` or ``msgpack``."""
        return self.codec.format

    def encode(self, message: Message) -> Frame:
        """Encode a message the way this session's frames travel."""
        data = self.codec.encode(message)
        return data if self.codec.binary else data.decode()

    def send(self, message: Message) -> None:
        """Queue a message for this session only (never waits)."""
        self.deliver(self.encode(message))

    def deliver(self, frame: Frame) -> None:
        """Queue an encoded frame; a full outbox closes the session as slow."""
        if self.closed.is_set():
            return
        if len(self._queue) >= self._max:
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow")
            return
        self._queue.append(frame)
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self, code: int, reason: str = "") -> None:
        """Ask for the connection to be closed with ``code``; the first call wins."""
        if self.closed.is_set():
            return
        self.close_code = code
        self.close_reason = reason
        self.closed.set()

    async def wait_frames(self) -> None:
        """Return once a frame is queued (the writer task's only wait)."""
        while not self._queue:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        self._wakeup = None

    def take_frames(self) -> list[Frame]:
        """Every frame queued, oldest first; the outbox is then empty."""
        frames = list(self._queue)
        self._queue.clear()
        return frames

    def pending(self) -> int:
        """Frames queued and not yet written."""
        return len(self._queue)
