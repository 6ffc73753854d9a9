"""livepilot's WebSocket connection: an asyncio protocol on websockets' Sans-I/O API.

:class:`WebSocketConnection` is the transport's protocol for one WebSocket: bytes
in go to a ``websockets.server.ServerProtocol`` (``receive_data``,
``events_received``), bytes out come from it (``data_to_send``) or, for data frames,
from :func:`frame_header` (decision 0023). It knows nothing of livepilot's
messages: the handshake request goes to an *opening* callable, which accepts it
with a :class:`Peer` (told every message, and once that the connection closed) or
rejects it with an HTTP status. The hub writes to the connection directly
(:meth:`WebSocketConnection.write`, the :class:`server.hub.session.Sink` protocol):
frames written in one turn of the event loop leave in one write at its end
(decision 0010), and nothing ever waits for the client (decision 0005: the bytes
the kernel has not taken are the bound).

No task, no queue and no event per connection: what an idle connection holds is
this object, websockets' parser and whatever its peer keeps (docs/benchmarks.md,
idle).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Callable, MutableSet
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from server.framing import frame_header, framed

__all__ = [
    "CLOSE_TIMEOUT_S",
    "FLUSH_AT_BYTES",
    "Accepted",
    "Opening",
    "Options",
    "Peer",
    "Rejected",
    "WebSocketConnection",
    "fit_close_reason",
    "frame_header",
    "framed",
]

CLOSE_TIMEOUT_S: Final = 10.0
"""How long a closing connection waits for the peer's close frame."""
FLUSH_AT_BYTES: Final = 64 * 1024
"""Frames held for the end of the turn are written at once past this many bytes."""

_logger = logging.getLogger("livepilot.wire")


