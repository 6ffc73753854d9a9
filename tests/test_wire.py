"""server.wire: frame headers, the handshake, messages in, frames out, the closing
handshake and keepalive of livepilot's own WebSocket connection.

Unit tests drive a real WebSocketConnection with websockets' sans-I/O client on the
other side of a recording transport; end-to-end tests run a real server on a
loopback port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.streams import StreamReader
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from protocol import commands as c
from protocol.codec import Codec
from protocol.messages import (
    Ack,
    Error,
    Event,
    Hello,
    Join,
    Ping,
    Pong,
    Refused,
    Snapshot,
    Welcome,
)
from protocol.model import Actor, Viewer
from server import wire as wire_module
from server.config import Settings, load_settings
from server.endpoint import READ_AHEAD
from server.hub.session import Session
from server.wire import (
    FLUSH_AT_BYTES,
    Accepted,
    Options,
    Rejected,
    WebSocketConnection,
    fit_close_reason,
    frame_header,
    framed,
)
from tests.e2e.conftest import TIMEOUT, Raw, Server, free_port, raw_client, run_server

VIEWER = Viewer(unique_id="v1", nickname="Viewer")


# --- frame_header ---------------------------------------------------------------


def parse_frame(data: bytes) -> tuple[Frame, int]:
    """Parse one server-to-client frame with websockets' own parser; and the bytes left."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame, len(reader.buffer)
    raise AssertionError("the parser wanted more bytes than header + payload")


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_frame_header_is_what_websockets_parses(opcode: Opcode, length: int) -> None:
    """frame_header + payload parses as one final frame of that opcode and exactly that payload."""
    payload = b"a" * length if opcode == Opcode.TEXT else bytes(i % 251 for i in range(length))
    frame, left = parse_frame(frame_header(opcode, length) + payload)
    assert frame.opcode == opcode
    assert frame.fin
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False)
    assert bytes(frame.data) == payload
    assert left == 0  # the header announced exactly the payload's length


