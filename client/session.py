"""A client session across connections: its lifecycle, what it waits for, what arrives.

:class:`Session` (the base of :class:`~client.connection.Client`) connects
once and closes once. It keeps what outlives a connection - the commands and
pings awaiting an answer (:mod:`client.pending`), the joined rooms
(:mod:`client.rooms`) and the subscriptions (:mod:`client.streams`) - restores
them on every new connection, and dispatches what arrives. A terminal close
(4500-4999), an ``access_changed`` with ``terminal`` set, or a reconnect that
gives up ends the session: every pending call fails with
:class:`~client.errors.SessionClosed`. One that is not terminal but names a
``room`` ends that room only (decision 0015).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from client.backoff import Backoff
from client.commands import with_command_id
from client.errors import (
    CLIENT_CLOSED,
    LOST,
    AccessEnded,
    ClientError,
    CommandRefused,
    InvalidMessage,
    SessionClosed,
)
from client.link import Link, Sleep, TokenSource
from client.pending import Pending, PendingCommands, Pings
from client.rooms import Rooms
from client.streams import Subscribers
from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, Codec, DecodeError, Format
from protocol.errors import CloseCode, Code
from protocol.messages import (
    AccessChanged,
    Ack,
    BagListing,
    ClientMessage,
    Error,
    Event,
    Ping,
    Pong,
    Refresh,
    Refused,
    Resumed,
    RoomCommand,
    ServerMessage,
    Snapshot,
    Welcome,
)

__all__ = ["Session"]

log = logging.getLogger("livepilot.client")


class Session(Link):
    """The session state under :class:`~client.connection.Client`, and its lifecycle.

    ``request_timeout`` bounds how long a request waits for its answer (None:
    no bound); the other options are :class:`~client.link.Link`'s.
    """

    def __init__(
        self,
        *,
        client_name: str,
        sleep: Sleep,
        rand: Callable[[], float],
        open_timeout: float | None,
        request_timeout: float | None,
        heartbeat: bool,
        max_frame_bytes: int,
        connect_options: Mapping[str, Any] | None,
    ) -> None:
        super().__init__(
            client_name=client_name,
            sleep=sleep,
            rand=rand,
            open_timeout=open_timeout,
            heartbeat=heartbeat,
            max_frame_bytes=max_frame_bytes,
            connect_options=connect_options,
        )
        self._request_timeout = request_timeout
        self._pending = PendingCommands()
        self._rooms = Rooms(resume=self._send_later)
        self._pings = Pings()
        self._subs = Subscribers()
        self._started = False
        self._done = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

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
        """Open the session: connect, say hello, return the server's :class:`Welcome`.

        ``token`` is a token or an async callable returning a fresh one, called on
        every (re)connect. ``format`` picks the subprotocol (``livepilot.v1.json``
        in text frames, or ``livepilot.v1.msgpack`` in binary frames).
        ``reconnect=False`` ends the session at the first lost connection instead
        of reconnecting with ``backoff``.

        Raises :class:`SessionClosed` when the first connection cannot be opened
        or the server refuses the hello (``retryable`` says whether trying again
        later may help); the client is closed then. A client connects once.
        """
        if self._started:
            raise RuntimeError("a Client connects once; create a new one")
        if isinstance(token, str) and not token:
            raise ValueError("token must not be empty")
        self._started = True
        self._url = url
        self._token = token
        self._format = format
        self._codec = Codec(format, self._max_frame_bytes)
        self._checker = Codec(format, DEFAULT_MAX_MESSAGE_BYTES)
        self._reconnect = reconnect
        self._backoff = backoff if backoff is not None else Backoff()
        try:
            ws, welcome = await self._open()
        except SessionClosed as exc:
            self._finish(exc, normal=False)
            raise
        except BaseException:
            self._finish(SessionClosed(LOST, "connect was interrupted"), normal=False)
            raise
        if self._closed is not None:  # closed while connecting
            await ws.close()
            raise self._closed
        await self._restore(ws)
        self._supervisor = asyncio.create_task(self._run(ws), name="livepilot-client")
        return welcome

    async def close(self) -> None:
        """End the session: close the connection, fail pending calls, end subscriptions.

        Pending calls fail with :class:`SessionClosed` (code 1000); subscriptions
        stop iterating. Closing twice is harmless.
        """
        self._finish(
            SessionClosed(CLIENT_CLOSED, "closed by the client", retryable=False), normal=True
        )
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        task = self._supervisor
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        background = [t for t in self._background if t is not asyncio.current_task()]
        for t in background:
            t.cancel()
        if background:
            await asyncio.wait(background)

    async def wait_closed(self) -> SessionClosed:
        """Wait until the session ends, and return why it ended."""
        await self._done.wait()
        assert self._closed is not None
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _finish(self, reason: SessionClosed, *, normal: bool) -> None:
        """End the session once: fail what waits, end the subscriptions."""
        if self._closed is not None:
            return
        self._closed = reason
        self._ready = False
        self._pending.fail(reason)
        self._rooms.fail(reason)
        self._pings.fail(reason)
        self._subs.end(reason, normal=normal)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        self._done.set()

    # --- requests -----------------------------------------------------------

    async def _request(self, command: RoomCommand) -> Ack | BagListing:
        self._check_open()
        command = with_command_id(command)
        self._validate(command)
        pending = self._pending.track(command)
        try:
            await self._flush(pending)
            async with asyncio.timeout(self._request_timeout):
                return await asyncio.shield(pending.future)
        finally:
            self._pending.release(pending)

    def _validate(self, message: ClientMessage) -> None:
        """Refuse locally what the server would reject as malformed."""
        try:
            self._checker.decode_client(self._checker.encode(message))
        except DecodeError as exc:
            raise InvalidMessage(exc.code, exc.message) from None

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
        if not self._started:
            raise ClientError("call connect() first")

    async def _flush(self, pending: Pending) -> None:
        """Send a command on the current connection unless it was sent there already."""
        async with self._lock:
            ws = self._ws
            if not self._ready or ws is None or pending.future.done():
                return  # the reconnect will send it
            if pending.generation == self._generation:
                return
            pending.generation = self._generation
            with contextlib.suppress(ConnectionClosed):
                await self._send_on(ws, pending.command)

    def _send_later(self, message: ClientMessage) -> None:
        """Send a session message in the background (not at all if disconnected)."""
        self._spawn(self._send_session(message))

    async def _resend(self, ws: ClientConnection, generation: int) -> None:
        """Rejoin or resume every room, resend unanswered commands and pings."""
        for room in list(self._rooms.values()):
            await self._send_on(ws, room.restore(generation))
        for pending in self._pending.all():
            if not pending.future.done():
                pending.generation = generation
                await self._send_on(ws, pending.command)
        for nonce in self._pings.nonces():
            await self._send_on(ws, Ping(nonce=nonce))

    # --- receiving ----------------------------------------------------------

    def _dispatch(self, message: ServerMessage) -> None:
        """Act on one message; never waits, so reading never stalls behind a sender."""
        if isinstance(message, Event):
            if self._rooms.accept(message):
                self._subs.publish(message)
            return
        if isinstance(message, Snapshot):
            self._rooms.on_snapshot(message)
        elif isinstance(message, Resumed):
            self._rooms.on_resumed(message)
        elif isinstance(message, Ack | BagListing):
            self._pending.settle(message.command_id, message)
        elif isinstance(message, Refused):
            self._pending.settle(
                message.command_id,
                CommandRefused(message.command_id, message.code, message.message),
            )
        elif isinstance(message, Pong):
            self._pings.answer(message)
        elif isinstance(message, Error):
            self._on_error(message)
        self._subs.publish(message)
        if isinstance(message, AccessChanged):
            self._on_access_changed(message)

    def _on_access_changed(self, message: AccessChanged) -> None:
        """Access ended: for one room (leave it, end its streams) or the whole session."""
        if message.terminal:  # the server closes the session after this
            self._finish(
                SessionClosed(
                    CloseCode.ACCESS_REVOKED,
                    f"access to {message.creator} {message.status}",
                    retryable=False,
                ),
                normal=False,
            )
        elif message.room is not None and message.status != "granted":
            # Only this room ends (decision 0015): not resumed, its streams raise.
            reason = AccessEnded(message.room, message.creator, message.agency, message.status)
            self._rooms.drop(message.room, reason)
            self._subs.end_room(message.room, reason)

    def _on_error(self, error: Error) -> None:
        if error.code == Code.TOKEN_EXPIRED and not isinstance(self._token, str):
            self._spawn(self._refresh_from_source())
        elif 200 <= error.code <= 399:
            self._rooms.refuse_join(error, self._generation)

    async def _refresh_from_source(self) -> None:
        source = self._token
        if isinstance(source, str):
            return
        try:
            token = await source()
        except Exception:
            log.exception("the token source failed; the session may close")
            return
        await self._send_session(Refresh(token=token))
