"""livepilot's WebSocket protocol for uvicorn: ASGI, plus a direct send path.

uvicorn's ``websockets-sansio`` protocol, with one ASGI extension added to the
connection's scope: ``scope["extensions"]["livepilot.sink"]``, a :class:`DirectSink`
that writes a frame to the socket's transport without waiting (what one turn of the
event loop writes to a socket leaves in one write at its end, decision 0010).
Fan-out then costs what ``websockets.broadcast`` costs (frame, ``transport.write``)
instead of an ASGI round trip per frame through a writer task per connection
(decision 0007, measured in docs/benchmarks.md). Everything else (handshake,
reading, pings, the closing handshake) is uvicorn's, and the endpoint still works
under any ASGI server: without the extension it falls back to its writer task.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Opcode
from websockets.protocol import State

__all__ = [
    "SINK_EXTENSION", "DirectSink", "LivepilotWebSocketProtocol", "fit_close_reason",
    "frame_header",
]

SINK_EXTENSION: Final = "livepilot.sink"
READ_AHEAD: Final = 16
"""Messages read from a socket before reading pauses until the app takes them."""
CLOSE_TIMEOUT_S: Final = 10.0
"""How long a closing connection waits for the peer's close frame."""
FLUSH_AT_BYTES: Final = 64 * 1024
"""Frames held for the end of the turn are written at once past this many bytes."""

_FIN: Final = 0x80


def frame_header(opcode: Opcode, length: int) -> bytes:
    """The header of one unmasked, unfragmented, uncompressed frame (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((_FIN | opcode, length))
    if length < 1 << 16:
        return struct.pack("!BBH", _FIN | opcode, 126, length)
    return struct.pack("!BBQ", _FIN | opcode, 127, length)


def fit_close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame carries (123 bytes of UTF-8, RFC 6455 §5.5)."""
    return reason.encode()[:123].decode(errors="ignore")


_last: list[Any] = [None, None, b""]
"""The last frame built: (payload, opcode, frame). A fan-out writes one payload to
every member in a row, so each event is framed once per format, not per member."""


def _framed(opcode: Opcode, payload: bytes) -> bytes:
    last = _last
    if last[0] is payload and last[1] is opcode:
        framed: bytes = last[2]
        return framed
    framed = frame_header(opcode, len(payload)) + payload
    last[0], last[1], last[2] = payload, opcode, framed
    return framed


class DirectSink:
    """Write frames of one connection to its transport, never waiting.

    A frame is written whole or not at all, so frames written here and those
    uvicorn writes (pings, pongs, the close frame) never interleave mid-frame.
    Frames written in one turn of the event loop go out together at its end
    (:meth:`LivepilotWebSocketProtocol.write_frame`).
    """

    __slots__ = ("_opcode", "_protocol")

    def __init__(self, protocol: LivepilotWebSocketProtocol, binary: bool) -> None:
        self._protocol = protocol
        self._opcode = Opcode.BINARY if binary else Opcode.TEXT

    def write(self, frame: bytes) -> None:
        """Frame ``frame`` and write it; dropped once the connection is closing."""
        p = self._protocol
        if not p.is_open():
            return
        if p.conn.extensions:  # permessage-deflate: the frame must go through the codec
            if self._opcode == Opcode.TEXT:
                p.conn.send_text(frame)
            else:
                p.conn.send_binary(frame)
            p.write_frame(b"".join(p.conn.data_to_send()))
        else:
            p.write_frame(_framed(self._opcode, frame))

    def buffered(self) -> int:
        """Bytes the transport could not hand to the kernel yet. Frames held for the
        end of the turn are not counted: they were never offered to the kernel, and
        they are fewer than :data:`FLUSH_AT_BYTES`."""
        return self._protocol.transport.get_write_buffer_size()

    def flush(self) -> None:
        """Write the frames held for the end of this turn now."""
        self._protocol.flush_frames()

    def close(self, code: int, reason: str) -> None:
        """Send the close frame after what is written; the app's reads end at once."""
        self._protocol.close_now(code, reason)


