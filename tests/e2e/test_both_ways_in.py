"""Admission and rate limits hold the same on both ways into ``/ws``: livepilot's own
connection (:mod:`server.endpoint`) and the ASGI endpoint under another WebSocket
protocol (:func:`server.ws.websocket_endpoint`) (H6, decision 0021)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import pytest

from protocol.errors import CloseCode, Code
from protocol.messages import SUBPROTOCOL_JSON, Error, Ping, Pong
from server.config import Settings
from server.endpoint import LivepilotWebSocketProtocol
from tests.e2e.conftest import TIMEOUT, raw_client
from tests.e2e.test_asgi_fallback import FALLBACK, serving
from tests.e2e.test_handshake import handshake_status
from tests.e2e.test_limits import hello

WAYS = pytest.mark.parametrize(
    "ws", [FALLBACK, LivepilotWebSocketProtocol], ids=["asgi", "livepilot"]
)


@WAYS
async def test_a_first_frame_not_hello_is_answered_then_closed(
    make_settings: Callable[..., Settings],
    ws: str | type[asyncio.Protocol],
) -> None:
    """A first frame that is not hello gets NOT_AUTHENTICATED, then the 4500 close."""
    # H6
    async with serving(make_settings(), ws=ws) as served, raw_client(served.srv, None) as raw:
        await raw.send(Ping(nonce=1))
        messages, code = await raw.until_closed()
        assert [m.code for m in messages if isinstance(m, Error)] == [Code.NOT_AUTHENTICATED]
        assert code == CloseCode.BAD_TOKEN


@WAYS
async def test_the_actor_cap_refuses_then_frees_its_slot(
    make_settings: Callable[..., Settings],
    ws: str | type[asyncio.Protocol],
) -> None:
    """Beyond max_connections_per_actor the hello is closed 4006; a closed connection
    gives its slot back."""
    # H6
    async with serving(make_settings(max_connections_per_actor=1), ws=ws) as served:
        srv = served.srv
        token = srv.token(creator="cr")
        async with raw_client(srv, token) as first:
            assert await hello(srv, token) == (None, CloseCode.TOO_MANY_CONNECTIONS)
            await first.send(Ping(nonce=1))
            assert (await first.expect(Pong)).nonce == 1
        with anyio.fail_after(TIMEOUT):
            ws_, code = await hello(srv, token)
            while code == CloseCode.TOO_MANY_CONNECTIONS:  # the first close may be in flight
                ws_, code = await hello(srv, token)
        assert code is None
        await ws_.close()  # type: ignore[attr-defined]


@WAYS
async def test_sustained_refusals_for_the_actor_close_with_4002(
    make_settings: Callable[..., Settings],
    ws: str | type[asyncio.Protocol],
) -> None:
    """Refused again and again by the actor's shared bucket (not its own), a connection
    is closed with the retryable 4002, each refusal answered RATE_LIMITED."""
    # H6
    settings = make_settings(
        rate_per_s=1000.0,
        rate_burst=1000,
        actor_rate_per_s=0.001,
        actor_rate_burst=5,
        abuse_refusals=10,
    )
    async with (
        serving(settings, ws=ws) as served,
        raw_client(served.srv, served.srv.token(creator="cr")) as raw,
    ):
        for i in range(40):
            await raw.send(Ping(nonce=i))
        messages, code = await raw.until_closed()
        assert [m.code for m in messages if isinstance(m, Error)] == [Code.RATE_LIMITED] * 10
        assert sum(isinstance(m, Pong) for m in messages) == 5
        assert code == CloseCode.RATE_LIMITED


@WAYS
async def test_the_hubs_own_origin_is_admitted(
    make_settings: Callable[..., Settings],
    ws: str | type[asyncio.Protocol],
) -> None:
    """An Origin naming the host the handshake was sent to is admitted; another is 403."""
    async with serving(make_settings(), ws=ws) as served:
        srv = served.srv
        host = srv.url.removeprefix("ws://").removesuffix("/ws")
        sub = [SUBPROTOCOL_JSON]
        assert await handshake_status(srv, subprotocols=sub, origin=f"http://{host}") is None
        assert await handshake_status(srv, subprotocols=sub, origin="http://evil.example") == 403
