"""The Client facade against the fake hub: connect, join, leave, send, list_bag, ping, close.

Every test bounds its waits with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from client import Client, ClientClosed, ClientError, CommandRefused, InvalidMessage, ServerError
from protocol.commands import BagPin
from protocol.errors import Code
from protocol.messages import (
    SUBPROTOCOL_JSON,
    Ack,
    BagList,
    Error,
    Hello,
    Leave,
    Ping,
    Pong,
    Refresh,
    Welcome,
)
from tests.client.fakehub import (
    BOUND,
    LIMITS,
    ROOM,
    STAFF,
    FakeHub,
    Sleeps,
    event,
    new_client,
    settle,
)


async def test_hello_welcome(hub: FakeHub, sleeps: Sleeps) -> None:
    """connect() sends hello with the token first and returns the welcome."""
    async with asyncio.timeout(BOUND), new_client(sleeps, client_name="tests") as client:
        welcome = await client.connect(hub.url, "good")
        assert welcome == Welcome(session_id="session-0", limits=LIMITS, actor=STAFF)
        assert client.welcome == welcome
        assert client.connected
        assert client.format == "json"
        assert hub.on(0) == [Hello(token="good", client="tests")]
        assert hub.conns[0].subprotocol == SUBPROTOCOL_JSON
        assert hub.conns[0].request is not None
        assert "token" not in (hub.conns[0].request.path or "")


async def test_join_returns_snapshot_and_tracks_seq(hub: FakeHub, sleeps: Sleeps) -> None:
    """join() sends join and returns the snapshot; last_seq starts at its seq."""
    hub.append(ROOM, 3)
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        assert client.last_seq(ROOM) is None
        snapshot = await client.join(ROOM)
        assert snapshot.room == ROOM
        assert snapshot.seq == 3
        assert snapshot.reason == "join"
        assert client.last_seq(ROOM) == 3
        assert client.rooms == {ROOM}
        await client.leave(ROOM)
        await hub.wait_for(lambda _, m: isinstance(m, Leave))
        assert client.rooms == frozenset()
        assert client.last_seq(ROOM) is None


async def test_join_answered_by_error_raises_server_error(hub: FakeHub, sleeps: Sleeps) -> None:
    """A join the hub answers with an access Error raises ServerError and is forgotten."""
    hub.join_error = Error(code=Code.NO_ACCESS, message="no access")
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        with pytest.raises(ServerError) as raised:
            await client.join(ROOM)
        assert raised.value.code == Code.NO_ACCESS
        assert client.rooms == frozenset()


async def test_send_returns_ack_and_delivers_the_event(hub: FakeHub, sleeps: Sleeps) -> None:
    """send() resolves with the ack for its command_id; the event arrives on the room stream."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        pin = client.command(BagPin, room=ROOM, product_id="p2")
        assert len(pin.command_id) == 32
        ack = await client.send(pin)
        assert ack == Ack(command_id=pin.command_id, seq=1)
        assert await events.get() == event(1, "p2", pin.command_id)
        assert client.last_seq(ROOM) == 1
        assert client.pending_commands == 0
        assert hub.with_id(pin.command_id) == [(0, pin)]


async def test_send_fills_in_a_missing_command_id(hub: FakeHub, sleeps: Sleeps) -> None:
    """A command built with an empty command_id is sent with a fresh one."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        ack = await client.send(BagPin(command_id="", room=ROOM, product_id="p1"))
        assert len(ack.command_id) == 32
        assert hub.applied == Counter({ack.command_id: 1})


@pytest.mark.parametrize(
    ("product_id", "code", "retryable"),
    [("nope", Code.NOT_FOUND, False), ("busy-1", Code.OVERLOADED, True)],
)
async def test_refused_raises_command_refused(
    hub: FakeHub, sleeps: Sleeps, product_id: str, code: int, retryable: bool
) -> None:
    """A Refused answer raises CommandRefused with its code; retryable follows the range."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        pin = client.command(BagPin, room=ROOM, product_id=product_id)
        with pytest.raises(CommandRefused) as raised:
            await client.send(pin)
        assert raised.value.command_id == pin.command_id
        assert raised.value.code == code
        assert raised.value.retryable is retryable
        assert raised.value.message
        assert client.pending_commands == 0
        assert client.connected


