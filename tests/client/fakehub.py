"""A small fake hub speaking the protocol on loopback, and helpers for the client SDK's tests.

Nothing sleeps: the fake server records what it receives and tests await those
records, the client's futures and its subscriptions. Reconnect delays go
through an injected sleep that records them and returns at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from client import Client
from protocol.codec import Codec, codec_for
from protocol.commands import BagPin, Command
from protocol.errors import CloseCode, Code
from protocol.events import ProductPinned
from protocol.messages import (
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
