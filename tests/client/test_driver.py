"""The connection driver against the fake hub: hello, reconnect, restore, terminal closes.

Also the heartbeat and both formats. Every test bounds its waits with
``asyncio.timeout``; backoff sleeps are recorded, not slept.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from client import Backoff, Client, ClientClosed, make_command
from protocol.commands import BagPin
from protocol.errors import CloseCode, Code
from protocol.messages import (
    SUBPROTOCOL_MSGPACK,
    Ack,
    Error,
    Hello,
    Join,
    Limits,
    Ping,
    Refresh,
    Resume,
)
from tests.client.fakehub import (
    BOUND,
    ROOM,
    DropMode,
    FakeHub,
    Sleeps,
    drain,
    event,
    new_client,
    settle,
)


async def test_heartbeat_pings_within_the_limit(hub: FakeHub, sleeps: Sleeps) -> None:
    """With heartbeat on, the client pings twice per limits.heartbeat_s."""
    hub.limits = Limits(max_message_bytes=65536, rate_per_s=50.0, burst=100, heartbeat_s=0.02)
    async with asyncio.timeout(BOUND), new_client(sleeps, heartbeat=True) as client:
        await client.connect(hub.url, "good")
        await hub.wait_for(lambda _, m: m == Ping(nonce=0))


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_drop_before_ack_resumes_and_resends_same_id(
    hub: FakeHub, sleeps: Sleeps, mode: DropMode
) -> None:
    """A connection lost after the hub applied a command, before its ack: the client
    reconnects, resumes from its last seq, resends the command with the same id and
    gets the ack once; the hub applied it once; the event is delivered once."""
    hub.append(ROOM, 2)
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good", backoff=Backoff(initial=0.25, jitter=0.0))
        await client.join(ROOM)
        events = client.events(ROOM)
        messages = client.messages()
        first = client.command(BagPin, room=ROOM, product_id="p1")
        second = client.command(BagPin, room=ROOM, product_id="p3")
        hub.drop_after[first.command_id] = mode

        sent_first = asyncio.create_task(client.send(first))
        await hub.wait_for(lambda c, m: c == 0 and m == first)
        ack_second = await client.send(second)  # sent while the first one is in limbo
        ack_first = await sent_first

        assert ack_first == Ack(command_id=first.command_id, seq=3)
        assert ack_second == Ack(command_id=second.command_id, seq=4)
        assert hub.applied == Counter({first.command_id: 1, second.command_id: 1})
        assert len(hub.conns) == 2
        assert sleeps.delays == [0.25]
        assert hub.on(1) == [
            Hello(token="good", client="livepilot-python"),
            Resume(room=ROOM, last_seq=2),
            first,
            second,
        ]
        assert [c for c, _ in hub.with_id(first.command_id)] == [0, 1]
        assert await events.get() == event(3, "p1", first.command_id)
        assert await events.get() == event(4, "p3", second.command_id)
        await settle(client)
        assert client.last_seq(ROOM) == 4
        assert client.welcome is not None
        assert client.welcome.session_id == "session-1"
        assert await drain(events) == []
        acks = [m for m in await drain(messages) if isinstance(m, Ack)]
        assert acks == [ack_first, ack_second]


async def test_join_in_flight_is_resent_after_reconnect(hub: FakeHub, sleeps: Sleeps) -> None:
    """A join not answered before the connection drops is sent again on the new one."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        hub.join_error = Error(code=Code.OVERLOADED, message="ignored")  # retryable: no answer
        joining = asyncio.create_task(client.join(ROOM))
        await hub.wait_for(lambda c, m: c == 0 and isinstance(m, Join))
        hub.join_error = None
        await hub.close(CloseCode.GOING_AWAY)
        snapshot = await joining
        assert snapshot.seq == 0
        assert hub.on(1)[1:] == [Join(room=ROOM)]


async def test_token_source_is_called_on_every_connect(hub: FakeHub, sleeps: Sleeps) -> None:
    """A token callable gives a fresh token to each hello: an expired one is replaced."""
    tokens = iter(["first", "second"])

    async def token() -> str:
        return next(tokens)

    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, token)
        await hub.close(CloseCode.TOKEN_EXPIRED, "token expired")
        await hub.wait_for(lambda c, m: c == 1 and isinstance(m, Hello))
        await settle(client)
        assert [m for _, m in hub.received if isinstance(m, Hello)] == [
            Hello(token="first", client="livepilot-python"),
            Hello(token="second", client="livepilot-python"),
        ]


async def test_reconnect_gives_up_after_max_attempts(hub: FakeHub, sleeps: Sleeps) -> None:
    """Retryable failures back off exponentially (injected sleep) and stop at max_attempts."""
    backoff = Backoff(initial=1.0, factor=2.0, max_delay=3.0, jitter=0.5, max_attempts=4)
    async with asyncio.timeout(BOUND):
        client = Client(
            sleep=sleeps, rand=lambda: 0.5, heartbeat=False, connect_options={"proxy": None}
        )
        await client.connect(hub.url, "good", backoff=backoff)
        await client.join(ROOM)
        events = client.events(ROOM)
        pin = client.command(BagPin, room=ROOM, product_id="p1")
        hub.silent.add(pin.command_id)
        pending = asyncio.create_task(client.send(pin))
        await hub.wait_for(lambda _, m: m == pin)
        hub.reject_hello = (1, CloseCode.OVERLOADED)
        await hub.close(CloseCode.GOING_AWAY)
        closed = await client.wait_closed()
        assert closed.code == CloseCode.OVERLOADED
        assert closed.retryable
        assert "gave up after 4" in closed.reason
        assert sleeps.delays == [0.75, 1.5, 2.25, 2.25]
        assert len(hub.conns) == 5
        with pytest.raises(ClientClosed):
            await pending
        with pytest.raises(ClientClosed):
            await events.get()
        await client.close()


