"""The client SDK against a small fake hub speaking the session protocol on loopback.

Every test bounds its waits with ``asyncio.timeout``; nothing sleeps: the fake
server records what it receives and tests await those records, the client's
futures and its subscriptions. Reconnect delays go through an injected sleep
that records them and returns at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from client import (
    AccessEnded,
    Backoff,
    Client,
    ClientError,
    CommandRefused,
    InvalidMessage,
    ServerError,
    SessionClosed,
    close_is_retryable,
    connect,
    make_command,
    with_command_id,
)
from protocol.codec import Codec, codec_for
from protocol.commands import BagPin, Command
from protocol.errors import CloseCode, Code
from protocol.events import ProductPinned
from protocol.messages import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    AccessChanged,
    Ack,
    BagList,
    BagListing,
    ClientMessage,
    Error,
    Event,
    Hello,
    Join,
    Leave,
    Limits,
    Ping,
    Pong,
    Refresh,
    Refused,
    Resume,
    Resumed,
    ServerMessage,
    Snapshot,
    Welcome,
)
from protocol.model import Actor, BagItem, RoomState

BOUND = 10.0
"""Seconds any one test may take: a hang fails fast instead of stalling the suite."""
ROOM = "room-1"
CREATOR = "creator-1"
STAFF = Actor(role="staff", id="staff-1", agency="agency-1")
LIMITS = Limits(max_message_bytes=65536, rate_per_s=50.0, burst=100, heartbeat_s=3600.0)
T0 = 1_700_000_000_000

DropMode = Literal["abort", "close"]


def event(seq: int, product_id: str = "p1", command_id: str | None = None) -> Event:
    """A pin event of ROOM at ``seq``."""
    return Event(
        room=ROOM,
        seq=seq,
        at=T0 + seq,
        actor=CREATOR,
        by=STAFF,
        body=ProductPinned(product_id=product_id),
        command_id=command_id,
    )


class FakeHub:
    """A small hub: hello, join, resume over a per-room log, idempotent commands (H1).

    Knobs: ``bad_tokens`` / ``expired_tokens`` close the hello with 4500 / 4003;
    ``reject_hello`` closes every hello from the n-th connection on with a code;
    ``drop_after`` applies a command then drops the connection before acking it;
    ``history_floor`` makes resumes older than it answer with a truncated snapshot;
    ``join_error`` answers joins with an Error; ``silent`` commands are never answered.
    ``push`` sends any message as is.
    """

    def __init__(self) -> None:
        self.url = ""
        self.logs: dict[str, list[Event]] = {ROOM: []}
        self.products = {"p1", "p2", "p3"}
        self.acks: dict[str, Ack] = {}
        self.applied: Counter[str] = Counter()
        self.received: list[tuple[int, ClientMessage]] = []
        self.frames: list[type] = []
        self.conns: list[ServerConnection] = []
        self.codecs: list[Codec] = []
        self.subscribed: dict[str, set[int]] = {}
        self.bad_tokens = {"bad"}
        self.expired_tokens = {"expired"}
        self.reject_hello: tuple[int, int] | None = None
        self.drop_after: dict[str, DropMode] = {}
        self.history_floor = 0
        self.join_error: Error | None = None
        self.silent: set[str] = set()
        self.hello_error: Error | None = None
        self.http_status: int | None = None
        self.limits = LIMITS
        self._changed = asyncio.Condition()

    # --- what tests await ---------------------------------------------------

    async def wait_for(
        self, pred: Callable[[int, ClientMessage], bool]
    ) -> tuple[int, ClientMessage]:
        """The first message received that matches ``pred``, waiting for it if need be."""
        async with self._changed:
            while True:
                for conn, message in self.received:
                    if pred(conn, message):
                        return conn, message
                await self._changed.wait()

    async def wait_connections(self, n: int) -> None:
        """Wait until ``n`` connections were accepted."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.conns) >= n)

    def on(self, conn: int) -> list[ClientMessage]:
        """What connection ``conn`` received, in order."""
        return [m for c, m in self.received if c == conn]

    def with_id(self, command_id: str) -> list[tuple[int, ClientMessage]]:
        """Every command received with ``command_id``, with its connection."""
        return [
            (c, m)
            for c, m in self.received
            if isinstance(m, Command) and m.command_id == command_id
        ]

    # --- what tests do ------------------------------------------------------

    def append(self, room: str, count: int) -> list[Event]:
        """Add events to a room's log without sending them."""
        log = self.logs.setdefault(room, [])
        new = [event(len(log) + i + 1) for i in range(count)]
        log.extend(new)
        return new

    async def push(self, message: ServerMessage, conn: int = -1) -> None:
        """Send a message as is on a connection (the latest by default)."""
        codec = self.codecs[conn]
        await self.conns[conn].send(codec.encode(message), text=not codec.binary)

    async def close(self, code: int, reason: str = "", conn: int = -1) -> None:
        """Close a connection with a close code."""
        await self.conns[conn].close(code, reason)

    # --- the hub ------------------------------------------------------------

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Refuse the handshake with ``http_status`` when it is set."""
        if self.http_status is None:
            return None
        return ws.respond(self.http_status, "refused\n")

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.subprotocol is not None
        codec = codec_for(ws.subprotocol)
        async with self._changed:
            conn = len(self.conns)
            self.conns.append(ws)
            self.codecs.append(codec)
            self._changed.notify_all()
        try:
            await self._session(ws, conn, codec)
        except ConnectionClosed:
            pass
        finally:
            for members in self.subscribed.values():
                members.discard(conn)

    async def _receive(self, ws: ServerConnection, conn: int, codec: Codec) -> ClientMessage:
        raw = await ws.recv()
        self.frames.append(type(raw))
        message = codec.decode_client(raw)
        async with self._changed:
            self.received.append((conn, message))
            self._changed.notify_all()
        return message

    async def _send(self, ws: ServerConnection, codec: Codec, message: ServerMessage) -> None:
        await ws.send(codec.encode(message), text=not codec.binary)

    async def _session(self, ws: ServerConnection, conn: int, codec: Codec) -> None:
        hello = await self._receive(ws, conn, codec)
        assert isinstance(hello, Hello)
        if hello.token in self.bad_tokens:
            await ws.close(CloseCode.BAD_TOKEN, "bad token")
            return
        if hello.token in self.expired_tokens:
            await ws.close(CloseCode.TOKEN_EXPIRED, "token expired")
            return
        if self.hello_error is not None:
            await self._send(ws, codec, self.hello_error)
            return
        if self.reject_hello is not None and conn >= self.reject_hello[0]:
            await ws.close(self.reject_hello[1], "rejected")
            return
        await self._send(
            ws, codec, Welcome(session_id=f"session-{conn}", limits=self.limits, actor=STAFF)
        )
        while True:
            message = await self._receive(ws, conn, codec)
            if not await self._handle(ws, conn, codec, message):
                return

    async def _handle(
        self, ws: ServerConnection, conn: int, codec: Codec, message: ClientMessage
    ) -> bool:
        """Answer one message; False when the connection was dropped."""
        if isinstance(message, Join):
            if self.join_error is not None:
                await self._send(ws, codec, self.join_error)
                return True
            log = self.logs.setdefault(message.room, [])
            self.subscribed.setdefault(message.room, set()).add(conn)
            state = RoomState(room=message.room, creator=CREATOR, seq=len(log))
            await self._send(ws, codec, Snapshot(room=message.room, seq=len(log), state=state))
        elif isinstance(message, Resume):
            log = self.logs.setdefault(message.room, [])
            self.subscribed.setdefault(message.room, set()).add(conn)
            if message.last_seq < self.history_floor:
                state = RoomState(room=message.room, creator=CREATOR, seq=len(log))
                await self._send(
                    ws,
                    codec,
                    Snapshot(
                        room=message.room, seq=len(log), state=state, reason="history_truncated"
                    ),
                )
            else:
                for missed in log[message.last_seq :]:
                    await self._send(ws, codec, missed)
                await self._send(ws, codec, Resumed(room=message.room, seq=len(log)))
        elif isinstance(message, Leave):
            self.subscribed.get(message.room, set()).discard(conn)
        elif isinstance(message, Ping):
            await self._send(ws, codec, Pong(nonce=message.nonce))
        elif isinstance(message, BagList):
            items = [BagItem(product_id=p) for p in sorted(self.products)]
            await self._send(
                ws, codec, BagListing(command_id=message.command_id, room=message.room, items=items)
            )
        elif isinstance(message, BagPin):
            return await self._pin(ws, conn, codec, message)
        return True

    async def _pin(self, ws: ServerConnection, conn: int, codec: Codec, pin: BagPin) -> bool:
        if pin.command_id in self.silent:
            return True
        known = self.acks.get(pin.command_id)
        if known is not None:  # H1: applied once, answered with the same ack
            await self._send(ws, codec, known)
            return True
        if pin.product_id.startswith("busy"):
            await self._send(
                ws, codec, Refused(command_id=pin.command_id, code=Code.OVERLOADED, message="busy")
            )
            return True
        if pin.product_id not in self.products:
            await self._send(
                ws,
                codec,
                Refused(
                    command_id=pin.command_id,
                    code=Code.NOT_FOUND,
                    message=f"no product {pin.product_id}",
                ),
            )
            return True
        log = self.logs.setdefault(pin.room, [])
        applied = event(len(log) + 1, pin.product_id, pin.command_id)
        log.append(applied)
        self.applied[pin.command_id] += 1
        self.acks[pin.command_id] = Ack(command_id=pin.command_id, seq=applied.seq)
        mode = self.drop_after.pop(pin.command_id, None)
        if mode == "abort":
            ws.transport.abort()
            return False
        if mode == "close":
            await ws.close(CloseCode.GOING_AWAY, "going away")
            return False
        for member in list(self.subscribed.get(pin.room, ())):
            await self.push(applied, member)
        await self._send(ws, codec, self.acks[pin.command_id])
        return True


class Sleeps:
    """The injected backoff sleep: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    fake = FakeHub()
    subprotocols = [Subprotocol(SUBPROTOCOL_JSON), Subprotocol(SUBPROTOCOL_MSGPACK)]
    async with serve(
        fake.handler,
        "127.0.0.1",
        0,
        subprotocols=subprotocols,
        process_request=fake.process_request,
        close_timeout=1,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/ws"
        yield fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def new_client(sleeps: Sleeps, **options: Any) -> Client:
    """A client wired for tests: recorded backoff sleeps, no jitter, no proxy, no heartbeat."""
    options.setdefault("request_timeout", BOUND)
    options.setdefault("heartbeat", False)
    return Client(sleep=sleeps, rand=lambda: 0.0, connect_options={"proxy": None}, **options)


async def drain(sub: Any) -> list[Any]:
    """Everything left in a subscription, closing it."""
    sub.close()
    return [m async for m in sub]


async def settle(client: Client) -> None:
    """Wait until the client dispatched everything the hub sent before now (a ping's pong)."""
    await client.ping()


# --- session ------------------------------------------------------------------------------


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


async def test_connect_function_is_a_context_manager(hub: FakeHub, sleeps: Sleeps) -> None:
    """connect() opens a client for an async with block and closes it after."""
    async with asyncio.timeout(BOUND):
        async with connect(
            hub.url, "good", sleep=sleeps, heartbeat=False, connect_options={"proxy": None}
        ) as client:
            assert client.connected
        assert client.closed is not None
        assert client.closed.code == 1000
        awaited = await connect(hub.url, "good", connect_options={"proxy": None})
        assert awaited.connected
        await awaited.close()


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


async def test_heartbeat_pings_within_the_limit(hub: FakeHub, sleeps: Sleeps) -> None:
    """With heartbeat on, the client pings twice per limits.heartbeat_s."""
    hub.limits = Limits(max_message_bytes=65536, rate_per_s=50.0, burst=100, heartbeat_s=0.02)
    async with asyncio.timeout(BOUND), new_client(sleeps, heartbeat=True) as client:
        await client.connect(hub.url, "good")
        await hub.wait_for(lambda _, m: m == Ping(nonce=0))


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


# --- reconnect, resume and resend ---------------------------------------------------------


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
        with pytest.raises(SessionClosed):
            await pending
        with pytest.raises(SessionClosed):
            await events.get()
        await client.close()


async def test_no_reconnect_when_disabled(hub: FakeHub, sleeps: Sleeps) -> None:
    """With reconnect=False a retryable close ends the session, marked retryable."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good", reconnect=False)
        await hub.close(CloseCode.GOING_AWAY, "bye")
        closed = await client.wait_closed()
        assert (closed.code, closed.reason, closed.retryable) == (4000, "bye", True)
        assert sleeps.delays == []
        assert len(hub.conns) == 1


# --- terminal -----------------------------------------------------------------------------


async def test_bad_token_fails_connect(hub: FakeHub, sleeps: Sleeps) -> None:
    """A hello closed with 4500 raises SessionClosed (not retryable) from connect()."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(SessionClosed) as raised:
            await client.connect(hub.url, "bad")
        assert raised.value.code == CloseCode.BAD_TOKEN
        assert raised.value.retryable is False
        assert client.closed is raised.value
        with pytest.raises(SessionClosed):
            await client.join(ROOM)
        assert sleeps.delays == []
        assert len(hub.conns) == 1


async def test_hello_answered_by_error_fails_connect(hub: FakeHub, sleeps: Sleeps) -> None:
    """A hello answered by an Error instead of a welcome raises SessionClosed with its code."""
    hub.hello_error = Error(code=Code.BAD_TOKEN, message="forged")
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(SessionClosed) as raised:
            await client.connect(hub.url, "good")
        assert (raised.value.code, raised.value.reason) == (Code.BAD_TOKEN, "forged")
        assert raised.value.retryable is False


@pytest.mark.parametrize(("status", "retryable"), [(403, False), (503, True)])
async def test_refused_handshake_fails_connect(
    hub: FakeHub, sleeps: Sleeps, status: int, retryable: bool
) -> None:
    """An HTTP refusal of the WebSocket handshake raises SessionClosed with the status."""
    hub.http_status = status
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(SessionClosed) as raised:
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
    """A first hello closed with 4003 raises SessionClosed marked retryable."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        with pytest.raises(SessionClosed) as raised:
            await client.connect(hub.url, "expired")
        assert raised.value.code == CloseCode.TOKEN_EXPIRED
        assert raised.value.retryable is True


async def test_terminal_close_fails_pending_and_does_not_reconnect(
    hub: FakeHub, sleeps: Sleeps
) -> None:
    """A 4500-4999 close fails the pending command and the streams with SessionClosed;
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
        with pytest.raises(SessionClosed) as raised:
            await pending
        assert raised.value.code == CloseCode.BAD_TOKEN
        assert raised.value.reason == "forged"
        assert raised.value.retryable is False
        assert await client.wait_closed() is raised.value
        with pytest.raises(SessionClosed):
            await events.get()
        with pytest.raises(SessionClosed):
            await client.send(client.command(BagPin, room=ROOM, product_id="p2"))
        assert sleeps.delays == []
        assert len(hub.conns) == 1
        assert not client.connected


async def test_access_changed_terminal_ends_the_session(hub: FakeHub, sleeps: Sleeps) -> None:
    """AccessChanged(terminal=True) is delivered, then the session ends: no reconnect."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        messages = client.messages()
        revoked = AccessChanged(creator=CREATOR, agency="agency-1", status="revoked")
        await hub.push(
            AccessChanged(creator=CREATOR, agency="agency-1", status="granted", terminal=False)
        )
        await hub.push(revoked)
        closed = await client.wait_closed()
        assert closed.code == CloseCode.ACCESS_REVOKED
        assert closed.retryable is False
        assert await messages.get() == AccessChanged(
            creator=CREATOR, agency="agency-1", status="granted", terminal=False
        )
        assert await messages.get() == revoked
        with pytest.raises(SessionClosed):
            await messages.get()
        assert sleeps.delays == []
        assert len(hub.conns) == 1
        with pytest.raises(SessionClosed):
            await client.messages().get()


async def test_access_ended_for_one_room_ends_that_stream_only(
    hub: FakeHub, sleeps: Sleeps
) -> None:
    """A non-terminal AccessChanged naming a room ends that room's stream with AccessEnded
    after its events, forgets the room (not resumed after a reconnect) and keeps the
    session and the other rooms going."""
    # R6 R9 (decision 0015: an access end touches that creator's room only)
    other = "room-2"
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        mine, theirs = client.events(ROOM), client.events(other)
        await client.join(ROOM)
        await client.join(other)
        await hub.push(event(1))
        await hub.push(AccessChanged(creator=CREATOR, agency="agency-1", status="expired",
                                     terminal=False, room=ROOM))
        assert isinstance(await mine.get(), Snapshot)
        assert await mine.get() == event(1)  # what came before the end is delivered first
        with pytest.raises(AccessEnded) as ended:
            await mine.get()
        assert (ended.value.room, ended.value.creator, ended.value.status) == (
            ROOM, CREATOR, "expired")
        assert client.rooms == frozenset({other})
        assert client.last_seq(ROOM) is None
        # The other room keeps streaming on the same session...
        later = Event(room=other, seq=1, at=T0, actor=CREATOR, by=STAFF,
                      body=ProductPinned(product_id="p1"))
        await hub.push(later)
        assert isinstance(await theirs.get(), Snapshot)
        assert await theirs.get() == later
        assert client.closed is None
        # ...and a reconnect restores it alone.
        await hub.close(CloseCode.GOING_AWAY)
        await hub.wait_for(lambda c, m: c == 1 and isinstance(m, Resume))
        await settle(client)
        assert [m for m in hub.on(1) if isinstance(m, Join | Resume)] == [
            Resume(room=other, last_seq=1)]
        with pytest.raises(AccessEnded):  # the stream stays ended
            await mine.get()


# --- event order --------------------------------------------------------------------------


async def test_events_deduplicated_and_gap_resumed(hub: FakeHub, sleeps: Sleeps) -> None:
    """Duplicates (seq <= last) are dropped; a gap (seq > last + 1) sends one resume
    from the last seq, and the replay fills it in order."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        e = hub.append(ROOM, 5)
        for seq in (1, 2, 2, 1, 4, 5, 3):
            await hub.push(e[seq - 1])
        await hub.wait_for(lambda _, m: isinstance(m, Resume))
        delivered = [await events.get() for _ in range(5)]
        assert [m.seq for m in delivered] == [1, 2, 3, 4, 5]
        assert delivered == e
        await hub.push(e[4])  # a late duplicate
        await settle(client)
        assert await drain(events) == []
        assert [m for _, m in hub.received if isinstance(m, Resume)] == [
            Resume(room=ROOM, last_seq=2)
        ]
        assert client.last_seq(ROOM) == 5
        assert sleeps.delays == []


async def test_history_truncated_snapshot_replaces_state(hub: FakeHub, sleeps: Sleeps) -> None:
    """A resume history cannot serve is answered by a snapshot: it reaches the room
    stream and resets last_seq."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        hub.append(ROOM, 6)
        hub.history_floor = 3
        await hub.close(CloseCode.SLOW_CONSUMER)
        snapshot = await events.get()
        assert isinstance(snapshot, Snapshot)
        assert (snapshot.seq, snapshot.reason) == (6, "history_truncated")
        assert client.last_seq(ROOM) == 6
        assert hub.on(1)[1:] == [Resume(room=ROOM, last_seq=0)]


async def test_events_of_other_rooms_are_not_mixed_in(hub: FakeHub, sleeps: Sleeps) -> None:
    """events(room) carries only that room; events of rooms not joined are dropped."""
    async with asyncio.timeout(BOUND), new_client(sleeps) as client:
        await client.connect(hub.url, "good")
        await client.join(ROOM)
        events = client.events(ROOM)
        messages = client.messages()
        stray = Event(
            room="room-2",
            seq=1,
            at=T0,
            actor=CREATOR,
            by=STAFF,
            body=ProductPinned(product_id="p1"),
        )
        await hub.push(stray)
        await hub.push(hub.append(ROOM, 1)[0])
        assert (await events.get()).seq == 1
        await settle(client)
        assert not any(isinstance(m, Event) and m.room == "room-2" for m in await drain(messages))


# --- formats ------------------------------------------------------------------------------


async def test_msgpack_session(hub: FakeHub, sleeps: Sleeps) -> None:
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


# --- pieces -------------------------------------------------------------------------------


def test_backoff_grows_caps_and_jitters() -> None:
    """Backoff doubles from initial, caps at max_delay and scales by the jitter draw."""
    backoff = Backoff(initial=0.5, factor=2.0, max_delay=4.0, jitter=0.5)
    assert [backoff.delay(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(2, 0.999999) == pytest.approx(1.0, rel=1e-5)
    assert backoff.delay(10_000, 0.0) == 4.0
    full = Backoff(initial=1.0, jitter=1.0)
    assert full.delay(0, 0.75) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"factor": 0.5}, {"jitter": 1.5}, {"max_attempts": 0}],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    """Negative delays, shrinking factors, jitter outside [0, 1], zero attempts are refused."""
    with pytest.raises(ValueError, match="must"):
        Backoff(**kwargs)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (4000, True),
        (4003, True),
        (4499, True),
        (4500, False),
        (4501, False),
        (4999, False),
        (1006, True),
        (1001, True),
        (1011, True),
        (1000, True),
        (1002, False),
        (1008, False),
    ],
)
def test_close_is_retryable(code: int, retryable: bool) -> None:
    """4000-4499 and connection losses reconnect; 4500-4999 and protocol faults do not."""
    assert close_is_retryable(code) is retryable


def test_command_helpers_set_ids() -> None:
    """make_command and with_command_id give fresh ids and keep given ones."""
    pin = make_command(BagPin, room=ROOM, product_id="p1")
    other = make_command(BagPin, room=ROOM, product_id="p1")
    assert pin.command_id != other.command_id
    assert make_command(BagPin, command_id="mine", room=ROOM, product_id="p1").command_id == "mine"
    assert with_command_id(pin) is pin
    filled = with_command_id(BagPin(command_id="", room=ROOM, product_id="p1"))
    assert len(filled.command_id) == 32
    assert int(filled.command_id, 16) >= 0


async def test_calls_before_connect_fail() -> None:
    """Using a client before connect() raises ClientError; a second connect() is refused."""
    client = Client(heartbeat=False)
    with pytest.raises(ClientError):
        await client.join(ROOM)
    with pytest.raises(ValueError, match="empty"):
        await client.connect("ws://127.0.0.1:9/ws", "")
    await client.close()


async def test_unreachable_server_fails_connect(sleeps: Sleeps) -> None:
    """connect() to a closed port raises SessionClosed (1006, retryable) without retrying."""
    async with asyncio.timeout(BOUND):
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = new_client(sleeps)
        with pytest.raises(SessionClosed) as raised:
            await client.connect(f"ws://127.0.0.1:{port}/ws", "good")
        assert (raised.value.code, raised.value.retryable) == (1006, True)
        assert sleeps.delays == []
        await client.close()


async def test_close_ends_streams_and_fails_pending(hub: FakeHub, sleeps: Sleeps) -> None:
    """close() stops iteration quietly and fails unanswered commands with SessionClosed(1000)."""
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
        with pytest.raises(SessionClosed) as raised:
            await pending
        assert raised.value.code == 1000
        assert [m async for m in messages] == []
        assert (await client.wait_closed()).code == 1000
        assert sleeps.delays == []
        assert len(hub.conns) == 1
