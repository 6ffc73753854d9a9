"""server.wire: frame headers, the direct sink, read-ahead and close_now.

Unit tests drive a real LivepilotWebSocketProtocol with websockets' sans-I/O
client on the other side of a recording transport; end-to-end tests run a real
server on a loopback port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
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
from server.hub.session import Session
from server.wire import (
    FLUSH_AT_BYTES,
    READ_AHEAD,
    SINK_EXTENSION,
    DirectSink,
    LivepilotWebSocketProtocol,
    fit_close_reason,
    frame_header,
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


# --- a protocol on a recording transport ------------------------------------------


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
class Wire:
    """A server protocol, its transport, and a sans-I/O client on the other end."""

    protocol: LivepilotWebSocketProtocol
    transport: RecordingTransport
    client: ClientProtocol
    scope: Mapping[str, Any]
    received: list[Frame] = field(default_factory=list)

    def client_sends(self) -> None:
        """Deliver what the client has to send to the server, in one read."""
        self.protocol.data_received(b"".join(self.client.data_to_send()))

    def client_receives(self) -> list[Frame]:
        """Frames the server wrote since the last call, as the client decodes them."""
        self.client.receive_data(self.transport.take())
        frames = [e for e in self.client.events_received() if isinstance(e, Frame)]
        self.received.extend(frames)
        return frames

    def sink(self, binary: bool) -> DirectSink:
        make: Callable[[bool], DirectSink] = self.scope["extensions"][SINK_EXTENSION]
        return make(binary)

    def peer_closes(self, code: int = 1000, reason: str = "bye") -> None:
        """The client starts the closing handshake; the server reads its close frame."""
        self.client.send_close(code, reason)
        self.client_sends()


@asynccontextmanager
async def wire(*, deflate: bool = False) -> AsyncIterator[Wire]:
    """A handshaken connection to an app that accepts and then never reads."""
    accepted = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Callable[[], Any],
                  send: Callable[[dict[str, Any]], Any]) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        accepted.set()
        await release.wait()

    config = uvicorn.Config(app, ws=LivepilotWebSocketProtocol, lifespan="off",
                            ws_per_message_deflate=deflate, ws_ping_interval=None,
                            log_config=None)
    config.load()
    state = ServerState()
    protocol = LivepilotWebSocketProtocol(config, state, {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    extensions = [ClientPerMessageDeflateFactory()] if deflate else None
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/ws"), extensions=extensions)
    client.send_request(client.connect())
    protocol.data_received(b"".join(client.data_to_send()))
    with anyio.fail_after(TIMEOUT):
        await accepted.wait()
    client.receive_data(transport.take())
    client.events_received()  # the handshake response
    assert client.state is State.OPEN
    assert bool(client.extensions) == deflate
    try:
        yield Wire(protocol, transport, client, protocol.scope)
    finally:
        release.set()
        if protocol.close_timer is not None:
            protocol.close_timer.cancel()
        with anyio.fail_after(TIMEOUT):
            await asyncio.gather(*state.tasks)


async def end_of_turn() -> None:
    """Return after every callback scheduled so far has run (the sink's flush among them)."""
    await asyncio.sleep(0)


async def drain(protocol: LivepilotWebSocketProtocol) -> list[Mapping[str, Any]]:
    """Every event waiting for the app (taken from the queue, not through receive())."""
    events: list[Mapping[str, Any]] = []
    with anyio.fail_after(TIMEOUT):
        while not protocol.queue.empty():
            events.append(await protocol.queue.get())
    return events


# --- the sink -----------------------------------------------------------------------


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_sink_frames_arrive_whole_and_decoded(deflate: bool, binary: bool) -> None:
    """A sink's frames reach the client as final text/binary frames with the same payload."""
    async with wire(deflate=deflate) as w:
        sink = w.sink(binary)
        payloads = [b"", b"{}", b"x" * 4000, bytes(range(200)) * 300 if binary else b"y" * 70_000]
        for payload in payloads:
            sink.write(payload)
        await end_of_turn()
        on_wire = sum(len(b) for b in w.transport.written)
        frames = w.client_receives()
        assert [bytes(f.data) for f in frames] == payloads
        assert {(f.opcode, f.fin) for f in frames} == {
            (Opcode.BINARY if binary else Opcode.TEXT, True)}
        total = sum(len(p) for p in payloads)
        if deflate:  # through the codec: compressed on the wire
            assert on_wire < total // 4
        else:  # our own header, nothing else
            assert on_wire == total + sum(len(frame_header(Opcode.TEXT, len(p)))
                                          for p in payloads)


async def test_sink_reports_the_transport_write_buffer() -> None:
    """buffered() is what the transport has not handed to the kernel yet; frames
    held for the end of the turn were not offered to it and do not count."""
    async with wire() as w:
        sink = w.sink(False)
        assert sink.buffered() == 0
        w.transport.buffer_size = 12_345
        assert sink.buffered() == 12_345
        sink.write(b"x" * 200)
        assert w.transport.written == []
        assert sink.buffered() == 12_345


async def test_a_burst_is_written_as_it_grows_past_the_flush_size() -> None:
    """Once FLUSH_AT_BYTES are held, they are written at once, before the turn ends."""
    async with wire() as w:
        sink = w.sink(True)
        chunk = bytes(1000)
        per_flush = -(-FLUSH_AT_BYTES // (len(chunk) + 4))  # frames until the flush
        for _ in range(per_flush - 1):
            sink.write(chunk)
        assert w.transport.written == []
        sink.write(chunk)
        assert len(w.transport.written) == 1
        sink.write(b"the rest")
        await end_of_turn()
        frames = w.client_receives()
        assert len(frames) == per_flush + 1
        assert bytes(frames[-1].data) == b"the rest"


async def test_a_burst_larger_than_the_bound_does_not_close_a_reader_that_keeps_up() -> None:
    """A resume's worth of events in one turn, well past send_buffer_bytes, reaches a
    client whose kernel buffer takes it: the bound counts what the kernel refused."""
    # H3 (a resume of many events must not close the session as slow)
    async with wire() as w:
        session = Session("s", Actor(role="creator", id="cr"), Codec("msgpack"),
                          expires_at=2**50, max_buffered=16 * 1024, sink=w.sink(True))
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
        sink = w.sink(False)
        payloads = [f"event {i}".encode() for i in range(5)]
        for payload in payloads:
            sink.write(payload)
        assert w.transport.written == []
        await end_of_turn()
        assert len(w.transport.written) == 1
        assert [bytes(f.data) for f in w.client_receives()] == payloads
        sink.write(b"next turn")
        await end_of_turn()
        assert [bytes(f.data) for f in w.client_receives()] == [b"next turn"]


async def test_an_asgi_send_goes_after_the_frames_held() -> None:
    """A frame sent through ASGI after sink writes follows them on the wire."""
    async with wire() as w:
        w.sink(False).write(b"first")
        with anyio.fail_after(TIMEOUT):
            await w.protocol.send({"type": "websocket.send", "text": "second"})
        assert [bytes(f.data) for f in w.client_receives()] == [b"first", b"second"]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_frames_held_when_the_peer_closes_are_dropped(deflate: bool) -> None:
    """Frames held when the peer's close frame arrives never follow the close echo."""
    async with wire(deflate=deflate) as w:
        w.sink(False).write(b"fan-out to a member that is leaving")
        w.peer_closes()
        await end_of_turn()
        assert [f.opcode for f in w.client_receives()] == [Opcode.CLOSE]


async def test_frames_held_when_the_connection_is_lost_are_dropped() -> None:
    """Frames held when the connection is lost are not written to the dead transport."""
    async with wire() as w:
        w.sink(False).write(b"nobody there")
        w.protocol.connection_lost(None)
        await end_of_turn()
        assert w.transport.written == []


async def test_scope_carries_the_sink_extension() -> None:
    """The app's scope holds livepilot.sink next to uvicorn's own extensions."""
    async with wire() as w:
        assert set(w.scope["extensions"]) == {"websocket.http.response", SINK_EXTENSION}
        assert isinstance(w.sink(True), DirectSink)


async def test_making_the_sink_lets_go_of_the_handshake() -> None:
    """Once the sink is made (after accept), the handshake's request, response and
    headers are released: an idle connection does not keep them."""
    async with wire() as w:
        request = w.protocol.request
        assert len(request.headers) > 0
        assert len(w.scope["headers"]) > 0
        w.sink(False)
        assert w.protocol.request is None
        assert w.protocol.response is None
        assert len(request.headers) == 0  # websockets' parser still holds the request
        assert w.scope["headers"] == []


# --- read-ahead ---------------------------------------------------------------------


async def test_reading_pauses_only_once_read_ahead_messages_wait() -> None:
    """Reading pauses once READ_AHEAD messages wait (not before) and resumes once all are taken."""
    async with wire() as w:
        for i in range(READ_AHEAD - 1):
            w.client.send_text(str(i).encode())
        w.client_sends()
        assert w.protocol.queue.qsize() == READ_AHEAD - 1
        assert w.transport.pauses == 0
        assert not w.protocol.read_paused

        w.client.send_text(str(READ_AHEAD - 1).encode())
        w.client_sends()
        assert (w.transport.pauses, w.protocol.read_paused) == (1, True)

        # Bytes already read still arrive while paused: queued, no second pause.
        for i in range(READ_AHEAD, READ_AHEAD + 4):
            w.client.send_text(str(i).encode())
        w.client_sends()
        assert w.transport.pauses == 1

        taken: list[str] = []
        with anyio.fail_after(TIMEOUT):
            while not w.protocol.queue.empty():
                assert w.transport.resumes == 0  # not before the app has taken them all
                message: Mapping[str, Any] = await w.protocol.receive()
                taken.append(message["text"])
        assert taken == [str(i) for i in range(READ_AHEAD + 4)]
        assert (w.transport.resumes, w.protocol.read_paused) == (1, False)


async def test_read_ahead_never_pauses_a_closing_transport() -> None:
    """Messages that arrive while the transport is closing do not pause reading."""
    async with wire() as w:
        w.transport.closed = True
        for i in range(READ_AHEAD + 2):
            w.client.send_text(str(i).encode())
        w.client_sends()
        assert w.transport.pauses == 0
        assert w.protocol.queue.qsize() == READ_AHEAD + 2


async def test_receive_waits_for_the_next_message() -> None:
    """The app's receive() waits until a message arrives, then returns it."""
    async with wire() as w:
        receiving = asyncio.ensure_future(w.protocol.receive())
        await anyio.wait_all_tasks_blocked()
        assert not receiving.done()
        w.client.send_text(b"hello")
        w.client_sends()
        with anyio.fail_after(TIMEOUT):
            message = await receiving
        assert message == {"type": "websocket.receive", "text": "hello"}


async def test_asgi_send_waits_while_writing_is_paused() -> None:
    """An ASGI send waits while the transport's buffer is full and goes once it drains."""
    async with wire() as w:
        w.protocol.pause_writing()
        sending = asyncio.ensure_future(
            w.protocol.send({"type": "websocket.send", "text": "queued"}))
        await anyio.wait_all_tasks_blocked()
        assert not sending.done()
        assert w.transport.written == []
        w.protocol.resume_writing()
        with anyio.fail_after(TIMEOUT):
            await sending
        assert [bytes(f.data) for f in w.client_receives()] == [b"queued"]


async def test_connection_lost_wakes_a_waiting_send() -> None:
    """A send waiting for a paused transport ends with ClientDisconnected when it is lost."""
    async with wire() as w:
        w.protocol.pause_writing()
        sending = asyncio.ensure_future(
            w.protocol.send({"type": "websocket.send", "text": "never"}))
        await anyio.wait_all_tasks_blocked()
        w.protocol.connection_lost(None)
        with anyio.fail_after(TIMEOUT), pytest.raises(ClientDisconnected):
            await sending


# --- close_now ------------------------------------------------------------------------


async def test_close_now_sends_the_close_frame_after_what_was_written() -> None:
    """close_now sends the close frame after the sink's frames and ends the app's reads."""
    async with wire() as w:
        sink = w.sink(False)
        for i in range(READ_AHEAD):  # reading is paused ...
            w.client.send_text(str(i).encode())
        w.client_sends()
        assert w.protocol.read_paused
        sink.write(b"last words")
        sink.close(4001, "send buffer overflow")
        assert w.transport.resumes == 1  # ... and resumed, to read the peer's close
        sink.write(b"after the close")  # dropped
        frames = w.client_receives()
        assert [(f.opcode, bytes(f.data)) for f in frames[:1]] == [(Opcode.TEXT, b"last words")]
        assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
        assert Close.parse(bytes(frames[1].data)) == Close(4001, "send buffer overflow")
        events = await drain(w.protocol)
        assert events[-1] == {"type": "websocket.disconnect", "code": 4001,
                              "reason": "send buffer overflow"}
        assert w.protocol.close_timer is not None
        assert not w.transport.closed
        w.client_sends()  # the client echoes the close frame
        assert w.transport.closed
        assert w.protocol.close_timer is None


async def test_close_timer_drops_a_peer_that_stopped_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that neither reads nor answers the close in time is aborted, data buffered or not."""
    monkeypatch.setattr(wire_module, "CLOSE_TIMEOUT_S", 0.01)
    async with wire() as w:
        w.transport.buffer_size = 200_000  # the kernel takes nothing more
        w.sink(False).close(4001, "send buffer overflow")
        with anyio.fail_after(TIMEOUT):
            await w.transport.ended.wait()
        assert w.transport.aborted


async def test_close_now_twice_sends_one_close_frame() -> None:
    """A second close_now is a no-op: the first code stands."""
    async with wire() as w:
        w.protocol.close_now(4001, "slow")
        w.protocol.close_now(4504, "abuse")
        frames = w.client_receives()
        assert [Close.parse(bytes(f.data)).code for f in frames] == [4001]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_close_now_after_the_peer_closed_is_a_no_op(deflate: bool) -> None:
    """Once the peer's close frame was read, close_now raises nothing and writes nothing."""
    async with wire(deflate=deflate) as w:
        w.peer_closes(1000, "bye")
        echo = w.client_receives()
        assert [f.opcode for f in echo] == [Opcode.CLOSE]  # uvicorn echoed it
        assert w.transport.closed
        w.protocol.close_now(4001, "too late")
        w.sink(False).close(4504, "too late")
        assert w.transport.written == []
        assert await drain(w.protocol) == [
            {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}]
        assert w.protocol.close_timer is None


async def test_close_now_after_the_connection_was_lost_is_a_no_op() -> None:
    """After connection_lost, close_now and the sink raise nothing and write nothing."""
    async with wire() as w:
        w.protocol.connection_lost(None)
        sink = w.sink(False)
        sink.write(b"nobody there")
        sink.close(4001, "too late")
        assert w.transport.written == []
        assert [e["type"] for e in await drain(w.protocol)] == ["websocket.disconnect"]


@pytest.mark.parametrize(("reason", "fitted"), [
    ("", ""),
    ("send buffer overflow", "send buffer overflow"),
    ("r" * 300, "r" * 123),
    ("é" * 100, "é" * 61),  # 2-byte characters: never cut in half
    ("€" * 50, "€" * 41),  # 3-byte
    ("x" + "🎉" * 40, "x" + "🎉" * 30),  # 4-byte
])
def test_fit_close_reason_keeps_whole_characters_within_123_bytes(reason: str,
                                                                  fitted: str) -> None:
    """A close reason is cut to at most 123 bytes of UTF-8, at a character boundary."""
    assert fit_close_reason(reason) == fitted
    assert len(fitted.encode()) <= 123


@pytest.mark.parametrize("reason", ["r" * 300, "é" * 100, "€" * 50])
async def test_sink_close_with_a_long_reason_still_sends_the_close_frame(reason: str) -> None:
    """A sink closed with an over-long reason sends a valid close frame, reason cut to fit."""
    async with wire() as w:
        w.sink(False).close(4001, reason)
        [frame] = w.client_receives()
        assert Close.parse(bytes(frame.data)) == Close(4001, fit_close_reason(reason))
        assert (await drain(w.protocol))[-1]["code"] == 4001
        assert w.protocol.close_sent


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_sink_write_after_the_peer_closed_is_dropped(deflate: bool) -> None:
    """Once the peer's close frame was read, a sink write is dropped: no error, no data frame."""
    # RFC 6455 §5.5.1: no data frame after a close frame. With deflate, websockets would
    # refuse to frame it (InvalidState out of the hub's fan-out); without, it would follow
    # the close echo on the wire whenever the transport still had data buffered.
    async with wire(deflate=deflate) as w:
        w.peer_closes()
        w.client_receives()
        assert not w.protocol.close_sent  # only the peer's close so far
        w.sink(False).write(b"fan-out to a member that is leaving")
        w.sink(True).write(b"and another")
        assert w.transport.written == []


async def test_sink_write_after_close_now_is_dropped() -> None:
    """Once our close frame is out, a sink write is dropped (the peer has not answered yet)."""
    async with wire() as w:
        w.protocol.close_now(4001, "slow")
        w.client_receives()
        w.sink(False).write(b"too late")
        assert w.transport.written == []


# --- over real sockets ------------------------------------------------------------------


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {"port": free_port(), "data_path": str(tmp_path / "db.sqlite")}
    base.update(overrides)
    return load_settings({}, log_level="WARNING", **base)


@asynccontextmanager
async def plain_client(srv: Server, token: str) -> AsyncIterator[Raw]:
    """A JSON client that refuses permessage-deflate."""
    codec = Codec("json")
    async with connect(srv.url, subprotocols=[Subprotocol(codec.subprotocol)],
                       open_timeout=TIMEOUT, max_size=None, compression=None) as ws:
        raw = Raw(ws, codec)
        await raw.send(Hello(token=token))
        assert isinstance(await raw.recv(), Welcome)
        yield raw


async def test_deflate_and_plain_clients_receive_the_same_events(tmp_path: Path) -> None:
    """With permessage-deflate on, deflate and plain clients all get every event, decoded."""
    # H2
    settings = settings_for(tmp_path, permessage_deflate=True, rate_per_s=10_000.0,
                            rate_burst=10_000, actor_rate_per_s=10_000.0,
                            actor_rate_burst=10_000)
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
        assert all(isinstance(s.sink, DirectSink) for s in sessions)

        for member in (packed, plain):
            await member.send(Join(room="cr"))
            await member.expect(Snapshot)
        await creator.send(Join(room="cr"))
        await creator.expect(Snapshot)
        await creator.send(c.StartLive(command_id="go", room="cr"))
        await acked(creator)
        contents = [f"{i}:" + "comment " * (i * 8) for i in range(30)]  # Text: 2000 at most
        for i, content in enumerate(contents):
            await creator.send(c.FeedComment(command_id=f"c{i}", room="cr", comment_id=f"c{i}",
                                             user=VIEWER, content=content))
        last = 0
        for _ in contents:
            last = max(last, (await acked(creator)).seq)
        seen = [await m.events_until(last) for m in (creator, packed, plain)]
        assert [e.seq for e in seen[0]] == list(range(1, last + 1))
        assert seen[1] == seen[0][-len(seen[1]):]
        assert seen[2] == seen[0][-len(seen[2]):]
        assert [getattr(e.body, "content", None) for e in seen[2][-len(contents):]] == contents


async def test_a_burst_of_small_frames_is_answered_in_order(tmp_path: Path) -> None:
    """Hundreds of frames written at once (far past READ_AHEAD) are all read, in order."""
    settings = settings_for(tmp_path, rate_per_s=100_000.0, rate_burst=100_000,
                            actor_rate_per_s=100_000.0, actor_rate_burst=100_000)
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as raw:
        n = READ_AHEAD * 40
        # One write: the server reads many frames per read and must pause and resume.
        raw.ws.transport.write(b"".join(
            encode_masked_text(raw.codec.encode(Ping(nonce=i))) for i in range(n)))
        nonces = [(await raw.expect(Pong)).nonce for _ in range(n)]
        assert nonces == list(range(n))
        # Commands too: acked in the order sent.
        await raw.send(Join(room="cr"))
        await raw.expect(Snapshot)
        await raw.send(c.StartLive(command_id="go", room="cr"))
        await acked(raw)
        raw.ws.transport.write(b"".join(
            encode_masked_text(raw.codec.encode(c.FeedViewers(
                command_id=f"v{i}", room="cr", total=i)))
            for i in range(READ_AHEAD * 4)))
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
async def sansio_client(srv: Server, *, deflate: bool) -> AsyncIterator[
        tuple[ClientProtocol, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A websockets sans-I/O client on a loopback socket, past hello -> welcome."""
    codec = Codec("json")
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.settings.port)
    client = ClientProtocol(parse_uri(srv.url),
                            extensions=[ClientPerMessageDeflateFactory()] if deflate else None,
                            subprotocols=[Subprotocol(codec.subprotocol)])
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
    tmp_path: Path, caplog: pytest.LogCaptureFixture, deflate: bool,
) -> None:
    """A ping and a close frame read together: only the close echo comes back, no error."""
    # H6. The pong is answered after the close was read: with deflate it used to raise
    # InvalidState out of the endpoint ("Exception in ASGI application").
    settings = settings_for(tmp_path, permessage_deflate=True)
    async with run_server(settings) as srv, sansio_client(srv, deflate=deflate) as (
            client, reader, writer):
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


async def test_the_protocol_takes_the_connection_over_from_an_admission_gate() -> None:
    """Made while a gate (server.admission) is the transport's protocol, it takes the
    connection over (hand_over), is accepted only once the app accepts, and tells the
    gate once when the connection is lost."""
    # H6
    handed: list[object] = []
    gone: list[bool] = []

    class Gate(asyncio.Protocol):
        def hand_over(self, protocol: asyncio.Protocol) -> Callable[[], None]:
            handed.append(protocol)
            return lambda: gone.append(True)

    config = uvicorn.Config(lambda *_: None, ws=LivepilotWebSocketProtocol, lifespan="off",
                            log_config=None)
    config.load()
    protocol = LivepilotWebSocketProtocol(config, ServerState(), {})
    transport = RecordingTransport()
    transport.protocol = Gate()
    protocol.connection_made(transport)
    assert handed == [protocol]
    assert not protocol.accepted
    protocol.connection_lost(None)
    assert gone == [True]