def fit_close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame carries (123 bytes of UTF-8, RFC 6455 §5.5)."""
    return reason.encode()[:123].decode(errors="ignore")


class Peer(Protocol):
    """What serves an accepted connection (livepilot's: :class:`server.endpoint.Client`)."""

    def message(self, data: str | bytes) -> None:
        """A whole message arrived: ``str`` from a text frame, ``bytes`` from a binary one."""

    def closed(self) -> None:
        """No message follows: a close frame went out or came in, or the connection was
        lost. Called once."""


class Accepted(NamedTuple):
    """The opening handshake is accepted: who serves the connection, and how."""

    peer: Peer
    subprotocol: str | None
    binary: bool
    """Whether :meth:`WebSocketConnection.write` sends binary frames (else text)."""


class Rejected(NamedTuple):
    """The opening handshake is refused with this HTTP status."""

    status: int
    text: str = ""


Opening = Callable[["WebSocketConnection", Request], Accepted | Rejected]
"""Decides a handshake request (with the connection, to write to later)."""


@dataclass(frozen=True, slots=True)
class Options:
    """What every connection of a server is configured with."""

    max_size: int | None = 1 << 20
    """Largest message read (bigger: closed with 1009)."""
    deflate: bool = False
    """Offer permessage-deflate."""
    ping_interval: float | None = None
    """Seconds between keepalive pings (None: no pings)."""
    ping_timeout: float | None = None
    """Seconds a ping waits for its pong before the connection is failed (1011)."""
    close_timeout: float = CLOSE_TIMEOUT_S


_OPENING, _OPEN, _CLOSING, _GONE = range(4)


class WebSocketConnection(asyncio.Protocol):
    """One WebSocket connection: handshake, frames in, frames out, the closing handshake.

    The connection never waits and never makes a task. ``registry``, when given, holds
    it while it is open (uvicorn's server state: its ``shutdown`` closes it).
    """

    __slots__ = (
        "_binary", "_close_timer", "_conn", "_gone", "_opening", "_options", "_out",
        "_out_bytes", "_parts", "_paused", "_peer", "_ping", "_ping_timer", "_registry",
        "_state", "_text", "transport",
    )  # fmt: skip

    def __init__(
        self, opening: Opening, options: Options, *, registry: MutableSet[Any] | None = None
    ) -> None:
        self._opening: Opening | None = opening
        self._options = options
        self._registry = registry
        extensions = (
            [
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12,
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            ]
            if options.deflate
            else None
        )
        self._conn = ServerProtocol(
            extensions=extensions, max_size=options.max_size, logger=_logger
        )
        self.transport: asyncio.Transport | None = None
        self._state = _OPENING
        self._peer: Peer | None = None
        self._binary = False
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        self._parts: list[bytes] | None = None
        self._text = False
        self._paused = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping: bytes | None = None
        self._gone: Callable[[], None] | None = None

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's has no class
        if self._registry is not None:
            self._registry.add(self)
        # The protocol the transport still has may be livepilot's admission gate
        # (server.admission), which hands the connection over and wants to hear when it
        # is lost (to count it out). uvicorn calls this before set_protocol.
        get_protocol = getattr(transport, "get_protocol", None)
        hand_over = getattr(get_protocol(), "hand_over", None) if get_protocol else None
        if hand_over is not None:
            self._gone = hand_over(self)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        conn.receive_data(data)
        for event in conn.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)
        if self._state == _OPENING and conn.handshake_exc is not None:
            self._bad_request()
            return
        self._send_output()

    def eof_received(self) -> bool | None:
        self._conn.receive_eof()
        self._send_output()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._registry is not None:
            self._registry.discard(self)
        self._out = None
        for timer in (self._close_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._ping_timer = None
        self._ended()
        gone, self._gone = self._gone, None
        if gone is not None:
            gone()

    def pause_writing(self) -> None:
        """Nothing waits for the transport: its buffer is the slow-consumer bound."""

    def resume_writing(self) -> None:
        """See :meth:`pause_writing`."""

    # --- state ------------------------------------------------------------------------

    @property
    def accepted(self) -> bool:
        """Whether the opening handshake is over (answered, or the connection lost): what
        the handshake deadline of :mod:`server.admission` waits for."""
        return self._state != _OPENING

    def is_open(self) -> bool:
        """Whether a data frame may still be sent: neither side's close frame is out.

        RFC 6455 §5.5.1: no data frame may follow a close frame, and websockets
        refuses to frame one (with deflate).
        """
        return self._state == _OPEN and self._conn.state is State.OPEN

    def shutdown(self) -> None:
        """The server stops (uvicorn calls this for each connection in its registry):
        close with 1001 what no session closed already."""
        if self._state == _OPEN:
            self.close(1001, "server shutting down")
        elif self.transport is not None:
            self.transport.close()

    # --- the Sink: what the hub writes ------------------------------------------------

    def write(self, frame: bytes, wire: bytes | None = None) -> None:
        """Send ``frame`` as one text or binary message (the format accepted); ``wire``
        is the same frame already framed (:func:`framed`), if the caller has it.
        Dropped once a close frame is out."""
        if not self.is_open():
            return
        conn = self._conn
        if conn.extensions:  # permessage-deflate: the frame must go through the codec
            if self._binary:
                conn.send_binary(frame)
            else:
                conn.send_text(frame)
            self._hold(b"".join(conn.data_to_send()))
        else:
            self._hold(wire if wire is not None else framed(frame, self._binary))

    def buffered(self) -> int:
        """Bytes the transport could not hand to the kernel yet. Frames held for the end
        of the turn are not counted: they were never offered to the kernel, and they are
        fewer than :data:`FLUSH_AT_BYTES`."""
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def flush(self) -> None:
        """Write the frames held for the end of this turn now (dropped if closing)."""
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_bytes = 0
        transport = self.transport
        if transport is None or not self.is_open() or transport.is_closing():
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self, code: int, reason: str) -> None:
        """Send the close frame after what is written; no message is delivered after it.
        A peer that does not answer within ``close_timeout`` is cut."""
        self.flush()  # what was written goes before the close frame
        transport = self.transport
        if self._state != _OPEN or transport is None or transport.is_closing():
            return
        conn = self._conn
        if conn.state is not State.OPEN:
            return
        conn.send_close(code, fit_close_reason(reason))
        self._state = _CLOSING
        self._send_output()
        self.resume_reading()  # to read the peer's close frame
        # abort, not close: close() waits for the write buffer to drain, which a peer
        # that stopped reading (a slow consumer) never lets happen.
        self._close_timer = asyncio.get_running_loop().call_later(
            self._options.close_timeout, transport.abort
        )
        self._ended()

    # --- reading ----------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading from the socket until :meth:`resume_reading` (the peer's backlog)."""
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        if self._paused and self.transport is not None:
            self._paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    # --- internals --------------------------------------------------------------------

    def _hold(self, data: bytes) -> None:
        """Write whole frames at the end of this turn of the event loop (decision 0010),
        or at once past :data:`FLUSH_AT_BYTES` held."""
        out = self._out
        if out is None:
            self._out = [data]
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= FLUSH_AT_BYTES:
            self.flush()

    def _send_output(self) -> None:
        """Write what websockets has to send (handshake, pong, close) after the frames
        held; close the transport where websockets ends the stream."""
        data = self._conn.data_to_send()
        if not data:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.flush()
        eof = not data[-1]
        chunk = b"".join(data)
        if chunk:
            transport.write(chunk)
        if eof:  # the server closes TCP first (RFC 6455 §7.1.1)
            transport.close()
            self._ended()

    def _handshake(self, request: Request) -> None:
        conn = self._conn
        opening, self._opening = self._opening, None
        response = conn.accept(request)
        if response.status_code != 101 or opening is None:
            conn.send_response(response)
            self._state = _GONE
            return
        outcome = opening(self, request)
        if isinstance(outcome, Rejected):
            conn.send_response(conn.reject(outcome.status, outcome.text))
            self._state = _GONE
            return
        headers = response.headers
        if outcome.subprotocol:
            headers["Sec-WebSocket-Protocol"] = outcome.subprotocol
        if "Server" in headers:  # uvicorn is run without one; so is this
            del headers["Server"]
        conn.send_response(response)
        # websockets' parser keeps the request object for the connection's lifetime:
        # its headers are not needed any more (~1 KB of every idle connection).
        request.headers.clear()
        self._peer = outcome.peer
        self._binary = outcome.binary
        self._state = _OPEN
        interval = self._options.ping_interval
        if interval:
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._send_ping)

    def _bad_request(self) -> None:
        """A request websockets could not parse: its answer (414, 431...) or a 400."""
        self._state = _GONE
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        answer = b"".join(self._conn.data_to_send())
        if not answer:  # websockets queued only the end of the stream
            answer = self._conn.reject(400, "Failed to open a WebSocket connection.\n").serialize()
        transport.write(answer)
        transport.close()

    def _frame(self, frame: Frame) -> None:
        match frame.opcode:
            case Opcode.TEXT | Opcode.BINARY:
                if frame.fin:
                    self._message(frame.data, frame.opcode is Opcode.TEXT)
                else:
                    self._parts = [bytes(frame.data)]
                    self._text = frame.opcode is Opcode.TEXT
            case Opcode.CONT:
                parts = self._parts
                if parts is not None:
                    parts.append(bytes(frame.data))
                    if frame.fin:
                        self._parts = None
                        self._message(b"".join(parts), self._text)
            case Opcode.PONG:
                if self._ping is not None and bytes(frame.data) == self._ping:
                    self._pong()
            case Opcode.CLOSE:
                self._ended()  # websockets echoes it and ends the stream
            case _:
                pass  # PING: websockets queued the pong

    def _message(self, data: Any, text: bool) -> None:
        peer = self._peer
        if peer is None or self._state != _OPEN:
            return  # after our close frame: discarded until the peer's comes back
        if not isinstance(data, bytes):
            data = bytes(data)
        if text:
            try:
                decoded = data.decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text frame")
                return
            peer.message(decoded)
        else:
            peer.message(data)

    def _fail(self, code: int, reason: str) -> None:
        self.flush()
        self._conn.fail(code, reason)
        self._send_output()
        self._ended()

    def _ended(self) -> None:
        """No message follows: tell the peer, once."""
        if self._state == _OPEN:
            self._state = _CLOSING
        elif self._state == _OPENING:
            self._state = _GONE
        peer, self._peer = self._peer, None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if peer is not None:
            peer.closed()

    # --- keepalive --------------------------------------------------------------------

    def _send_ping(self) -> None:
        self._ping_timer = None
        if not self.is_open():
            return
        self._ping = struct.pack("!I", random.getrandbits(32))
        self._conn.send_ping(self._ping)
        self._hold(b"".join(self._conn.data_to_send()))
        timeout = self._options.ping_timeout
        loop = asyncio.get_running_loop()
        if timeout:
            self._ping_timer = loop.call_later(timeout, self._ping_timed_out)
        elif self._options.ping_interval:
            self._ping_timer = loop.call_later(self._options.ping_interval, self._send_ping)

    def _pong(self) -> None:
        self._ping = None
        if self._options.ping_timeout and self._ping_timer is not None:
            self._ping_timer.cancel()
            interval = self._options.ping_interval or 0.0
            self._ping_timer = asyncio.get_running_loop().call_later(interval, self._send_ping)

    def _ping_timed_out(self) -> None:
        self._ping_timer = None
        self._ping = None
        if self.is_open():
            self._fail(1011, "keepalive ping timeout")
