"""Rate limits over real sockets: every frame pays, bad ones more; an actor's
connections share one budget and are capped in number (H6, decision 0021)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol import commands as c
from protocol.codec import Codec
from protocol.errors import CloseCode, Code
from protocol.messages import Error, Hello, Ping, Pong, Refused, Welcome
from server.config import Settings
from server.hub.ratelimit import BAD_FRAME_COST
from tests.e2e.conftest import TIMEOUT, Server, raw_client, run_server

BAD_FRAMES: list[tuple[str, str | bytes]] = [
    ("malformed", "{not json"),
    ("unknown type", '{"type": "teleport", "room": "r"}'),
    ("binary on a JSON session", b'{"type":"ping"}'),
]


async def metric(srv: Server, line: str) -> float:
    """The value of one sample on /metrics (0 if absent)."""
    http_url = srv.url.replace("ws://", "http://").removesuffix("/ws")
    async with httpx.AsyncClient(base_url=http_url) as http:
        text = (await http.get("/metrics")).text
    for sample in text.splitlines():
        if sample.startswith(line + " "):
            return float(sample.split()[-1])
    return 0.0


@pytest.mark.parametrize(("name", "frame"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_a_flood_of_bad_frames_is_rate_limited_then_closed(
    make_settings: Callable[..., Settings],
    name: str,
    frame: str | bytes,
) -> None:
    """Frames that fail to decode pay into the bucket (more than good ones): a flood of
    them is refused with RATE_LIMITED, then closed as abuse."""
    # H6
    burst = 100
    settings = make_settings(rate_per_s=1.0, rate_burst=burst, abuse_refusals=20)
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as raw:
        for _ in range(2000):
            await raw.ws.send(frame)
        messages, close_code = await raw.until_closed()
        assert close_code == CloseCode.ABUSE, name
        codes = [m.code for m in messages if isinstance(m, Error)]
        refused = codes.count(Code.RATE_LIMITED)
        decoded = len(codes) - refused
        assert refused == 20  # the abuse meter's count, then the close
        # Each bad frame cost BAD_FRAME_COST tokens: ~burst / cost got their error
        # (+1 per second the run took, at 1 token/s).
        assert 1 <= decoded <= burst / BAD_FRAME_COST + 3, codes
        assert await metric(srv, 'livepilot_rate_limit_refusals_total{limit="connection"}') == 20


async def test_a_rate_limited_command_is_refused_with_its_id(
    make_settings: Callable[..., Settings],
) -> None:
    """A command refused before decoding still gets `refused` with its command_id."""
    # H6
    settings = make_settings(rate_per_s=0.001, rate_burst=1, abuse_refusals=100)
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as raw:
        await raw.send(Ping(nonce=1))
        assert (await raw.expect(Pong | Error)) == Pong(nonce=1)
        await raw.send(c.StartLive(command_id="go-1", room="cr"))
        refused = await raw.expect(Refused | Error)
        assert isinstance(refused, Refused), refused
        assert (refused.command_id, refused.code) == ("go-1", Code.RATE_LIMITED)


async def test_connections_of_one_actor_share_its_budget(
    make_settings: Callable[..., Settings],
) -> None:
    """Three connections of one actor together get the actor's budget, not three times
    a connection's; another actor keeps its own."""
    # H6
    settings = make_settings(
        rate_per_s=1000.0,
        rate_burst=1000,
        actor_rate_per_s=0.001,
        actor_rate_burst=30,
        abuse_refusals=1000,
    )
    async with run_server(settings) as srv:
        token = srv.token(agency="ag", staff="ann")
        async with (
            raw_client(srv, token) as a,
            raw_client(srv, token) as b,
            raw_client(srv, token) as d,
            raw_client(srv, srv.token(creator="cr")) as other,
        ):
            pongs = 0
            for raw in (a, b, d):
                for i in range(20):
                    await raw.send(Ping(nonce=i))
                for _ in range(20):
                    reply = await raw.expect(Pong | Error)
                    pongs += isinstance(reply, Pong)
                    if isinstance(reply, Error):
                        assert reply.code == Code.RATE_LIMITED
                        assert reply.retryable
            assert pongs == 30
            for i in range(20):
                await other.send(Ping(nonce=i))
            assert [await other.expect(Pong | Error) for _ in range(20)] == [
                Pong(nonce=i) for i in range(20)
            ]
            assert await metric(srv, 'livepilot_rate_limit_refusals_total{limit="actor"}') == 30


async def hello(srv: Server, token: str) -> tuple[object, int | None]:
    """Open a connection and say hello: the welcome (connection left open, returned
    with None) or the close code."""
    codec = Codec("json")
    ws = await connect(
        srv.url,
        subprotocols=[codec.subprotocol],  # type: ignore[list-item]
        open_timeout=TIMEOUT,
    )
    await ws.send(codec.encode(Hello(token=token)).decode())
    try:
        with anyio.fail_after(TIMEOUT):
            reply = codec.decode_server(await ws.recv())
    except ConnectionClosed as closed:
        return None, closed.rcvd.code if closed.rcvd is not None else None
    return ws, None if isinstance(reply, Welcome) else -1


async def test_connections_beyond_the_actor_cap_are_refused_retryably(
    make_settings: Callable[..., Settings],
) -> None:
    """An actor's connection beyond `max_connections_per_actor` is closed with the
    retryable 4006 before its welcome; once one closes, a reconnect is welcomed."""
    # H6
    async with run_server(make_settings(max_connections_per_actor=2)) as srv:
        token = srv.token(creator="cr")
        async with raw_client(srv, token), raw_client(srv, token) as second:
            ws, code = await hello(srv, token)
            assert (ws, code) == (None, CloseCode.TOO_MANY_CONNECTIONS)
            async with raw_client(srv, srv.token(creator="someone-else")):
                pass  # other actors are not affected
            await second.ws.close()
            # Retry as a client does after a retryable close, until the slot is free.
            with anyio.fail_after(TIMEOUT):
                while True:
                    ws, code = await hello(srv, token)
                    if ws is not None:
                        break
                    assert code == CloseCode.TOO_MANY_CONNECTIONS
            assert code is None
            await ws.close()  # type: ignore[attr-defined]
        refusals = 'livepilot_connection_refusals_total{reason="too_many_connections"}'
        assert await metric(srv, refusals) >= 1


async def test_sustained_refusals_for_the_actor_close_retryably(
    make_settings: Callable[..., Settings],
) -> None:
    """A connection refused again and again for its actor's budget (not its own rate) is
    closed with the retryable 4002, not as abuse: the actor's spending is shared."""
    # H6
    settings = make_settings(
        rate_per_s=1000.0,
        rate_burst=1000,
        actor_rate_per_s=0.001,
        actor_rate_burst=5,
        abuse_refusals=10,
    )
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as raw:
        for i in range(40):
            await raw.send(Ping(nonce=i))
        messages, close_code = await raw.until_closed()
        assert [m.code for m in messages if isinstance(m, Error)] == [Code.RATE_LIMITED] * 10
        assert sum(isinstance(m, Pong) for m in messages) == 5
        assert close_code == CloseCode.RATE_LIMITED
