"""One client connection as the hub sees it: who, which codec, which rooms, and
where its frames go.

Transport-free: the WebSocket endpoint (:mod:`server.ws`) moves frames between
the socket and a :class:`Session`; the hub only ever calls :meth:`Session.deliver`
and :meth:`Session.close`, which never wait.

Frames go one of two ways. Served by livepilot's own WebSocket connection
(:mod:`server.wire`), a session has a :class:`Sink` and :meth:`deliver` writes
the frame to the socket's transport at once. Under an ASGI server (the
fallback) the frames wait in an outbox that the connection's writer task drains. Either way
the bytes not yet taken by the kernel are bounded: past ``max_buffered`` the
session is closed as a slow consumer (retryable 4001); the hub never waits for
a client (decision 0005).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import anyio

from protocol.codec import Codec
from protocol.errors import CloseCode
from protocol.messages import Message
from protocol.model import Actor

__all__ = ["Frame", "Session", "Sink"]

Frame = bytes
"""An encoded message: UTF-8 JSON for JSON sessions (sent as text frames),
MessagePack for MessagePack sessions (binary frames)."""

CLOSE_NORMAL: Final = 1000


class Sink(Protocol):
    """A connection's socket, written without waiting (see :mod:`server.wire`)."""

    def write(self, frame: Frame, wire: bytes | None = None, /) -> None:
        """Frame ``frame`` (text or binary, by the connection's format) and write it;
        ``wire`` is ``frame`` already framed (a fan-out frames each event once per
        format, :func:`server.wire.framed`), or None."""

    def buffered(self) -> int:
        """Bytes written and not yet taken by the kernel."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code`` after what is already written."""

    def flush(self) -> None:
        """Send now what was written in this turn of the loop (else sent at its end)."""


class Session:
    """A connected, authenticated client."""

    __slots__ = (
        "_max", "_queue", "_queued", "_wakeup", "actor", "close_code",
        "close_reason", "codec", "expires_at", "id", "is_closed", "last_seen", "on_close",
        "rooms", "sink", "worked",
    )  # fmt: skip

    def __init__(
        self,
        session_id: str,
        actor: Actor,
        codec: Codec,
        expires_at: int,
        max_buffered: int,
        *,
        sink: Sink | None = None,
    ) -> None:
        self.id = session_id
        self.actor = actor
        self.codec = codec
        self.expires_at = expires_at
        """The token's expiry (ms); the session is closed then unless refreshed."""
        self.last_seen = 0.0
        """When the client last sent a frame (monotonic seconds), for the idle timeout."""
        self.rooms: set[str] = set()
        self.worked: set[str] | None = None
        """Staff: the creators whose access this session used (a join or a command
        authorized by a grant), told when that access ends (decision 0015). Created
        on first use: most sessions never need it."""
        self.sink = sink
        self.is_closed = False
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self.on_close: Callable[[], object] | None = None
        """Called once when the session is closed (the endpoint stops reading)."""
        self._max = max_buffered
        # Created on first use: most sessions never need them, and every idle
        # connection pays for what it holds (docs/benchmarks.md, idle).
        self._queue: deque[Frame] | None = None
        self._queued = 0
        self._wakeup: anyio.Event | None = None

    def send(self, message: Message) -> None:
        """Encode and deliver a message to this session only (never waits)."""
        self.deliver(self.codec.encode(message))

    def deliver(self, frame: Frame, wire: bytes | None = None) -> None:
        """Write (or queue) an encoded frame; past the buffer bound, close as slow.
        ``wire``: the same frame framed for the socket, when the caller has it."""
        if self.is_closed:
            return
        # Past the bound only with something already waiting: one frame bigger than
        # the bound (a large snapshot) still goes to a client that keeps up.
        sink = self.sink
        if sink is not None:
            waiting = sink.buffered()
            if waiting and waiting + len(frame) > self._max:
                self.close(CloseCode.SLOW_CONSUMER, "send buffer overflow")
                return
            sink.write(frame, wire)
            return
        if self._queued and self._queued + len(frame) > self._max:
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow")
            return
        if self._queue is None:
            self._queue = deque()
        self._queue.append(frame)
        self._queued += len(frame)
        if self._wakeup is not None:
            self._wakeup.set()

    def flush(self) -> None:
        """Send what this turn of the loop wrote so far now (see :class:`Sink`)."""
        if self.sink is not None:
            self.sink.flush()

    def close(self, code: int, reason: str = "") -> None:
        """Close the connection with ``code`` after what was delivered; the first call wins."""
        if self.is_closed:
            return
        self.is_closed = True
        self.close_code = code
        self.close_reason = reason
        if self.sink is not None:
            self.sink.close(code, reason)
        if self._wakeup is not None:
            self._wakeup.set()
        if self.on_close is not None:
            self.on_close()

    async def wait_frames(self) -> None:
        """Return once a frame is queued or the session is closed (the writer's only wait)."""
        while not self._queue and not self.is_closed:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        self._wakeup = None

    def take_frames(self) -> list[Frame]:
        """Every frame queued, oldest first; the outbox is then empty."""
        if not self._queue:
            return []
        frames = list(self._queue)
        self._queue.clear()
        self._queued = 0
        return frames

    def pending(self) -> int:
        """Bytes queued or buffered and not yet taken by the kernel."""
        return self.sink.buffered() if self.sink is not None else self._queued
