"""The async client's public face: :class:`Client`, its lifecycle and its requests.

A :class:`Client` opens a WebSocket to ``ws://host:port/ws`` with one of the
protocol v1 subprotocols, authenticates with ``hello`` and keeps going across
connections: when one drops with a retryable close (4000-4499, or lost without
a close frame) it reconnects with bounded exponential backoff, says ``hello``
again, resumes every joined room from the last ``seq`` it saw and resends every
command not yet acknowledged, with the same ``command_id`` so the server
applies it at most once (H1). Events are delivered once each, in ``seq``
order: duplicates are dropped and a gap triggers a resume.

A terminal close (4500-4999), an ``access_changed`` with ``terminal`` set, or
a reconnect that gives up ends the client: every pending call fails with
:class:`~client.errors.ClientClosed` (also named ``SessionClosed``). An
``access_changed`` that is not terminal (an agency's access to one creator
ended, decision 0015) ends only that creator's room: its stream raises
:class:`~client.errors.AccessEnded`, and the room is no longer resumed.

Underneath: :class:`~client.options.ClientOptions` (how it connects, frozen),
:class:`~client.state.ClientState` (pending requests, rooms and subscriptions;
no I/O) and :class:`~client.driver.Driver` (the connection and the reconnect
loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from client.backoff import Backoff
from client.commands import make_command, with_command_id
from client.driver import Driver
from client.errors import CLIENT_CLOSED, ClientClosed, ClientError
from client.options import (
    DEFAULT_CLIENT_NAME,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_TIMEOUT,
    ClientOptions,
    Sleep,
    TokenSource,
)
from client.state import ClientState
from client.streams import Subscription, every, room_stream
from protocol.codec import Format
from protocol.commands import Command
from protocol.messages import (
    Ack,
    BagList,
    BagListing,
    Event,
    Join,
    Leave,
    Ping,
    Refresh,
    RoomCommand,
    ServerMessage,
    Snapshot,
    Welcome,
)

__all__ = ["Client"]

C = TypeVar("C", bound=Command)


class Client:
    """A livepilot client, reconnecting and resuming until closed.

    Use it as an async context manager and call :meth:`connect` once::

        async with Client() as client:
            await client.connect("ws://hub:8080/ws", token)
            snapshot = await client.join("room-1")
            ack = await client.send(client.command(BagPin, room="room-1", product_id="p1"))
            async for message in client.events("room-1"):
                ...

    The keyword arguments are the fields of :class:`~client.options.ClientOptions`,
    which says what each does; :meth:`connect` sets the others (:attr:`options`).
    """

    def __init__(
        self,
        *,
        client_name: str = DEFAULT_CLIENT_NAME,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        request_timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._options = ClientOptions(
            client_name=client_name,
            sleep=sleep,
            rand=rand,
            open_timeout=open_timeout,
            request_timeout=request_timeout,
            heartbeat=heartbeat,
            max_frame_bytes=max_frame_bytes,
            connect_options=connect_options or {},
        )
        self._state = ClientState()
        self._driver: Driver | None = None

    # --- lifecycle ----------------------------------------------------------

    async def connect(
        self,
        url: str,
        token: TokenSource,
        *,
        format: Format = "json",
        reconnect: bool = True,
        backoff: Backoff | None = None,
    ) -> Welcome:
        """Connect, say hello, return the server's :class:`Welcome`.

        ``token`` is a token or an async callable returning a fresh one, called on
        every (re)connect. ``format`` picks the subprotocol (``livepilot.v1.json``
        in text frames, or ``livepilot.v1.msgpack`` in binary frames).
        ``reconnect=False`` ends the client at the first lost connection instead
        of reconnecting with ``backoff``.

        Raises :class:`ClientClosed` when the first connection cannot be opened
        or the server refuses the hello (``retryable`` says whether trying again
        later may help); the client is closed then. A client connects once.
        """
        if self._driver is not None:
            raise RuntimeError("a Client connects once; create a new one")
        if isinstance(token, str) and not token:
            raise ValueError("token must not be empty")
        self._options = dataclasses.replace(
            self._options,
            url=url,
            format=format,
            reconnect=reconnect,
            backoff=backoff if backoff is not None else Backoff(),
        )
        self._driver = Driver(self._options, token, self._state)
        return await self._driver.start()

    async def close(self) -> None:
        """End the client: close the connection, fail pending calls, end subscriptions.

        Pending calls fail with :class:`ClientClosed` (code 1000); subscriptions
        stop iterating. Closing twice is harmless.
        """
        self._state.finish(
            ClientClosed(CLIENT_CLOSED, "closed by the client", retryable=False), normal=True
        )
        if self._driver is not None:
            await self._driver.close()

    async def wait_closed(self) -> ClientClosed:
        """Wait until the client ends, and return why it ended."""
        return await self._state.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open_driver(self) -> Driver:
        """The driver, once connected and until the client ends; raises otherwise."""
        if self._state.closed is not None:
            raise self._state.closed
        if self._driver is None:
            raise ClientError("call connect() first")
        return self._driver

    # --- state --------------------------------------------------------------

    @property
    def options(self) -> ClientOptions:
        """How this client connects; ``connect`` fills in the url, format and backoff."""
        return self._options

    @property
    def welcome(self) -> Welcome | None:
        """The last :class:`Welcome` received (a reconnect gets a new one)."""
        return None if self._driver is None else self._driver.welcome

    @property
    def connected(self) -> bool:
        """Whether a connection is open and the client restored on it right now."""
        return self._driver is not None and self._driver.ready

    @property
    def closed(self) -> ClientClosed | None:
        """Why the client ended, or None while it is going on."""
        return self._state.closed

    @property
    def format(self) -> Format:
        """The negotiated message format."""
        return self._options.format

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms joined (or being joined)."""
        return frozenset(self._state.rooms)

    @property
    def pending_commands(self) -> int:
        """How many commands await their answer (they are resent on reconnect)."""
        return len(self._state.pending)

    def last_seq(self, room: str) -> int | None:
        """Seq of the last event of ``room`` delivered, None if the room is not joined."""
        joined = self._state.rooms.get(room)
        return None if joined is None else joined.last_seq

    # --- streams ------------------------------------------------------------

    def messages(self) -> Subscription[ServerMessage]:
        """Every message received from now on, in order.

        Events appear once each, in ``seq`` order per room: the client drops
        duplicates and out-of-order events (and resumes to fill a gap).
        """
        return self._state.subs.subscribe(every, self._state.closed)

    def events(self, room: str) -> Subscription[Event | Snapshot]:
        """The events of ``room`` from now on, once each and in ``seq`` order.

        A :class:`Snapshot` in the stream replaces the room's state: the answer to
        a join made after subscribing, or ``reason="history_truncated"`` when a
        resume could not be served from history. When access to the room's
        creator ends, the stream raises :class:`~client.errors.AccessEnded` after
        its last event and the room is left; other rooms' streams go on.
        """
        return self._state.subs.subscribe(room_stream(room), self._state.closed, room)

    # --- requests -----------------------------------------------------------

    @staticmethod
    def command(kind: type[C], /, **fields: Any) -> C:
        """Build a room command with a fresh ``command_id``: see :func:`make_command`."""
        return make_command(kind, **fields)

    async def join(self, room: str) -> Snapshot:
        """Join ``room`` and return its :class:`Snapshot`; its events follow.

        Raises :class:`ServerError` if the server answers the join with an access
        or room error, :class:`ClientClosed` if the client ends first, and
        ``TimeoutError`` after the client's ``request_timeout``.
        """
        driver = self._open_driver()
        joined, future = self._state.rooms.begin_join(room)
        try:
            await driver.send_once(Join(room=room), joined.claim_join)
            async with asyncio.timeout(self._options.request_timeout):
                return await asyncio.shield(future)
        finally:
            if self._state.rooms.end_join(joined, future):
                await driver.send_now(Leave(room=room))

    async def leave(self, room: str) -> None:
        """Leave ``room``: its events stop and it is no longer resumed on reconnect."""
        if self._state.rooms.leave(room) and self._driver is not None:
            await self._driver.send_now(Leave(room=room))

    async def send(self, command: RoomCommand) -> Ack:
        """Send a room command and return its :class:`Ack` once the server applied it.

        A command without ``command_id`` (empty) gets a fresh one. Until it is
        answered, the command is resent after every reconnect with the same
        ``command_id``: the server applies it at most once (H1).

        Raises :class:`CommandRefused` when the server refuses it (nothing
        changed; ``retryable`` for transient codes), :class:`InvalidMessage` when
        it would not pass the server's validation, :class:`ClientClosed` when
        the client ends first, and ``TimeoutError`` after the client's
        ``request_timeout``. A command that times out or whose call is
        cancelled is forgotten (not resent); sending it again with the same
        ``command_id`` is safe. Use :meth:`list_bag` for ``BagList``.
        """
        if isinstance(command, BagList):
            raise TypeError("BagList is answered by a BagListing: use list_bag()")
        answer = await self._request(command)
        if not isinstance(answer, Ack):
            raise ClientError(f"expected an ack for {command.command_id}, got {answer!r}")
        return answer

    async def list_bag(
        self,
        room: str,
        *,
        category: str | None = None,
        in_stock: bool | None = None,
    ) -> BagListing:
        """The items of ``room``'s bag matching ``category`` and ``in_stock``, in bag order.

        Raises like :meth:`send`.
        """
        query = make_command(BagList, room=room, category=category, in_stock=in_stock)
        answer = await self._request(query)
        if not isinstance(answer, BagListing):
            raise ClientError(f"expected a bag listing for {query.command_id}, got {answer!r}")
        return answer

    async def _request(self, command: RoomCommand) -> Ack | BagListing:
        driver = self._open_driver()
        command = with_command_id(command)
        driver.validate(command)
        pending = self._state.pending.track(command)
        try:
            await driver.send_once(pending.command, pending.claim)
            async with asyncio.timeout(self._options.request_timeout):
                return await asyncio.shield(pending.future)
        finally:
            self._state.pending.release(pending)

    async def ping(self) -> float:
        """Round-trip a ``ping`` and return the time it took, in seconds.

        While reconnecting, the ping is sent once the connection is restored (the
        time includes the wait). When it returns, every message the server sent
        before its pong has been dispatched.
        """
        driver = self._open_driver()
        nonce, future = self._state.pings.add()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await driver.send_now(Ping(nonce=nonce))  # or on restore
            async with asyncio.timeout(self._options.request_timeout):
                await future
            return loop.time() - started
        finally:
            self._state.pings.forget(nonce)

    async def refresh(self, token: str) -> None:
        """Replace the client's token in-band; reconnects use it too."""
        if not token:
            raise ValueError("token must not be empty")
        driver = self._open_driver()
        driver.token = token
        await driver.send_now(Refresh(token=token))