async def test_no_reconnect_when_disabled(hub: FakeHub, sleeps: Sleeps) -> None:
    """With reconnect=False a retryable close ends the client, marked retryable."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good", reconnect=False)
        await hub.close(CloseCode.GOING_AWAY, "bye")
        closed = await client.wait_closed()
        assert (closed.code, closed.reason, closed.retryable) == (4000, "bye", True)
        assert sleeps.delays == []
        assert len(hub.conns) == 1


async def test_bad_token_fails_connect(hub: FakeHub, sleeps: Sleeps) -> None:
    """A hello closed with 4500 raises ClientClosed (not retryable) from connect()."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(ClientClosed) as raised:
            await client.connect(hub.url, "bad")
        assert raised.value.code == CloseCode.BAD_TOKEN
        assert raised.value.retryable is False
        assert client.closed is raised.value
        with pytest.raises(ClientClosed):
            await client.join(ROOM)
        assert sleeps.delays == []
        assert len(hub.conns) == 1


async def test_hello_answered_by_error_fails_connect(hub: FakeHub, sleeps: Sleeps) -> None:
    """A hello answered by an Error instead of a welcome raises ClientClosed with its code."""
    hub.hello_error = Error(code=Code.BAD_TOKEN, message="forged")
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(ClientClosed) as raised:
            await client.connect(hub.url, "good")
        assert (raised.value.code, raised.value.reason) == (Code.BAD_TOKEN, "forged")
        assert raised.value.retryable is False


@pytest.mark.parametrize(("status", "retryable"), [(403, False), (503, True)])
async def test_refused_handshake_fails_connect(
    hub: FakeHub, sleeps: Sleeps, status: int, retryable: bool
) -> None:
    """An HTTP refusal of the WebSocket handshake raises ClientClosed with the status."""
    hub.http_status = status
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(ClientClosed) as raised:
            await client.connect(hub.url, "good")
        assert (raised.value.code, raised.value.retryable) == (status, retryable)


async def test_token_expired_error_refreshes_from_the_source(hub: FakeHub, sleeps: Sleeps) -> None:
    """An Error 503 token_expired makes a client with a token source send refresh."""
    tokens = iter(["first", "second"])

    async def token() -> str:
        return next(tokens)

    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, token)
        await hub.push(Error(code=Code.TOKEN_EXPIRED, message="expired", retryable=True))
        await hub.wait_for(lambda _, m: m == Refresh(token="second"))
        assert client.connected


async def test_expired_token_fails_connect_as_retryable(hub: FakeHub, sleeps: Sleeps) -> None:
    """A first hello closed with 4003 raises ClientClosed marked retryable."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(ClientClosed) as raised:
            await client.connect(hub.url, "expired")
        assert raised.value.code == CloseCode.TOKEN_EXPIRED
        assert raised.value.retryable is True


async def test_terminal_close_fails_pending_and_does_not_reconnect(
    hub: FakeHub, sleeps: Sleeps
) -> None:
    """A 4500-4999 close fails the pending command and the streams with ClientClosed;
    the client does not reconnect."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        pin = make_command(BagPin, room=ROOM, product_id="p1")
        hub.silent.add(pin.command_id)
        pending = asyncio.create_task(client.send(pin))
        await hub.wait_for(lambda _, m: m == pin)
        await hub.close(CloseCode.BAD_TOKEN, "forged")
        with pytest.raises(ClientClosed) as raised:
            await pending
        assert raised.value.code == CloseCode.BAD_TOKEN
        assert raised.value.reason == "forged"
        assert raised.value.retryable is False
        assert await client.wait_closed() is raised.value
        with pytest.raises(ClientClosed):
            await events.get()
        with pytest.raises(ClientClosed):
            await client.send(client.command(BagPin, room=ROOM, product_id="p2"))
        assert sleeps.delays == []
        assert len(hub.conns) == 1
        assert not client.connected


async def test_unreachable_server_fails_connect(sleeps: Sleeps) -> None:
    """connect() to a closed port raises ClientClosed (1006, retryable) without retrying."""
    async with asyncio.timeout(BOUND):
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = new_client(sleeps)
        with pytest.raises(ClientClosed) as raised:
            await client.connect(f"ws://127.0.0.1:{port}/ws", "good")
        assert (raised.value.code, raised.value.retryable) == (1006, True)
        assert sleeps.delays == []
        await client.close()


async def test_msgpack_connection(hub: FakeHub, sleeps: Sleeps) -> None:
    """format="msgpack" negotiates livepilot.v1.msgpack and speaks binary frames only."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        welcome = await client.connect(hub.url, "good", format="msgpack")
        assert welcome.session_id == "session-0"
        assert client.format == "msgpack"
        assert hub.conns[0].subprotocol == SUBPROTOCOL_MSGPACK
        events = client.events(ROOM)
        snapshot = await client.join(ROOM)
        ack = await client.send(client.command(BagPin, room=ROOM, product_id="p1"))
        assert ack.seq == 1
        assert await events.get() == snapshot
        assert (await events.get()).seq == 1
        assert set(hub.frames) == {bytes}


async def test_msgpack_reconnect_resends(hub: FakeHub, sleeps: Sleeps) -> None:
    """Resume and resend work the same over MessagePack."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good", format="msgpack")
        await client.join(ROOM)
        pin = client.command(BagPin, room=ROOM, product_id="p2")
        hub.drop_after[pin.command_id] = "abort"
        assert await client.send(pin) == Ack(command_id=pin.command_id, seq=1)
        assert hub.applied[pin.command_id] == 1
        assert set(hub.frames) == {bytes}