class _Inbox:
    """What uvicorn uses of ``asyncio.Queue`` (put_nowait, get, empty; qsize for
    READ_AHEAD), for one reader: a Queue holds four deques, ~2.5 KB of every idle
    connection."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []  # at most READ_AHEAD and a few control messages
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class _Flag:
    """What uvicorn uses of ``asyncio.Event`` (set, clear, wait), without a deque
    per connection until somebody waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter


class LivepilotWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with the ``livepilot.sink`` extension.

    It relies on that class's internals (``queue``, ``writable``, ``conn``,
    ``close_sent``...): uvicorn is pinned to the versions tests/test_wire.py ran on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        self._gone: Callable[[], None] | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # uvicorn's HTTP protocol calls this before it gives us the transport: the
        # protocol the transport still has may be livepilot's admission gate
        # (server.admission), which hands the connection over and wants to hear
        # when it is lost (to count it out).
        hand_over = getattr(transport.get_protocol(), "hand_over", None)
        if hand_over is not None:
            self._gone = hand_over(self)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            gone, self._gone = self._gone, None
            if gone is not None:
                gone()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The app task is created but has not run yet: the scope can still grow.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SINK_EXTENSION] = self.sink

    def sink(self, binary: bool) -> DirectSink:
        """A sink for this connection's frames, text or binary (after the handshake)."""
        # The handshake is over: its request, response and headers are not needed any
        # more, and every idle connection would keep them (~3 KB; docs/benchmarks.md,
        # idle). websockets' parser keeps the request object itself, so its headers
        # are emptied in place; so is the scope's list (the endpoint read Origin).
        request = getattr(self, "request", None)
        if request is not None:
            request.headers.clear()
        headers = self.scope.get("headers")
        if isinstance(headers, list):
            headers.clear()
        self.request = self.response = None  # type: ignore[assignment]
        return DirectSink(self, binary)

    def send_receive_event_to_app(self) -> None:
        # uvicorn pauses reading after every message until the app takes it (two
        # epoll changes per message); pausing once READ_AHEAD messages wait keeps
        # the bound and saves them.
        paused = self.read_paused
        self.read_paused = True  # keeps the base class from pausing
        super().send_receive_event_to_app()
        self.read_paused = paused
        if not paused and self.queue.qsize() >= READ_AHEAD and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    @property
    def accepted(self) -> bool:
        """Whether the opening handshake is over (answered, or the connection lost): what
        the handshake deadline of :mod:`server.admission` waits for."""
        return bool(self.handshake_complete)

    def is_open(self) -> bool:
        """Whether a data frame may still be sent: neither side's close frame is out.

        RFC 6455 §5.5.1: no data frame may follow a close frame, and websockets
        refuses to frame one (with deflate).
        """
        return not (self.close_sent or self.disconnected or self.conn.state is not State.OPEN)

    def write_frame(self, data: bytes) -> None:
        """Write whole frames at the end of this turn of the event loop.

        A fan-out or a batch of durable appends writes many frames to the same
        socket in one turn (events, then the sender's ack): one write, hence one
        system call and one TCP segment, instead of one each. The frames go out
        after the callbacks already scheduled in this turn, or as soon as
        :data:`FLUSH_AT_BYTES` are held (a resume, a large snapshot), so the
        kernel takes a burst as it comes, as it would without holding.
        """
        out = self._out
        if out is None:
            self._out = [data]
            self.loop.call_soon(self.flush_frames)
        else:
            out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= FLUSH_AT_BYTES:
            self.flush_frames()

    def flush_frames(self) -> None:
        """Write the frames :meth:`write_frame` holds (dropped if the connection is closing)."""
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_bytes = 0
        if not self.is_open() or self.transport.is_closing():
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    async def send(self, message: Any) -> None:
        self.flush_frames()  # the sink's frames first: they were written before
        await super().send(message)

    def close_now(self, code: int, reason: str) -> None:
        """What uvicorn does for an ASGI ``websocket.close``, without waiting."""
        self.flush_frames()  # what was written goes before the close frame
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        reason = fit_close_reason(reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # abort, not close: close() waits for the write buffer to drain, which a
        # peer that stopped reading (a slow consumer) never lets happen.
        self.close_timer = self.loop.call_later(CLOSE_TIMEOUT_S, self.transport.abort)
