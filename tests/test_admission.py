"""server.admission: the descriptor budget, the gate's deadline and refusals, EMFILE reports."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from server.admission import (
    REFUSAL,
    Admission,
    _Gate,
    default_max_connections,
)
from server.metrics import Metrics


class FakeTransport(asyncio.Transport):
    """What a gate uses of a transport, recorded."""

    def __init__(self, protocol: asyncio.BaseProtocol | None = None) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = b""
        self.eof_written = False
        self.aborted = asyncio.Event()

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def abort(self) -> None:
        self.aborted.set()


class Inner(asyncio.Protocol):
    """The protocol behind a gate: records what it is handed; ``upgrade_to`` plays
    uvicorn's HTTP protocol upgrading to a WebSocket one once a head is in (or, with
    ``pipelined``, later, as after a response to a request before it)."""

    def __init__(self, upgrade_to: asyncio.Protocol | None = None, pipelined: bool = False) -> None:
        self.received = b""
        self.lost = False
        self.transport: Any = None
        self.upgrade_to = upgrade_to
        self.pipelined = pipelined

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.upgrade_to is not None and not self.pipelined and b"\r\n\r\n" in self.received:
            self.upgrade()

    def upgrade(self) -> None:
        """What uvicorn's h11 protocol does: connection_made, then set_protocol."""
        assert self.upgrade_to is not None
        self.upgrade_to.connection_made(self.transport)
        self.transport.set_protocol(self.upgrade_to)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class WebSocketInner(Inner):
    """Plays server.wire's protocol: takes the connection over from the gate."""

    accepted = False
    gone: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.gone = transport.get_protocol().hand_over(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.gone()


def gate_for(admission: Admission, inner: Inner) -> tuple[_Gate, FakeTransport]:
    gate = admission.protocol_factory(lambda: inner)()
    assert isinstance(gate, _Gate)
    transport = FakeTransport(gate)
    gate.connection_made(transport)
    return gate, transport


def armed(gate: _Gate) -> bool:
    return gate._deadline is not None


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def test_default_max_connections_leaves_descriptors_for_files() -> None:
    """0 means 90 % of the descriptors left after 64 for files, at least 1."""
    assert default_max_connections(256) == 172
    assert default_max_connections(1024) == 864
    assert default_max_connections(10) == 1
    assert default_max_connections(None) == 10_000


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")
def test_raise_fd_limit_lifts_the_soft_limit_to_the_hard_one() -> None:
    """A process started with a soft limit below its hard one ends up at the hard one."""
    code = "from server.admission import raise_fd_limit; print(raise_fd_limit())"
    out = subprocess.run(
        ["prlimit", "--nofile=100:200", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == "200"


async def test_requests_are_followed_to_their_end() -> None:
    """The deadline runs from a request's first byte until its head and announced body
    are in, across chunks and pipelined requests."""
    # H6
    admission = Admission(10, 30.0, Metrics())
    inner = Inner()
    gate, _ = gate_for(admission, inner)
    assert armed(gate)  # from accept
    gate.data_received(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    assert armed(gate)  # body not all in
    gate.data_received(b"cde")
    assert not armed(gate)  # whole: the app has it; no deadline while it answers
    gate.data_received(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHo")
    assert armed(gate)  # the second pipelined request is not whole
    gate.data_received(b"st: x\r\n\r\n")
    assert not armed(gate)
    assert inner.received.endswith(b"Host: x\r\n\r\n")  # everything reached the protocol
    gate.data_received(b"POST /c HTTP/1.1\nTransfer-Encoding: chunked\n\n5\r\nab")
    assert not armed(gate)  # chunked: its end is unknown, the request is not followed
    assert admission.open == 1
    gate.connection_lost(None)
    assert admission.open == 0
    assert inner.lost


async def test_an_incomplete_request_is_aborted_at_the_deadline() -> None:
    """A head that never ends is cut at handshake_timeout_s and counted."""
    # H6
    metrics = Metrics()
    gate, transport = gate_for(Admission(10, 0.05, metrics), Inner())
    gate.data_received(b"GET /healthz HTTP/1.1\r\n")
    with anyio.fail_after(5):
        await transport.aborted.wait()
    assert sample(metrics, "livepilot_handshake_timeouts_total") == 1


@pytest.mark.parametrize("pipelined", [False, True])
async def test_an_upgrade_is_handed_over_and_timed_until_accepted(pipelined: bool) -> None:
    """Upgraded with new bytes or after a pipelined response, the WebSocket protocol
    gets the transport, the deadline cuts a handshake never accepted, and the
    connection is counted out when it is lost."""
    # H6
    metrics = Metrics()
    admission = Admission(10, 0.05, metrics)
    ws = WebSocketInner()
    http = Inner(upgrade_to=ws, pipelined=pipelined)
    gate, transport = gate_for(admission, http)
    gate.data_received(b"GET / HTTP/1.1\r\n\r\nGET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
    if pipelined:
        assert not armed(gate)  # both requests are whole
        http.upgrade()  # uvicorn answered the first; the second is the upgrade
    assert transport.get_protocol() is ws
    assert armed(gate)
    with anyio.fail_after(5):
        await transport.aborted.wait()  # never accepted
    assert sample(metrics, "livepilot_handshake_timeouts_total") == 1
    assert admission.open == 1
    ws.connection_lost(None)  # what the transport does once aborted
    assert admission.open == 0


async def test_an_accepted_websocket_outlives_the_deadline() -> None:
    """Once the WebSocket handshake is accepted the deadline does nothing."""
    # H6
    metrics = Metrics()
    ws = WebSocketInner()
    ws.accepted = True
    gate, transport = gate_for(Admission(10, 30.0, metrics), Inner(upgrade_to=ws))
    gate.data_received(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
    assert armed(gate)
    gate._expired()  # the deadline fires
    assert not transport.aborted.is_set()
    assert sample(metrics, "livepilot_handshake_timeouts_total") == 0


async def test_past_the_bound_a_connection_reads_a_503_and_is_closed() -> None:
    """A connection past max_connections gets 503 at once, no HTTP protocol, and
    lingers only to read it; past max_lingering it is cut at once."""
    # H6
    metrics = Metrics()
    admission = Admission(1, 30.0, metrics)
    admitted, _ = gate_for(admission, Inner())
    made: list[Inner] = []

    def make() -> Inner:
        made.append(Inner())
        return made[-1]

    refused = admission.protocol_factory(make)()
    transport = FakeTransport(refused)
    refused.connection_made(transport)
    assert transport.written == REFUSAL
    assert transport.eof_written
    assert not made
    assert REFUSAL.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1" in REFUSAL
    refused.data_received(b"GET / HTTP/1.1\r\n\r\n")  # read and dropped
    assert refused.eof_received() is None  # the client closed: so do we
    assert admission.lingering == 1
    refused.connection_lost(None)
    assert (admission.open, admission.lingering) == (1, 0)
    admission.lingering = admission.max_lingering
    cut = admission.protocol_factory(Inner)()
    transport = FakeTransport(cut)
    cut.connection_made(transport)
    assert transport.aborted.is_set()
    assert sample(metrics, "livepilot_connections_refused_total") == 2
    admitted.connection_lost(None)
    assert admission.open == 0


async def test_descriptor_exhaustion_is_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EMFILE reported by the loop is counted each time, logged once per interval
    without a traceback; anything else reaches the handler the loop had."""
    # H6
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: seen.append(context))
    metrics = Metrics()
    admission = Admission(10, 30.0, metrics)
    admission.watch(loop)
    try:
        with caplog.at_level(logging.WARNING, logger="livepilot.admission"):
            for _ in range(500):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                    }
                )
            loop.call_exception_handler({"message": "other", "exception": ValueError()})
    finally:
        admission.unwatch(loop)
    lines = [r for r in caplog.records if r.name == "livepilot.admission"]
    assert len(lines) == 1
    assert lines[0].exc_info is None
    assert sample(metrics, "livepilot_accept_errors_total") == 500
    assert [c["message"] for c in seen] == ["other"]
    assert loop.get_exception_handler() is not None  # the previous one, given back
    loop.set_exception_handler(None)


class Recorder:
    """A protocol factory that records the keywords it was called with."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> asyncio.Protocol:
        self.calls.append(kwargs)
        protocol: asyncio.Protocol = self.make()
        return protocol


def routed_gate(admission: Admission, http: Recorder) -> tuple[_Gate, FakeTransport]:
    gate = admission.protocol_factory(http)(config="c", server_state="s", app_state="a")
    assert isinstance(gate, _Gate)
    transport = FakeTransport(gate)
    gate.connection_made(transport)
    return gate, transport


async def test_a_first_request_for_ws_goes_straight_to_the_websocket_protocol() -> None:
    """With a websocket route, a connection whose first bytes ask for /ws is handed to
    the WebSocket protocol (with the HTTP protocol's keywords) and no HTTP protocol is
    built; the deadline stands until it accepts, and it is counted out when lost."""
    # H6 (decision 0023: the upgrade skips uvicorn's HTTP protocol)
    ws = WebSocketInner()
    websocket = Recorder(lambda: ws)
    http = Recorder(Inner)
    admission = Admission(10, 30.0, Metrics(), websocket=websocket)
    gate, transport = routed_gate(admission, http)
    assert http.calls == []  # nothing built before the first bytes
    assert websocket.calls == []
    request = b"GET /ws?x=1 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
    gate.data_received(request)
    assert http.calls == []
    assert websocket.calls == [{"config": "c", "server_state": "s", "app_state": "a"}]
    assert transport.get_protocol() is ws
    assert ws.received == request
    assert armed(gate)
    assert admission.open == 1
    ws.connection_lost(None)
    assert admission.open == 0


@pytest.mark.parametrize(
    "first",
    [b"GET /healthz HTTP/1.1\r\n", b"GET /wsx HTTP/1.1\r\n", b"POST /ws HTTP/1.1\r\n", b"GE"],
)
async def test_any_other_first_request_builds_the_http_protocol(first: bytes) -> None:
    """Bytes that do not start a request for /ws build the HTTP protocol, which gets
    them all; nothing is built for the WebSocket route."""
    inner = Inner()
    websocket = Recorder(WebSocketInner)
    http = Recorder(lambda: inner)
    admission = Admission(10, 30.0, Metrics(), websocket=websocket)
    gate, transport = routed_gate(admission, http)
    gate.data_received(first)
    assert len(http.calls) == 1
    assert websocket.calls == []
    assert inner.transport is transport
    assert inner.received == first
    assert transport.get_protocol() is gate


async def test_a_silent_connection_with_a_websocket_route_is_cut_and_counted_out() -> None:
    """A connection that sends nothing is aborted at the deadline although no protocol
    was built behind the gate yet, and counted out when lost."""
    # H6
    metrics = Metrics()
    admission = Admission(10, 0.05, metrics, websocket=Recorder(WebSocketInner))
    gate, transport = routed_gate(admission, Recorder(Inner))
    with anyio.fail_after(5):
        await transport.aborted.wait()
    assert sample(metrics, "livepilot_handshake_timeouts_total") == 1
    assert admission.open == 1
    gate.connection_lost(None)
    assert admission.open == 0