@pytest.mark.parametrize(("length", "size"), [(125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_frame_header_uses_the_shortest_length_form(length: int, size: int) -> None:
    """7-bit lengths up to 125, 16-bit up to 65535, 64-bit beyond (RFC 6455 §5.2)."""
    assert len(frame_header(Opcode.BINARY, length)) == size


def test_wire_keeps_no_mutable_module_state() -> None:
    """No module-global list, dict, set or bytearray in server.wire: nothing one
    connection writes can leak into another's frames (the old last-frame cache)."""
    mutable = {
        name
        for name, value in vars(wire_module).items()
        if isinstance(value, list | dict | set | bytearray) and not name.startswith("__")
    }
    assert mutable == set()


# --- a connection on a recording transport ------------------------------------------


class RecordingTransport(asyncio.Transport):
    """A transport that records writes, closes and read pauses instead of doing I/O."""

    def __init__(self) -> None:
        super().__init__({"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)})
        self.written: list[bytes] = []
        self.closed = False
        self.pauses = 0
        self.resumes = 0
        self.buffer_size = 0
        self.aborted = False
        self.ended = asyncio.Event()
        """Set by close() or abort()."""
        self.protocol: asyncio.BaseProtocol | None = None
        """What get_protocol() answers: the protocol in front, before an upgrade."""

    def get_protocol(self) -> Any:
        return self.protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.ended.set()

    def abort(self) -> None:
        self.closed = self.aborted = True
        self.ended.set()

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1

    def get_write_buffer_size(self) -> int:
        return self.buffer_size

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data


@dataclass
class RecordingPeer:
    """A Peer that records what the connection tells it."""

    messages: list[str | bytes] = field(default_factory=list)
    closes: int = 0

    def message(self, data: str | bytes) -> None:
        self.messages.append(data)

    def closed(self) -> None:
        self.closes += 1


@dataclass
class Wire:
    """A server connection, its transport, its peer, and a sans-I/O client on the other end."""

    conn: WebSocketConnection
    transport: RecordingTransport
    client: ClientProtocol
    peer: RecordingPeer
    requests: list[Request]
    received: list[Frame] = field(default_factory=list)

    def client_sends(self) -> None:
        """Deliver what the client has to send to the server, in one read."""
        self.conn.data_received(b"".join(self.client.data_to_send()))

    def client_receives(self) -> list[Frame]:
        """Frames the server wrote since the last call, as the client decodes them."""
        self.client.receive_data(self.transport.take())
        frames = [e for e in self.client.events_received() if isinstance(e, Frame)]
        self.received.extend(frames)
        return frames

    def peer_closes(self, code: int = 1000, reason: str = "bye") -> None:
        """The client starts the closing handshake; the server reads its close frame."""
        self.client.send_close(code, reason)
        self.client_sends()


def client_for(deflate: bool = False, subprotocols: list[str] | None = None) -> ClientProtocol:
    extensions = [ClientPerMessageDeflateFactory()] if deflate else None
    return ClientProtocol(
        parse_uri("ws://127.0.0.1:8000/ws"),
        extensions=extensions,
        subprotocols=[Subprotocol(s) for s in subprotocols or []] or None,
    )


@asynccontextmanager
async def wire(
    *, deflate: bool = False, binary: bool = False, options: Options | None = None
) -> AsyncIterator[Wire]:
    """A handshaken connection whose peer records what it is told."""
    peer = RecordingPeer()
    requests: list[Request] = []

    def opening(conn: WebSocketConnection, request: Request) -> Accepted | Rejected:
        requests.append(request)
        return Accepted(peer, "livepilot.test", binary)

    conn = WebSocketConnection(opening, options or Options(deflate=deflate))
    transport = RecordingTransport()
    conn.connection_made(transport)
    client = client_for(deflate, ["livepilot.test"])
    client.send_request(client.connect())
    conn.data_received(b"".join(client.data_to_send()))
    client.receive_data(transport.take())
    [response] = client.events_received()
    assert isinstance(response, Response)
    assert client.state is State.OPEN
    assert bool(client.extensions) == deflate
    assert client.subprotocol == "livepilot.test"
    assert conn.accepted
    w = Wire(conn, transport, client, peer, requests)
    try:
        yield w
    finally:
        conn.connection_lost(None)


async def end_of_turn() -> None:
    """Return after every callback scheduled so far has run (the flush among them)."""
    await asyncio.sleep(0)


# --- the handshake ------------------------------------------------------------------


async def test_a_rejected_handshake_is_answered_with_its_status_and_closed() -> None:
    """An opening that rejects gets that HTTP status; the peer is never told anything."""
    conn = WebSocketConnection(lambda c, r: Rejected(403, "no"), Options())
    transport = RecordingTransport()
    conn.connection_made(transport)
    client = client_for()
    client.send_request(client.connect())
    conn.data_received(b"".join(client.data_to_send()))
    client.receive_data(transport.take())
    [response] = client.events_received()
    assert isinstance(response, Response)
    assert response.status_code == 403
    assert transport.closed
    assert conn.accepted  # answered: the admission deadline is met
    assert not conn.is_open()


async def test_a_request_that_is_not_a_websocket_upgrade_gets_a_4xx() -> None:
    """A request websockets cannot accept (no Sec-WebSocket-Key) is answered 400, not opened."""
    opened: list[Request] = []

    def opening(conn: WebSocketConnection, request: Request) -> Rejected:
        opened.append(request)
        return Rejected(500)

    conn = WebSocketConnection(opening, Options())
    transport = RecordingTransport()
    conn.connection_made(transport)
    conn.data_received(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert transport.take().startswith(b"HTTP/1.1 400")
    assert transport.closed
    assert opened == []


async def test_garbage_instead_of_a_request_is_answered_400() -> None:
    """Bytes that are no HTTP request get a 400 and the socket is closed."""
    conn = WebSocketConnection(lambda c, r: Rejected(500), Options())
    transport = RecordingTransport()
    conn.connection_made(transport)
    conn.data_received(b"\x16\x03\x01 not http\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 4")
    assert transport.closed


async def test_accepting_lets_go_of_the_request_headers() -> None:
    """Once accepted, the handshake request's headers are released: websockets' parser
    keeps the request object, and every idle connection would keep them."""
    async with wire() as w:
        [request] = w.requests
        assert len(request.headers) == 0


async def test_registry_holds_the_connection_while_it_is_open() -> None:
    """A connection is in its registry (uvicorn's connections) from made to lost."""
    registry: set[Any] = set()
    conn = WebSocketConnection(lambda c, r: Rejected(403), Options(), registry=registry)
    conn.connection_made(RecordingTransport())
    assert registry == {conn}
    conn.connection_lost(None)
    assert registry == set()


# --- frames out -------------------------------------------------------------------


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_frames_arrive_whole_and_decoded(deflate: bool, binary: bool) -> None:
    """Written frames reach the client as final text/binary frames with the same payload."""
    async with wire(deflate=deflate, binary=binary) as w:
        payloads = [b"", b"{}", b"x" * 4000, bytes(range(200)) * 300 if binary else b"y" * 70_000]
        for payload in payloads:
            w.conn.write(payload)
        await end_of_turn()
        on_wire = sum(len(b) for b in w.transport.written)
        frames = w.client_receives()
        assert [bytes(f.data) for f in frames] == payloads
        assert {(f.opcode, f.fin) for f in frames} == {
            (Opcode.BINARY if binary else Opcode.TEXT, True)
        }
        total = sum(len(p) for p in payloads)
        if deflate:  # through the codec: compressed on the wire
            assert on_wire < total // 4
        else:  # our own header, nothing else
            assert on_wire == total + sum(len(frame_header(Opcode.TEXT, len(p))) for p in payloads)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_a_fan_out_frame_framed_once_is_written_as_is(deflate: bool) -> None:
    """write(frame, wire) sends the frame the fan-out framed once; with deflate, the
    frame goes through the codec instead."""
    async with wire(deflate=deflate, binary=True) as w:
        payload = b"event" * 20
        wire_bytes = framed(payload, True)
        w.conn.write(payload, wire_bytes)
        await end_of_turn()
        if not deflate:
            assert w.transport.written == [wire_bytes]
        assert [bytes(f.data) for f in w.client_receives()] == [payload]


async def test_buffered_reports_the_transport_write_buffer() -> None:
    """buffered() is what the transport has not handed to the kernel yet; frames
    held for the end of the turn were not offered to it and do not count."""
    async with wire() as w:
        assert w.conn.buffered() == 0
        w.transport.buffer_size = 12_345
        assert w.conn.buffered() == 12_345
        w.conn.write(b"x" * 200)
        assert w.transport.written == []
        assert w.conn.buffered() == 12_345


async def test_a_burst_is_written_as_it_grows_past_the_flush_size() -> None:
    """Once FLUSH_AT_BYTES are held, they are written at once, before the turn ends."""
    async with wire(binary=True) as w:
        chunk = bytes(1000)
        per_flush = -(-FLUSH_AT_BYTES // (len(chunk) + 4))  # frames until the flush
        for _ in range(per_flush - 1):
            w.conn.write(chunk)
        assert w.transport.written == []
        w.conn.write(chunk)
        assert len(w.transport.written) == 1
        w.conn.write(b"the rest")
        await end_of_turn()
        frames = w.client_receives()
        assert len(frames) == per_flush + 1
        assert bytes(frames[-1].data) == b"the rest"


async def test_a_burst_larger_than_the_bound_does_not_close_a_reader_that_keeps_up() -> None:
    """A resume's worth of events in one turn, well past send_buffer_bytes, reaches a
    client whose kernel buffer takes it: the bound counts what the kernel refused."""
    # H3 (a resume of many events must not close the session as slow)
    async with wire(binary=True) as w:
        session = Session(
            "s",
            Actor(role="creator", id="cr"),
            Codec("msgpack"),
            expires_at=2**50,
            max_buffered=16 * 1024,
            sink=w.conn,
        )
        frames = [bytes([i % 256]) * 500 for i in range(200)]  # ~100 KB in one turn
        for frame in frames:
            session.deliver(frame)
        assert not session.is_closed
        await end_of_turn()
        assert [bytes(f.data) for f in w.client_receives()] == frames


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_frames_of_one_turn_go_out_in_one_write(deflate: bool) -> None:
    """Frames written in one turn of the loop are held, then written together, in order."""
    async with wire(deflate=deflate) as w:
        payloads = [f"event {i}".encode() for i in range(5)]
        for payload in payloads:
            w.conn.write(payload)
        assert w.transport.written == []
        await end_of_turn()
        assert len(w.transport.written) == 1
        assert [bytes(f.data) for f in w.client_receives()] == payloads
        w.conn.write(b"next turn")
        await end_of_turn()
        assert [bytes(f.data) for f in w.client_receives()] == [b"next turn"]


async def test_flush_writes_what_is_held_now() -> None:
    """flush() writes the frames held so far at once (a publish's end, decision 0012)."""
    async with wire() as w:
        w.conn.write(b"a")
        w.conn.write(b"b")
        w.conn.flush()
        assert len(w.transport.written) == 1
        assert [bytes(f.data) for f in w.client_receives()] == [b"a", b"b"]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_frames_held_when_the_peer_closes_are_dropped(deflate: bool) -> None:
    """Frames held when the peer's close frame arrives never follow the close echo."""
    async with wire(deflate=deflate) as w:
        w.conn.write(b"fan-out to a member that is leaving")
        w.peer_closes()
        await end_of_turn()
        assert [f.opcode for f in w.client_receives()] == [Opcode.CLOSE]
        assert w.transport.closed  # the server closes TCP first
        assert w.peer.closes == 1


async def test_frames_held_when_the_connection_is_lost_are_dropped() -> None:
    """Frames held when the connection is lost are not written to the dead transport."""
    async with wire() as w:
        w.conn.write(b"nobody there")
        w.conn.connection_lost(None)
        await end_of_turn()
        assert w.transport.written == []
        assert w.peer.closes == 1


# --- messages in ----------------------------------------------------------------------


async def test_text_frames_arrive_as_str_and_binary_as_bytes() -> None:
    """A text message reaches the peer as str, a binary one as bytes, in order."""
    async with wire() as w:
        w.client.send_text("héllo".encode())
        w.client.send_binary(b"\x00\x01")
        w.client_sends()
        assert w.peer.messages == ["héllo", b"\x00\x01"]


async def test_a_fragmented_message_arrives_whole() -> None:
    """A message sent in several frames reaches the peer once, reassembled."""
    async with wire() as w:
        w.client.send_text(b"one ", fin=False)
        w.client.send_continuation(b"two ", fin=False)
        w.client_sends()
        assert w.peer.messages == []
        w.client.send_continuation(b"three", fin=True)
        w.client_sends()
        assert w.peer.messages == ["one two three"]


async def test_invalid_utf8_in_a_text_frame_closes_with_1007() -> None:
    """A text frame that is not UTF-8 fails the connection with 1007 (RFC 6455 §8.1)."""
    async with wire() as w:
        w.client.send_text(b"\xff\xfe")
        w.client_sends()
        assert w.peer.messages == []
        [frame] = w.client_receives()
        assert Close.parse(bytes(frame.data)).code == 1007
        assert w.peer.closes == 1


async def test_a_message_too_large_closes_with_1009() -> None:
    """A message past max_size fails the connection with 1009; the peer never sees it."""
    async with wire(options=Options(max_size=100)) as w:
        w.client.send_binary(bytes(101))
        w.client_sends()
        assert w.peer.messages == []
        [frame] = w.client_receives()
        assert Close.parse(bytes(frame.data)).code == 1009
        assert w.transport.closed


async def test_a_ping_is_answered_with_a_pong() -> None:
    """A client's ping gets its pong; the peer is not told."""
    async with wire() as w:
        w.client.send_ping(b"abc")
        w.client_sends()
        await end_of_turn()
        frames = w.client_receives()
        assert [(f.opcode, bytes(f.data)) for f in frames] == [(Opcode.PONG, b"abc")]
        assert w.peer.messages == []


async def test_pause_and_resume_reading_reach_the_transport_once() -> None:
    """pause_reading pauses the transport once however often it is called; resume once."""
    async with wire() as w:
        w.conn.pause_reading()
        w.conn.pause_reading()
        assert w.transport.pauses == 1
        w.conn.resume_reading()
        w.conn.resume_reading()
        assert w.transport.resumes == 1


# --- close ----------------------------------------------------------------------------


async def test_close_sends_the_close_frame_after_what_was_written() -> None:
    """close() sends the close frame after the frames written, resumes reading to hear
    the answer, tells the peer, and drops what is written after it."""
    async with wire() as w:
        w.conn.pause_reading()
        w.conn.write(b"last words")
        w.conn.close(4001, "send buffer overflow")
        assert w.transport.resumes == 1  # to read the peer's close
        assert w.peer.closes == 1
        w.conn.write(b"after the close")  # dropped
        w.client.send_text(b"late message")  # discarded: the peer was told it is over
        w.client_sends()
        assert w.peer.messages == []
        frames = w.client_receives()
        assert [(f.opcode, bytes(f.data)) for f in frames[:1]] == [(Opcode.TEXT, b"last words")]
        assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
        assert Close.parse(bytes(frames[1].data)) == Close(4001, "send buffer overflow")
        assert not w.transport.closed
        w.client_sends()  # the client echoes the close frame
        assert w.transport.closed


async def test_close_timer_drops_a_peer_that_stopped_reading() -> None:
    """A peer that neither reads nor answers the close in time is aborted."""
    async with wire(options=Options(close_timeout=0.01)) as w:
        w.transport.buffer_size = 200_000  # the kernel takes nothing more
        w.conn.close(4001, "send buffer overflow")
        with anyio.fail_after(TIMEOUT):
            await w.transport.ended.wait()
        assert w.transport.aborted


async def test_close_twice_sends_one_close_frame() -> None:
    """A second close is a no-op: the first code stands."""
    async with wire() as w:
        w.conn.close(4001, "slow")
        w.conn.close(4504, "abuse")
        frames = w.client_receives()
        assert [Close.parse(bytes(f.data)).code for f in frames] == [4001]
        assert w.peer.closes == 1


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_close_after_the_peer_closed_is_a_no_op(deflate: bool) -> None:
    """Once the peer's close frame was read, close raises nothing and writes nothing."""
    async with wire(deflate=deflate) as w:
        w.peer_closes(1000, "bye")
        echo = w.client_receives()
        assert [f.opcode for f in echo] == [Opcode.CLOSE]
        assert w.transport.closed
        w.conn.close(4001, "too late")
        assert w.transport.written == []
        assert w.peer.closes == 1


async def test_close_after_the_connection_was_lost_is_a_no_op() -> None:
    """After connection_lost, close and write raise nothing and write nothing."""
    async with wire() as w:
        w.conn.connection_lost(None)
        w.conn.write(b"nobody there")
        w.conn.close(4001, "too late")
        assert w.transport.written == []
        assert w.peer.closes == 1


@pytest.mark.parametrize(
    ("reason", "fitted"),
    [
        ("", ""),
        ("send buffer overflow", "send buffer overflow"),
        ("r" * 300, "r" * 123),
        ("é" * 100, "é" * 61),  # 2-byte characters: never cut in half
        ("€" * 50, "€" * 41),  # 3-byte
        ("x" + "🎉" * 40, "x" + "🎉" * 30),  # 4-byte
    ],
)
def test_fit_close_reason_keeps_whole_characters_within_123_bytes(reason: str, fitted: str) -> None:
    """A close reason is cut to at most 123 bytes of UTF-8, at a character boundary."""
    assert fit_close_reason(reason) == fitted
    assert len(fitted.encode()) <= 123


@pytest.mark.parametrize("reason", ["r" * 300, "é" * 100, "€" * 50])
async def test_close_with_a_long_reason_still_sends_the_close_frame(reason: str) -> None:
    """A connection closed with an over-long reason sends a valid close frame, reason cut."""
    async with wire() as w:
        w.conn.close(4001, reason)
        [frame] = w.client_receives()
        assert Close.parse(bytes(frame.data)) == Close(4001, fit_close_reason(reason))


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_write_after_the_peer_closed_is_dropped(deflate: bool) -> None:
    """Once the peer's close frame was read, a write is dropped: no error, no data frame."""
    # RFC 6455 §5.5.1: no data frame after a close frame. With deflate, websockets would
    # refuse to frame it (InvalidState out of the hub's fan-out).
    async with wire(deflate=deflate) as w:
        w.peer_closes()
        w.client_receives()
        w.conn.write(b"fan-out to a member that is leaving")
        w.conn.flush()
        assert w.transport.written == []


async def test_shutdown_closes_an_open_connection_with_1001() -> None:
    """shutdown() (the server stopping) closes an open connection with 1001."""
    async with wire() as w:
        w.conn.shutdown()
        [frame] = w.client_receives()
        assert Close.parse(bytes(frame.data)).code == 1001
        w.conn.shutdown()  # closing already: the transport is closed
        assert w.transport.closed


# --- keepalive ------------------------------------------------------------------------


async def test_keepalive_pings_and_fails_a_silent_peer_with_1011() -> None:
    """A ping goes out every interval; one not answered in time fails the connection."""
    async with wire(options=Options(ping_interval=0.01, ping_timeout=0.01)) as w:
        with anyio.fail_after(TIMEOUT):
            await w.transport.ended.wait()
        frames = w.client_receives()
        assert [f.opcode for f in frames] == [Opcode.PING, Opcode.CLOSE]
        assert Close.parse(bytes(frames[1].data)).code == 1011
        assert w.peer.closes == 1


async def test_keepalive_goes_on_while_pongs_come_back() -> None:
    """An answered ping is followed by the next one; the connection stays open."""
    async with wire(options=Options(ping_interval=0.01, ping_timeout=1.0)) as w:
        pings = 0
        with anyio.fail_after(TIMEOUT):
            while pings < 3:
                await asyncio.sleep(0.005)
                for frame in w.client_receives():
                    assert frame.opcode == Opcode.PING
                    pings += 1
                w.client_sends()  # websockets' client queued the pong
        assert w.conn.is_open()


# --- the admission gate ---------------------------------------------------------------


async def test_the_connection_takes_over_from_an_admission_gate() -> None:
    """Made while a gate (server.admission) is the transport's protocol, it takes the
    connection over (hand_over), is accepted only once the handshake is answered, and
    tells the gate once when the connection is lost."""
    # H6
    handed: list[object] = []
    gone: list[bool] = []

    class Gate(asyncio.Protocol):
        def hand_over(self, protocol: asyncio.Protocol) -> Callable[[], None]:
            handed.append(protocol)
            return lambda: gone.append(True)

    conn = WebSocketConnection(lambda c, r: Rejected(403), Options())
    transport = RecordingTransport()
    transport.protocol = Gate()
    conn.connection_made(transport)
    assert handed == [conn]
    assert not conn.accepted
    conn.connection_lost(None)
    assert gone == [True]
    conn.connection_lost(None)
    assert gone == [True]


# --- over real sockets ------------------------------------------------------------------


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {"port": free_port(), "data_path": str(tmp_path / "db.sqlite")}
    base.update(overrides)
    return load_settings({}, log_level="WARNING", **base)


@asynccontextmanager
async def plain_client(srv: Server, token: str) -> AsyncIterator[Raw]:
    """A JSON client that refuses permessage-deflate."""
    codec = Codec("json")
    async with connect(
        srv.url,
        subprotocols=[Subprotocol(codec.subprotocol)],
        open_timeout=TIMEOUT,
        max_size=None,
        compression=None,
    ) as ws:
        raw = Raw(ws, codec)
        await raw.send(Hello(token=token))
        assert isinstance(await raw.recv(), Welcome)
        yield raw


async def test_deflate_and_plain_clients_receive_the_same_events(tmp_path: Path) -> None:
    """With permessage-deflate on, deflate and plain clients all get every event, decoded."""
    # H2
    settings = settings_for(
        tmp_path,
        permessage_deflate=True,
        rate_per_s=10_000.0,
        rate_burst=10_000,
        actor_rate_per_s=10_000.0,
        actor_rate_burst=10_000,
    )
    async with (
        run_server(settings) as srv,
        raw_client(srv, srv.token(creator="cr")) as creator,
        raw_client(srv, srv.token(creator="cr"), "msgpack") as packed,
        plain_client(srv, srv.token(creator="cr")) as plain,
    ):
        assert creator.ws.protocol.extensions  # negotiated: the deflate branch
        assert packed.ws.protocol.extensions
        assert not plain.ws.protocol.extensions  # the frame_header branch
        sessions = list(srv.runtime.hub.sessions.values())
        assert len(sessions) == 3
        assert all(isinstance(s.sink, WebSocketConnection) for s in sessions)

        for member in (packed, plain):
            await member.send(Join(room="cr"))
            await member.expect(Snapshot)
        await creator.send(Join(room="cr"))
        await creator.expect(Snapshot)
        await creator.send(c.StartLive(command_id="go", room="cr"))
        await acked(creator)
        contents = [f"{i}:" + "comment " * (i * 8) for i in range(30)]  # Text: 2000 at most
        for i, content in enumerate(contents):
            await creator.send(
                c.FeedComment(
                    command_id=f"c{i}", room="cr", comment_id=f"c{i}", user=VIEWER, content=content
                )
            )
        last = 0
        for _ in contents:
            last = max(last, (await acked(creator)).seq)
        seen = [await m.events_until(last) for m in (creator, packed, plain)]
        assert [e.seq for e in seen[0]] == list(range(1, last + 1))
        assert seen[1] == seen[0][-len(seen[1]) :]
        assert seen[2] == seen[0][-len(seen[2]) :]
        assert [getattr(e.body, "content", None) for e in seen[2][-len(contents) :]] == contents


async def test_a_burst_of_small_frames_is_answered_in_order(tmp_path: Path) -> None:
    """Hundreds of frames written at once (far past READ_AHEAD) are all read, in order."""
    settings = settings_for(
        tmp_path,
        rate_per_s=100_000.0,
        rate_burst=100_000,
        actor_rate_per_s=100_000.0,
        actor_rate_burst=100_000,
    )
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as raw:
        n = READ_AHEAD * 40
        # One write: the server reads many frames per read and must pause and resume.
        raw.ws.transport.write(
            b"".join(encode_masked_text(raw.codec.encode(Ping(nonce=i))) for i in range(n))
        )
        nonces = [(await raw.expect(Pong)).nonce for _ in range(n)]
        assert nonces == list(range(n))
        # Commands too: acked in the order sent.
        await raw.send(Join(room="cr"))
        await raw.expect(Snapshot)
        await raw.send(c.StartLive(command_id="go", room="cr"))
        await acked(raw)
        raw.ws.transport.write(
            b"".join(
                encode_masked_text(
                    raw.codec.encode(c.FeedViewers(command_id=f"v{i}", room="cr", total=i))
                )
                for i in range(READ_AHEAD * 4)
            )
        )
        acks = [(await acked(raw)).command_id for _ in range(READ_AHEAD * 4)]
        assert acks == [f"v{i}" for i in range(READ_AHEAD * 4)]
        events = [e for e in raw.events if isinstance(e, Event)]
        assert [e.seq for e in events] == list(range(1, READ_AHEAD * 4 + 2))


async def acked(raw: Raw) -> Ack:
    """The next answer to a command, which must be an ack."""
    reply = await raw.expect(Ack | Refused | Error)
    assert isinstance(reply, Ack), reply
    return reply


def encode_masked_text(payload: bytes) -> bytes:
    """A client-to-server text frame (masked), built by websockets."""
    return Frame(Opcode.TEXT, payload).serialize(mask=True)


@asynccontextmanager
async def sansio_client(
    srv: Server, *, deflate: bool
) -> AsyncIterator[tuple[ClientProtocol, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A websockets sans-I/O client on a loopback socket, past hello -> welcome."""
    codec = Codec("json")
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.settings.port)
    client = ClientProtocol(
        parse_uri(srv.url),
        extensions=[ClientPerMessageDeflateFactory()] if deflate else None,
        subprotocols=[Subprotocol(codec.subprotocol)],
    )
    try:
        client.send_request(client.connect())
        writer.write(b"".join(client.data_to_send()))
        welcome = None
        with anyio.fail_after(TIMEOUT):
            while client.state is State.CONNECTING:
                data = await reader.read(65536)
                assert data, "the server closed during the handshake"
                client.receive_data(data)
            client.send_text(codec.encode(Hello(token=srv.token(creator="cr"))))
            writer.write(b"".join(client.data_to_send()))
            while welcome is None:
                frames = [e for e in client.events_received() if isinstance(e, Frame)]
                welcome = frames[0] if frames else None
                if welcome is None:
                    data = await reader.read(65536)
                    assert data, "the server closed before welcome"
                    client.receive_data(data)
        assert isinstance(codec.decode_server(bytes(welcome.data)), Welcome)
        assert bool(client.extensions) == deflate
        yield client, reader, writer
    finally:
        writer.close()


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_a_ping_and_a_close_read_together_end_quietly(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    deflate: bool,
) -> None:
    """A ping and a close frame read together: only the close echo comes back, no error."""
    # H6. The pong is answered after the close was read: with deflate it used to raise
    # InvalidState out of the endpoint ("Exception in ASGI application").
    settings = settings_for(tmp_path, permessage_deflate=True)
    async with (
        run_server(settings) as srv,
        sansio_client(srv, deflate=deflate) as (client, reader, writer),
    ):
        codec = Codec("json")
        client.send_text(codec.encode(Ping(nonce=1)))
        client.send_close(1000, "bye")
        writer.write(b"".join(client.data_to_send()))  # one write: one read on loopback
        with anyio.fail_after(TIMEOUT):
            rest = await reader.read()  # until the server closes the TCP connection
        # Frames after our close, parsed as they are on the wire.
        stream = StreamReader()
        stream.feed_data(rest)
        stream.feed_eof()
        opcodes = []
        while stream.buffer:
            parser = Frame.parse(stream.read_exact, mask=False, extensions=client.extensions)
            try:
                next(parser)
            except StopIteration as done:
                opcodes.append(done.value.opcode)
        assert opcodes == [Opcode.CLOSE]  # nothing after the close frame
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
