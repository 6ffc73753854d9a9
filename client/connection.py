"""The async client's public face: :class:`Client` and its requests, and :func:`connect`.

A :class:`Client` opens a WebSocket to ``ws://host:port/ws`` with one of the
protocol v1 subprotocols, authenticates with ``hello`` and keeps the session
going: when the connection drops with a retryable close (4000-4499, or lost
without a close frame) it reconnects with bounded exponential backoff, says
``hello`` again, resumes every joined room from the last ``seq`` it saw and
resends every command not yet acknowledged, with the same ``command_id`` so
the server applies it at most once (H1). Events are delivered once each, in
``seq`` order: duplicates are dropped and a gap triggers a resume.

A terminal close (4500-4999), an ``access_changed`` with ``terminal`` set, or
a reconnect that gives up ends the session: every pending call fails with
:class:`~client.errors.SessionClosed`. An ``access_changed`` that is not
terminal (an agency's access to one creator ended, decision 0015) ends only
that creator's room: its stream raises :class:`~client.errors.AccessEnded`,
and the room is no longer resumed.

The machinery underneath: :mod:`client.link` (the connection and the reconnect
loop), :mod:`client.session` (lifecycle, restore, dispatch), with
:mod:`client.pending`, :mod:`client.rooms` and :mod:`client.streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Generator, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar

from websockets.exceptions import ConnectionClosed

from client.backoff import Backoff
from client.commands import make_command, new_command_id, with_command_id
from client.errors import ClientError, SessionClosed
from client.link import Sleep, TokenSource
from client.pending import answer_future
from client.rooms import Room
from client.session import Session
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

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_TIMEOUT",
    "Client",
    "Connecting",
    "Sleep",
    "TokenSource",
    "connect",
    "make_command",
    "new_command_id",
    "with_command_id",
]

C = TypeVar("C", bound=Command)

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a request (join, send, list_bag, ping) waits for its answer by default."""
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
"""Largest server frame accepted: snapshots of big rooms exceed the client limit."""


