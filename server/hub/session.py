"""One client connection as the hub sees it: who, which codec, which rooms, and a
bounded outbox drained by the connection's own writer task.

Transport-free: the WebSocket endpoint (:mod:`server.ws`) moves frames between
the socket and a :class:`Session`; the hub only ever calls :meth:`Session.deliver`
and :meth:`Session.close`, which never wait. A session whose outbox is full is
closed as a slow consumer (retryable): the hub never waits for a client.
"""

from __future__ import annotations

from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

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
        "_inbox", "_outbox", "actor", "close_code", "close_reason", "closed", "codec",
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
        send: MemoryObjectSendStream[Frame]
        receive: MemoryObjectReceiveStream[Frame]
        send, receive = anyio.create_memory_object_stream[Frame](max_buffer_size=queue_size)
        self._outbox = send
        self._inbox = receive

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
        try:
            self._outbox.send_nowait(frame)
        except anyio.WouldBlock:
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow")

    def close(self, code: int, reason: str = "") -> None:
        """Ask for the connection to be closed with ``code``; the first call wins."""
        if self.closed.is_set():
            return
        self.close_code = code
        self.close_reason = reason
        self.closed.set()

    @property
    def frames(self) -> MemoryObjectReceiveStream[Frame]:
        """The outbox, for the connection's writer task."""
        return self._inbox

    def pending(self) -> int:
        """Frames queued and not yet written."""
        return self._outbox.statistics().current_buffer_used
