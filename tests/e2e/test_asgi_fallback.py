"""The /ws endpoint without the ``livepilot.sink`` extension, over real sockets.

The same app, served by uvicorn's own ``websockets-sansio`` protocol: ``/ws`` is
served by the ASGI endpoint, whose writer task drains each session's outbox. The
stories that depend on how frames leave are run again on that path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from protocol import access as a
from protocol import commands as c
from protocol.codec import Codec
from protocol.errors import CloseCode, Code
from protocol.messages import (
    AccessChanged,
    Ack,
    Error,
    Hello,
    Join,
    Ping,
    Pong,
    Refused,
    Snapshot,
    Welcome,
)
from protocol.model import Actor, Viewer
from server.app import create_app
from server.auth import mint
from server.config import Settings
from server.endpoint import LivepilotWebSocketProtocol
from server.hub.session import Session
from server.serve import LivepilotServer, uvicorn_config
from server.wire import WebSocketConnection
from server.ws import FLUSH_ON_CLOSE_S
from tests.e2e.conftest import TIMEOUT, Clock, Raw, Server, raw_client

VIEWER = Viewer(unique_id="v1", nickname="Viewer")
CREATOR = Actor(role="creator", id="creator-1")
ANNA = Actor(role="staff", id="anna", agency="agency-1")
FALLBACK = "websockets-sansio"


@dataclass
class Served:
    """A running server, the uvicorn server behind it, and the WebSocket scopes it saw."""

    srv: Server
    uv: LivepilotServer
    extensions: list[frozenset[str]] = field(default_factory=list)
    """The keys of ``scope["extensions"]`` of every WebSocket connection, in order."""


@asynccontextmanager
async def serving(
    settings: Settings, *, ws: str | type[asyncio.Protocol] = FALLBACK, clock: Clock | None = None
) -> AsyncIterator[Served]:
    """livepilot's app and shutdown under uvicorn with the ``ws`` protocol (as conftest's
    run_server: a plain task, bounded start and stop, loopback only)."""
    assert settings.host == "127.0.0.1"
    clock = clock or Clock()
    app = create_app(settings, clock=clock)
    config = uvicorn_config(app, settings)
    config.ws = ws
    uv = LivepilotServer(config, app)
    served = Served(
        Server(url=f"ws://127.0.0.1:{settings.port}/ws", settings=settings, clock=clock, app=app),
        uv,
    )

    async def recording(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "websocket":
            served.extensions.append(frozenset(scope.get("extensions") or {}))
        await app(scope, receive, send)

    recording.state = app.state  # type: ignore[attr-defined]  # what livepilot's protocol reads
    config.app = recording
    task = asyncio.ensure_future(uv.serve())
    try:
        with anyio.fail_after(TIMEOUT):
            await uv.ready.wait()
        yield served
    finally:
        uv.should_exit = True
        with anyio.fail_after(TIMEOUT):
            await task


async def acked(raw: Raw) -> Ack:
    """The next answer to a command, which must be an ack."""
    reply = await raw.expect(Ack | Refused | Error)
    assert isinstance(reply, Ack), reply
    return reply


async def live(raw: Raw, room: str) -> int:
    await raw.send(Join(room=room))
    await raw.expect(Snapshot)
    await raw.send(c.StartLive(command_id="go", room=room))
    return (await acked(raw)).seq


@pytest.mark.parametrize(
    "ws", [FALLBACK, LivepilotWebSocketProtocol], ids=["websockets-sansio", "livepilot"]
)
async def test_only_livepilots_protocol_serves_ws_itself(
    make_settings: Callable[..., Settings],
    ws: str | type[asyncio.Protocol],
) -> None:
    """Under livepilot's protocol /ws never reaches the ASGI app and the session writes to
    the connection; under another, the ASGI endpoint serves it and sessions queue."""
    direct = ws is LivepilotWebSocketProtocol
    async with (
        serving(make_settings(), ws=ws) as served,
        raw_client(served.srv, served.srv.token(creator="cr")) as raw,
    ):
        await raw.send(Ping(nonce=7))
        assert (await raw.expect(Pong)).nonce == 7
        if direct:
            assert served.extensions == []
        else:
            [extensions] = served.extensions
            assert "websocket.http.response" in extensions  # the real scope was recorded
        [session] = served.srv.runtime.hub.sessions.values()
        if direct:
            assert isinstance(session.sink, WebSocketConnection)
        else:
            assert session.sink is None


async def test_hello_join_and_events_in_order_with_acks(
    make_settings: Callable[..., Settings],
) -> None:
    """hello -> welcome; both formats get every event in order, the sender its acks in order."""
    # H2 H4
    settings = make_settings(
        rate_per_s=10_000.0, rate_burst=10_000, actor_rate_per_s=10_000.0, actor_rate_burst=10_000
    )
    async with (
        serving(settings) as served,
        raw_client(served.srv, served.srv.token(creator="cr")) as creator,
        raw_client(served.srv, served.srv.token(creator="cr"), "msgpack") as member,
    ):
        assert all(s.sink is None for s in served.srv.runtime.hub.sessions.values())
        start = await live(creator, "cr")
        await member.send(Join(room="cr"))
        snapshot: Snapshot = await member.expect(Snapshot)
        assert snapshot.seq == start
        ids = [f"c{i}" for i in range(50)]
        for command_id in ids:  # sent back to back: several commands in flight
            await creator.send(
                c.FeedComment(
                    command_id=command_id,
                    room="cr",
                    comment_id=command_id,
                    user=VIEWER,
                    content=f"comment {command_id}",
                )
            )
        acks = [await acked(creator) for _ in ids]
        assert [ack.command_id for ack in acks] == ids
        assert [ack.seq for ack in acks] == list(range(start + 1, start + 1 + len(ids)))
        last = acks[-1].seq
        seen_creator = await creator.events_until(last)
        seen_member = await member.events_until(last)
        assert [e.seq for e in seen_creator] == list(range(1, last + 1))
        assert seen_member == seen_creator[start:]
        assert [e.command_id for e in seen_member] == ids


@dataclass
class SlowMember:
    """A member that stopped reading, and what the server has for it."""

    raw: Raw
    session: Session
    task: asyncio.Task[None]
    """uvicorn's task running the endpoint for this connection."""
    last: int = 0
    """The last seq acked to the creator when the member was closed."""


