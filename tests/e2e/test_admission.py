"""Slow and half-open clients against a real server: handshake and hello deadlines,
max_connections answered with a fast 503, and the counters /metrics shows."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
from anyio.abc import SocketStream
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from protocol.codec import Codec
from protocol.errors import CloseCode
from protocol.messages import Join, Ping, Pong, Snapshot
from server.config import Settings
from tests.e2e.conftest import TIMEOUT, Server, raw_client, run_server

DEADLINE_S = 0.5
JSON = Codec("json")


async def open_socket(srv: Server) -> SocketStream:
    return await anyio.connect_tcp("127.0.0.1", srv.settings.port)


async def until_closed(sock: SocketStream) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset), reading what comes."""
    start = time.monotonic()
    with anyio.fail_after(TIMEOUT):
        try:
            while True:
                await sock.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass
    return time.monotonic() - start


async def http_get(srv: Server, path: str) -> tuple[int, str, str]:
    """Status, head and body of a one-shot GET on a fresh connection."""
    with anyio.fail_after(TIMEOUT):
        async with await open_socket(srv) as sock:
            await sock.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            try:
                while True:
                    data += await sock.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head, body


def sample(srv: Server, name: str) -> float:
    return srv.runtime.metrics.registry.get_sample_value(name) or 0.0


@pytest.fixture
async def quick(make_settings: Callable[..., Settings]) -> AsyncIterator[Server]:
    """A server with half-second handshake and hello deadlines."""
    async with run_server(
        make_settings(handshake_timeout_s=DEADLINE_S, hello_timeout_s=DEADLINE_S)
    ) as srv:
        yield srv


async def test_a_silent_socket_is_closed_at_the_handshake_deadline(quick: Server) -> None:
    """A TCP connection that sends nothing is closed handshake_timeout_s after accept."""
    # H6
    async with await open_socket(quick) as sock:
        elapsed = await until_closed(sock)
    assert elapsed >= DEADLINE_S * 0.9
    assert sample(quick, "livepilot_handshake_timeouts_total") == 1


async def test_trickled_headers_do_not_extend_the_deadline(quick: Server) -> None:
    """A request line followed by a byte every 50 ms is closed at the deadline all the
    same: it is a deadline for the whole head, not an idle timeout."""
    # H6
    async with await open_socket(quick) as sock:
        await sock.send(b"GET /healthz HTTP/1.1\r\n")

        async def trickle() -> None:
            try:
                while True:
                    await anyio.sleep(0.05)
                    await sock.send(b"X")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(trickle)
            elapsed = await until_closed(sock)
            tg.cancel_scope.cancel()
    assert elapsed >= DEADLINE_S * 0.9
    assert sample(quick, "livepilot_handshake_timeouts_total") == 1


async def test_a_body_short_of_its_content_length_is_cut(quick: Server) -> None:
    """A request whose body never reaches its Content-Length is closed at the deadline."""
    # H6
    async with await open_socket(quick) as sock:
        await sock.send(b"POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123")
        await until_closed(sock)
    assert sample(quick, "livepilot_handshake_timeouts_total") == 1


async def test_a_slow_second_request_on_a_kept_alive_connection_is_cut(quick: Server) -> None:
    """After a request answered in full, the next one has the same deadline."""
    # H6
    async with await open_socket(quick) as sock:
        await sock.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        with anyio.fail_after(TIMEOUT):
            answer = b""
            while b'"ok"' not in answer:
                answer += await sock.receive()
        assert answer.startswith(b"HTTP/1.1 200")
        await sock.send(b"GET /healthz HTTP/1.1\r\nHo")
        await until_closed(sock)
    assert sample(quick, "livepilot_handshake_timeouts_total") == 1


async def test_a_session_outlives_the_handshake_deadline(quick: Server) -> None:
    """Deadlines bound the handshake and hello only: a session that said hello lives on."""
    # H6
    async with raw_client(quick, quick.token(creator="cr")) as raw:
        await anyio.sleep(DEADLINE_S * 3)  # past both deadlines: nothing must happen
        await raw.send(Ping(nonce=1))
        assert (await raw.expect(Pong)).nonce == 1
    assert sample(quick, "livepilot_handshake_timeouts_total") == 0
    assert sample(quick, "livepilot_hello_timeouts_total") == 0


async def test_a_websocket_without_hello_is_closed_at_the_hello_deadline(quick: Server) -> None:
    """A WebSocket that never sends hello is closed with 4005 (retryable) at
    hello_timeout_s, not after the idle timeout."""
    # H6
    async with raw_client(quick, None) as raw:
        start = time.monotonic()
        _, code = await raw.until_closed()
    assert code == CloseCode.IDLE_TIMEOUT
    assert DEADLINE_S * 0.9 <= time.monotonic() - start < quick.settings.idle_timeout_s
    assert sample(quick, "livepilot_hello_timeouts_total") == 1


async def test_past_max_connections_a_new_connection_gets_a_fast_503(
    make_settings: Callable[..., Settings],
) -> None:
    """With max_connections open, /healthz and a WebSocket handshake get HTTP 503 with
    Retry-After at once; /metrics counts them; once the holders go, both succeed."""
    # H6
    async with run_server(make_settings(max_connections=3, handshake_timeout_s=1.0)) as srv:
        holders = [await open_socket(srv) for _ in range(3)]
        start = time.monotonic()
        status, head, _ = await http_get(srv, "/healthz")
        assert status == 503
        assert "retry-after: 1" in head.lower()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                srv.url,
                subprotocols=[JSON.subprotocol],  # type: ignore[list-item]
                open_timeout=TIMEOUT,
            ):
                pass
        assert refused.value.response.status_code == 503
        assert time.monotonic() - start < 1.0  # before any holder's deadline
        for sock in holders:  # the deadline frees them
            await until_closed(sock)
            await sock.aclose()
        assert (await http_get(srv, "/healthz"))[0] == 200
        async with raw_client(srv, srv.token(creator="cr")) as raw:
            await raw.send(Join(room="cr"))
            await raw.expect(Snapshot)
        status, _, metrics = await http_get(srv, "/metrics")
    assert status == 200
    assert "livepilot_connections_refused_total 2.0" in metrics
    assert "livepilot_handshake_timeouts_total 3.0" in metrics


async def test_an_upgrade_pipelined_after_a_request_is_still_counted_out(
    make_settings: Callable[..., Settings],
) -> None:
    """A WebSocket upgrade sent right behind an HTTP request (uvicorn upgrades once it
    has answered the first) frees its slot when it closes: with max_connections=1 the
    next connection is admitted, not refused forever."""
    # H6
    async with run_server(make_settings(max_connections=1)) as srv:
        async with await open_socket(srv) as sock:
            await sock.send(
                b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Protocol: " + JSON.subprotocol.encode() + b"\r\n\r\n"
            )
            answer = b""
            with anyio.fail_after(TIMEOUT):
                while b"101 Switching Protocols" not in answer:
                    answer += await sock.receive()
            assert answer.startswith(b"HTTP/1.1 200")
        with anyio.fail_after(TIMEOUT):  # refused until the server has read the close
            while (status := (await http_get(srv, "/healthz"))[0]) == 503:
                pass
        assert status == 200
        assert sample(srv, "livepilot_open_connections") == 0