async def test_list_bag_returns_the_listing(hub: FakeHub, sleeps: Sleeps) -> None:
    """list_bag() sends bag_list and returns the BagListing for its command_id."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        listing = await client.list_bag(ROOM, in_stock=True)
        assert [item.product_id for item in listing.items] == ["p1", "p2", "p3"]
        _, query = await hub.wait_for(lambda _, m: isinstance(m, BagList))
        assert isinstance(query, BagList)
        assert query.in_stock is True
        assert query.command_id == listing.command_id
        with pytest.raises(TypeError):
            await client.send(query)


async def test_invalid_command_is_not_sent(hub: FakeHub, sleeps: Sleeps) -> None:
    """A command the hub would reject as malformed raises InvalidMessage and is not sent."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        with pytest.raises(InvalidMessage) as raised:
            await client.send(client.command(BagPin, room="not a valid id", product_id="p1"))
        assert raised.value.code == Code.WRONG_FIELD_TYPE
        await settle(client)
        assert [type(m) for m in hub.on(0)] == [Hello, Ping]


async def test_ping_refresh_and_messages(hub: FakeHub, sleeps: Sleeps) -> None:
    """ping() round-trips; refresh() sends the new token; messages() sees every message."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        messages = client.messages()
        rtt = await client.ping()
        assert rtt >= 0
        await client.refresh("fresher")
        await hub.wait_for(lambda _, m: m == Refresh(token="fresher"))
        snapshot = await client.join(ROOM)
        assert await messages.get() == Pong(nonce=1)
        assert await messages.get() == snapshot


async def test_timed_out_command_is_forgotten_and_can_be_resent(
    hub: FakeHub, sleeps: Sleeps
) -> None:
    """A command unanswered within request_timeout raises TimeoutError and is no longer
    pending; sending it again with the same command_id is applied once."""
    async with asyncio.timeout(BOUND), new_client(sleeps, request_timeout=0.05) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        pin = client.command(BagPin, room=ROOM, product_id="p1")
        hub.silent.add(pin.command_id)
        with pytest.raises(TimeoutError):
            await client.send(pin)
        assert client.pending_commands == 0
        hub.silent.clear()
        assert await client.send(pin) == Ack(command_id=pin.command_id, seq=1)
        assert [c for c, _ in hub.with_id(pin.command_id)] == [0, 0]
        assert hub.applied[pin.command_id] == 1


async def test_calls_before_connect_fail() -> None:
    """Using a client before connect() raises ClientError; a second connect() is refused."""
    client = Client(heartbeat=False)
    with pytest.raises(ClientError):
        await client.join(ROOM)
    with pytest.raises(ValueError, match="empty"):
        await client.connect("ws://127.0.0.1:9/ws", "")
    await client.close()


async def test_close_ends_streams_and_fails_pending(hub: FakeHub, sleeps: Sleeps) -> None:
    """close() stops iteration quietly and fails unanswered commands with ClientClosed(1000)."""
    async with asyncio.timeout(BOUND):
        client = new_client(sleeps)
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        messages = client.messages()
        pin = client.command(BagPin, room=ROOM, product_id="p1")
        hub.silent.add(pin.command_id)
        pending = asyncio.create_task(client.send(pin))
        await hub.wait_for(lambda _, m: m == pin)
        await client.close()
        await client.close()
        with pytest.raises(ClientClosed) as raised:
            await pending
        assert raised.value.code == 1000
        assert [m async for m in messages] == []
        assert (await client.wait_closed()).code == 1000
        assert sleeps.delays == []
        assert len(hub.conns) == 1