@asynccontextmanager
async def slow_member(served: Served, creator: Raw) -> AsyncIterator[SlowMember]:
    """Flood the room (live, the creator reading) until a member that stopped reading,
    with a tiny receive queue, is closed by the hub."""
    srv = served.srv
    hub = srv.runtime.hub
    sessions, tasks = set(hub.sessions), set(served.uv.server_state.tasks)
    codec = Codec("json")
    async with connect(
        srv.url, subprotocols=[Subprotocol(codec.subprotocol)], max_queue=1, open_timeout=TIMEOUT
    ) as ws:
        slow = Raw(ws, codec)
        await slow.send(Hello(token=srv.token(creator="cr")))
        await slow.expect(Welcome)
        await slow.send(Join(room="cr"))
        await slow.expect(Snapshot)
        [session] = [s for sid, s in hub.sessions.items() if sid not in sessions]
        [task] = served.uv.server_state.tasks - tasks
        member = SlowMember(slow, session, task)
        content = "x" * 1500
        # A few commands in flight at a time share fsyncs; few enough that what one group
        # commit publishes fits the creator's 16 KiB outbox.
        for batch in range(5000):
            ids = [f"c{batch}-{i}" for i in range(4)]
            for command_id in ids:
                await creator.send(
                    c.FeedComment(
                        command_id=command_id,
                        room="cr",
                        comment_id=command_id,
                        user=VIEWER,
                        content=content,
                    )
                )
            member.last = max([(await acked(creator)).seq for _ in ids])
            if session.is_closed:
                break
        yield member


@asynccontextmanager
async def slow_room(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Served, Raw, SlowMember]]:
    """A fallback-path server with a 16 KiB send bound, a live room whose creator
    reads all along, and a member of it closed as a slow consumer."""
    settings = make_settings(
        send_buffer_bytes=16_384,
        rate_per_s=1_000_000.0,
        rate_burst=1_000_000,
        actor_rate_per_s=1_000_000.0,
        actor_rate_burst=1_000_000,
    )
    async with (
        serving(settings) as served,
        raw_client(served.srv, served.srv.token(creator="cr")) as creator,
    ):
        await live(creator, "cr")
        async with slow_member(served, creator) as slow:
            yield served, creator, slow


async def test_slow_consumer_is_closed_and_others_keep_receiving(
    make_settings: Callable[..., Settings],
) -> None:
    """A member that stops reading is closed with SLOW_CONSUMER; the others get everything."""
    # H6 (backpressure: a slow client is disconnected, never waited for)
    async with slow_room(make_settings) as (_served, creator, slow):
        assert slow.session.sink is None  # the outbox, not the direct sink
        assert (slow.session.close_code, slow.session.close_reason) == (
            CloseCode.SLOW_CONSUMER,
            "send queue overflow",
        )
        # Reading again within FLUSH_ON_CLOSE_S, the member gets the close frame.
        _, close_code = await slow.raw.until_closed()
        assert close_code == CloseCode.SLOW_CONSUMER
        # The creator, reading all along, received every event in order.
        seen = await creator.events_until(slow.last)
        assert [e.seq for e in seen] == list(range(1, slow.last + 1))