class Client(Session):
    """One livepilot session, reconnecting and resuming until closed.

    Use it as an async context manager and call :meth:`connect` once::

        async with Client() as client:
            await client.connect("ws://hub:8080/ws", token)
            snapshot = await client.join("room-1")
            ack = await client.send(client.command(BagPin, room="room-1", product_id="p1"))
            async for message in client.events("room-1"):
                ...

    ``sleep`` and ``rand`` drive the reconnect backoff (inject them to test it),
    ``open_timeout`` bounds opening a connection and waiting for ``welcome``;
    ``request_timeout`` bounds how long :meth:`join`, :meth:`send`,
    :meth:`list_bag` and :meth:`ping` wait for their answer (None: no bound;
    wrap a call in ``asyncio.timeout()`` for a tighter one);
    ``heartbeat`` sends a ``ping`` twice per ``limits.heartbeat_s`` so the server
    never sees an idle session, ``max_frame_bytes`` bounds incoming frames and
    ``connect_options`` are passed on to :func:`websockets.asyncio.client.connect`
    (e.g. ``proxy``, ``ssl``).
    """

    def __init__(
        self,
        *,
        client_name: str = "livepilot-python",
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        open_timeout: float | None = 10.0,
        request_timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            client_name=client_name,
            sleep=sleep,
            rand=rand,
            open_timeout=open_timeout,
            request_timeout=request_timeout,
            heartbeat=heartbeat,
            max_frame_bytes=max_frame_bytes,
            connect_options=connect_options,
        )

    # --- state --------------------------------------------------------------

    @property
    def welcome(self) -> Welcome | None:
        """The last :class:`Welcome` received (a reconnect gets a new one)."""
        return self._welcome

    @property
    def connected(self) -> bool:
        """Whether a connection is open and the session restored on it right now."""
        return self._ready and self._closed is None

    @property
    def closed(self) -> SessionClosed | None:
        """Why the session ended, or None while it is going on."""
        return self._closed

    @property
    def format(self) -> Format:
        """The negotiated message format."""
        return self._format

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms joined (or being joined)."""
        return frozenset(self._rooms)

    @property
    def pending_commands(self) -> int:
        """How many commands await their answer (they are resent on reconnect)."""
        return len(self._pending)

    def last_seq(self, room: str) -> int | None:
        """Seq of the last event of ``room`` delivered, None if the room is not joined."""
        joined = self._rooms.get(room)
        return None if joined is None else joined.last_seq

    # --- streams ------------------------------------------------------------

    def messages(self) -> Subscription[ServerMessage]:
        """Every message received from now on, in order.

        Events appear once each, in ``seq`` order per room: the client drops
        duplicates and out-of-order events (and resumes to fill a gap).
        """
        return self._subs.subscribe(every, self._closed)

    def events(self, room: str) -> Subscription[Event | Snapshot]:
        """The events of ``room`` from now on, once each and in ``seq`` order.

        A :class:`Snapshot` in the stream replaces the room's state: the answer to
        a join made after subscribing, or ``reason="history_truncated"`` when a
        resume could not be served from history. When access to the room's
        creator ends, the stream raises :class:`~client.errors.AccessEnded` after
        its last event and the room is left; other rooms' streams go on.
        """
        return self._subs.subscribe(room_stream(room), self._closed, room)

    # --- requests -----------------------------------------------------------

    @staticmethod
    def command(kind: type[C], /, **fields: Any) -> C:
        """Build a room command with a fresh ``command_id``: see :func:`make_command`."""
        return make_command(kind, **fields)

    async def join(self, room: str) -> Snapshot:
        """Join ``room`` and return its :class:`Snapshot`; its events follow.

        Raises :class:`ServerError` if the server answers the join with an access
        or room error, :class:`SessionClosed` if the session ends first, and
        ``TimeoutError`` after the client's ``request_timeout``.
        """
        self._check_open()
        joined = self._rooms.get(room)
        if joined is None:
            joined = self._rooms[room] = Room(room)
        if joined.join is None or joined.join.done():
            joined.join = answer_future()
            joined.join_generation = 0
        future = joined.join
        joined.join_waiters += 1
        try:
            async with self._lock:
                ws = self._ws
                if self._ready and ws is not None and joined.join_generation != self._generation:
                    joined.join_generation = self._generation
                    with contextlib.suppress(ConnectionClosed):
                        await self._send_on(ws, Join(room=room))
            async with asyncio.timeout(self._request_timeout):
                return await asyncio.shield(future)
        finally:
            joined.join_waiters -= 1
            if joined.join_waiters == 0 and not future.done():
                future.cancel()
                if joined.last_seq is None and self._rooms.get(room) is joined:
                    # Never joined: forget it, and tell the server in case it answers late.
                    del self._rooms[room]
                    await self._send_session(Leave(room=room))

    async def leave(self, room: str) -> None:
        """Leave ``room``: its events stop and it is no longer resumed on reconnect."""
        joined = self._rooms.pop(room, None)
        if joined is None:
            return
        if joined.join is not None and not joined.join.done():
            joined.join.set_exception(ClientError(f"left room {room} before joining it"))
        await self._send_session(Leave(room=room))

    async def send(self, command: RoomCommand) -> Ack:
        """Send a room command and return its :class:`Ack` once the server applied it.

        A command without ``command_id`` (empty) gets a fresh one. Until it is
        answered, the command is resent after every reconnect with the same
        ``command_id``: the server applies it at most once (H1).

        Raises :class:`CommandRefused` when the server refuses it (nothing
        changed; ``retryable`` for transient codes), :class:`InvalidMessage` when
        it would not pass the server's validation, :class:`SessionClosed` when
        the session ends first, and ``TimeoutError`` after the client's
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

    async def ping(self) -> float:
        """Round-trip a ``ping`` and return the time it took, in seconds.

        While reconnecting, the ping is sent once the session is restored (the
        time includes the wait). When it returns, every message the server sent
        before its pong has been dispatched.
        """
        self._check_open()
        nonce, future = self._pings.add()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._send_session(Ping(nonce=nonce))  # or on restore
            async with asyncio.timeout(self._request_timeout):
                await future
            return loop.time() - started
        finally:
            self._pings.forget(nonce)

    async def refresh(self, token: str) -> None:
        """Replace the session's token in-band; reconnects use it too."""
        if not token:
            raise ValueError("token must not be empty")
        self._check_open()
        self._token = token
        await self._send_session(Refresh(token=token))


class Connecting:
    """What :func:`connect` returns: await it, or use it as an async context manager."""

    def __init__(self, client: Client, url: str, token: TokenSource, options: dict[str, Any]):
        self._client = client
        self._url = url
        self._token = token
        self._options = options

    async def _connect(self) -> Client:
        await self._client.connect(self._url, self._token, **self._options)
        return self._client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._connect().__await__()

    async def __aenter__(self) -> Client:
        return await self._connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()


def connect(
    url: str,
    token: TokenSource,
    *,
    format: Format = "json",
    reconnect: bool = True,
    backoff: Backoff | None = None,
    client_name: str = "livepilot-python",
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    open_timeout: float | None = 10.0,
    request_timeout: float | None = DEFAULT_TIMEOUT,
    heartbeat: bool = True,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    connect_options: Mapping[str, Any] | None = None,
) -> Connecting:
    """Connect a new :class:`Client`: ``async with connect(url, token) as client: ...``.

    Or ``client = await connect(url, token)`` (then close it). The arguments are
    those of :class:`Client` and :meth:`Client.connect`.
    """
    client = Client(
        client_name=client_name,
        sleep=sleep,
        rand=rand,
        open_timeout=open_timeout,
        request_timeout=request_timeout,
        heartbeat=heartbeat,
        max_frame_bytes=max_frame_bytes,
        connect_options=connect_options,
    )
    options: dict[str, Any] = {"format": format, "reconnect": reconnect, "backoff": backoff}
    return Connecting(client, url, token, options)