async def test_slow_consumer_endpoint_ends_without_the_client_reading(
    make_settings: Callable[..., Settings],
) -> None:
    """A slow consumer's endpoint ends, and is counted, without the client reading again."""
    # H6 (the hub never waits for a client: neither does the closing connection)
    async with slow_room(make_settings) as (served, _creator, slow):
        assert slow.session.close_code == CloseCode.SLOW_CONSUMER
        try:
            # The close is bounded by FLUSH_ON_CLOSE_S (uvicorn's websocket.close waits
            # for the client to read): give it that, and then some.
            await asyncio.wait({slow.task}, timeout=3 * FLUSH_ON_CLOSE_S)
            assert slow.task.done()
            assert (
                served.srv.runtime.metrics.registry.get_sample_value(
                    "livepilot_slow_consumer_disconnects_total"
                )
                == 1
            )
        finally:
            await slow.raw.until_closed()  # reading again, the member sees the end


async def grant(srv: Server) -> None:
    """agency-1 asks for link + LIVE access; the creator accepts (R1, R5)."""
    access = srv.runtime.access
    sent = await access.submit(
        ANNA, a.RequestLink(request_id="req-1", creator=CREATOR.id, with_access=True)
    )
    assert isinstance(sent, list)
    accepted = await access.submit(CREATOR, a.AcceptRequest(request_id="req-1"))
    assert isinstance(accepted, list)


async def test_revoked_staff_gets_access_changed_and_leaves_the_room(
    make_settings: Callable[..., Settings],
) -> None:
    """A revoked staff session gets access_changed from its outbox, leaves the room (no
    later event of it) and stays open (decision 0015)."""
    # R9 R6
    room = CREATOR.id
    async with serving(make_settings()) as served:
        srv = served.srv
        await grant(srv)
        async with (
            raw_client(srv, srv.token(creator=room)) as creator,
            raw_client(srv, srv.token(agency="agency-1", staff="anna")) as anna,
        ):
            await live(creator, room)
            await anna.send(Join(room=room))
            await anna.expect(Snapshot)
            await anna.send(Ping(nonce=1))
            await anna.expect(Pong)  # everything before the revoke has been read
            revoked = await srv.runtime.access.submit(CREATOR, a.RevokeAccess(agency="agency-1"))
            assert isinstance(revoked, list)
            changed = await anna.expect(AccessChanged)
            assert changed == AccessChanged(
                creator=room, agency="agency-1", status="revoked", terminal=False, room=room
            )
            # The room goes on without her; her socket answers, with nothing of the room.
            await creator.send(c.FeedViewers(command_id="v1", room=room, total=3))
            await acked(creator)
            await anna.send(Ping(nonce=2))
            assert (await anna.recv()) == Pong(nonce=2)
            assert [e.command_id for e in anna.events] == []
            await creator.send(Ping(nonce=3))
            assert (await creator.expect(Pong)).nonce == 3


async def test_token_expiry_sends_the_error_then_closes(
    make_settings: Callable[..., Settings],
) -> None:
    """At exp the session gets the retryable TOKEN_EXPIRED error, then the TOKEN_EXPIRED close."""
    async with serving(make_settings()) as served:
        srv = served.srv
        # exp has a one-second resolution: pick the next whole second at least 500 ms away.
        now = srv.clock()
        exp_s = -(-(now + 500) // 1000)
        token = mint(srv.settings, creator="cr", ttl_s=1, now=(exp_s - 1) * 1000)
        async with (
            raw_client(srv, token) as lapsing,
            raw_client(srv, srv.token(creator="cr")) as staying,
        ):
            await lapsing.send(Ping(nonce=1))
            assert (await lapsing.expect(Pong)).nonce == 1  # open before exp
            messages, code = await lapsing.until_closed()
            assert code == CloseCode.TOKEN_EXPIRED
            assert srv.clock() >= exp_s * 1000
            errors = [m for m in messages if isinstance(m, Error)]
            assert [(e.code, e.retryable) for e in errors] == [(Code.TOKEN_EXPIRED, True)]
            assert messages[-1] == errors[0]
            await staying.send(Ping(nonce=2))
            assert (await staying.expect(Pong)).nonce == 2


async def test_shutdown_closes_sessions_with_going_away(
    make_settings: Callable[..., Settings],
) -> None:
    """Stopping the server closes a fallback session with the retryable going-away code."""
    async with (
        serving(make_settings()) as served,
        raw_client(served.srv, served.srv.token(creator="cr")) as raw,
    ):
        await raw.send(Ping(nonce=1))
        await raw.expect(Pong)
        served.uv.should_exit = True
        _, code = await raw.until_closed()
        assert code == CloseCode.GOING_AWAY
