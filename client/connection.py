"""The async client: one session with a livepilot hub that survives reconnects.

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
:class:`~client.errors.SessionClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from client.backoff import Backoff
from client.errors import (
    ClientError,
    CommandRefused,
    InvalidMessage,
    ServerError,
    SessionClosed,
    close_is_retryable,
)
from client.streams import Subscription
from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, Codec, DecodeError, Format
from protocol.commands import Command
from protocol.errors import CloseCode, Code
from protocol.messages import (
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
    Ping,
    Pong,
    Refresh,
    Refused,
    Resume,
    Resumed,
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

log = logging.getLogger("livepilot.client")

TokenSource = str | Callable[[], Awaitable[str]]
"""A token, or an async callable returning a fresh one (called on every connect)."""
Sleep = Callable[[float], Awaitable[None]]
"""How the client waits between reconnect attempts (``asyncio.sleep`` by default)."""

C = TypeVar("C", bound=Command)

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a request (join, send, list_bag, ping) waits for its answer by default."""
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
"""Largest server frame accepted: snapshots of big rooms exceed the client limit."""

_CLIENT_CLOSED: Final = 1000
_PROTOCOL_ERROR: Final = 1002
_LOST: Final = 1006
_CLIENT_FAILURE: Final = 1011


def new_command_id() -> str:
    """A fresh command id: a uuid4 in hex."""
    return uuid.uuid4().hex


def make_command(kind: type[C], /, **fields: Any) -> C:
    """Build a room command, with a fresh ``command_id`` unless one is given.

    ``make_command(BagPin, room="r1", product_id="p1")``.
    """
    if not fields.get("command_id"):
        fields["command_id"] = new_command_id()
    return kind(**fields)


def with_command_id(command: C) -> C:
    """``command`` itself if it has a ``command_id``, else a copy with a fresh one."""
    if command.command_id:
        return command
    return msgspec.structs.replace(command, command_id=new_command_id())


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception retrieved: nobody may be waiting any more."""
    if not future.cancelled():
        future.exception()


def _close_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the server sent, 1006 if it sent none."""
    if exc.rcvd is None:
        return _LOST, "connection lost"
    return exc.rcvd.code, exc.rcvd.reason


@dataclass(eq=False)
class _Pending:
    """A command sent (or to send) and not answered yet."""

    command: RoomCommand
    future: asyncio.Future[Ack | BagListing]
    generation: int = 0
    """The connection it was last sent on; 0: never sent."""
    waiters: int = 0


@dataclass(eq=False)
class _Room:
    """A joined room: where its event stream stands."""

    name: str
    last_seq: int | None = None
    """Seq of the last event delivered (or of the snapshot); None until joined."""
    resuming: bool = False
    join: asyncio.Future[Snapshot] | None = None
    join_generation: int = 0
    join_waiters: int = 0

    @property
    def joining(self) -> bool:
        return self.join is not None and not self.join.done()


class Client:
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
        self._client_name = client_name
        self._sleep = sleep
        self._rand = rand
        self._open_timeout = open_timeout
        self._request_timeout = request_timeout
        self._heartbeat = heartbeat
        self._max_frame_bytes = max_frame_bytes
        self._connect_options = dict(connect_options or {})

        self._url = ""
        self._token: TokenSource = ""
        self._format: Format = "json"
        self._codec = Codec("json", max_frame_bytes)
        self._checker = Codec("json", DEFAULT_MAX_MESSAGE_BYTES)
        self._reconnect = True
        self._backoff = Backoff()
        self._attempt = 0

        self._ws: ClientConnection | None = None
        self._generation = 0
        self._ready = False
        self._lock = asyncio.Lock()
        self._pending: dict[str, _Pending] = {}
        self._rooms: dict[str, _Room] = {}
        self._pings: dict[int, asyncio.Future[Pong]] = {}
        self._nonces = itertools.count(1)
        self._subs: weakref.WeakSet[Subscription[Any]] = weakref.WeakSet()
        self._welcome: Welcome | None = None
        self._started = False
        self._closed: SessionClosed | None = None
        self._done = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

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
            self._finish(SessionClosed(_LOST, "connect was interrupted"), normal=False)
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
            SessionClosed(_CLIENT_CLOSED, "closed by the client", retryable=False), normal=True
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

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

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
        return self._subscribe(_every)

    def events(self, room: str) -> Subscription[Event | Snapshot]:
        """The events of ``room`` from now on, once each and in ``seq`` order.

        A :class:`Snapshot` in the stream replaces the room's state: the answer to
        a join made after subscribing, or ``reason="history_truncated"`` when a
        resume could not be served from history.
        """

        def select(message: ServerMessage) -> Event | Snapshot | None:
            if isinstance(message, Event | Snapshot) and message.room == room:
                return message
            return None

        return self._subscribe(select)

    def _subscribe(self, select: Callable[[ServerMessage], Any]) -> Subscription[Any]:
        sub: Subscription[Any] = Subscription(select)
        if self._closed is not None:
            sub._end(self._closed, normal=self._closed.code == _CLIENT_CLOSED)
        else:
            self._subs.add(sub)
        return sub

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
            joined = self._rooms[room] = _Room(room)
        if joined.join is None or joined.join.done():
            joined.join = self._future()
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
        nonce = next(self._nonces)
        future: asyncio.Future[Pong] = self._future()
        self._pings[nonce] = future
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._send_session(Ping(nonce=nonce))  # or on restore
            async with asyncio.timeout(self._request_timeout):
                await future
            return loop.time() - started
        finally:
            self._pings.pop(nonce, None)

    async def refresh(self, token: str) -> None:
        """Replace the session's token in-band; reconnects use it too."""
        if not token:
            raise ValueError("token must not be empty")
        self._check_open()
        self._token = token
        await self._send_session(Refresh(token=token))

    async def _request(self, command: RoomCommand) -> Ack | BagListing:
        self._check_open()
        command = with_command_id(command)
        self._validate(command)
        pending = self._pending.get(command.command_id)
        if pending is None:
            pending = _Pending(command, self._future())
            self._pending[command.command_id] = pending
        elif pending.command != command:
            raise ValueError(f"command_id {command.command_id} is in flight for another command")
        pending.waiters += 1
        try:
            await self._flush(pending)
            async with asyncio.timeout(self._request_timeout):
                return await asyncio.shield(pending.future)
        finally:
            pending.waiters -= 1
            if pending.waiters == 0 and not pending.future.done():
                pending.future.cancel()
                if self._pending.get(command.command_id) is pending:
                    del self._pending[command.command_id]

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

    def _future(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        return future

    # --- sending ------------------------------------------------------------

    async def _send_on(self, ws: ClientConnection, message: ClientMessage) -> None:
        await ws.send(self._codec.encode(message), text=not self._codec.binary)

    async def _send_session(self, message: ClientMessage) -> bool:
        """Send a session message now if connected; False if it was not sent."""
        async with self._lock:
            ws = self._ws
            if not self._ready or ws is None:
                return False
            try:
                await self._send_on(ws, message)
            except ConnectionClosed:
                return False
            return True

    async def _flush(self, pending: _Pending) -> None:
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

    # --- connection ---------------------------------------------------------

    async def _open(self) -> tuple[ClientConnection, Welcome]:
        """Open a connection and authenticate; raise SessionClosed on failure."""
        token = self._token if isinstance(self._token, str) else await self._token()
        try:
            ws = await ws_connect(
                self._url,
                subprotocols=[Subprotocol(self._codec.subprotocol)],
                open_timeout=self._open_timeout,
                max_size=self._max_frame_bytes,
                **self._connect_options,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            retry = status >= 500 or status == 429
            raise SessionClosed(
                status, f"handshake refused: HTTP {status}", retryable=retry
            ) from exc
        except InvalidURI as exc:
            raise SessionClosed(_LOST, f"invalid url: {exc}", retryable=False) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise SessionClosed(_LOST, f"cannot connect: {exc!r}", retryable=True) from exc
        try:
            welcome = await self._hello(ws, token)
        except BaseException:
            ws.transport.abort()
            raise
        self._welcome = welcome
        self._checker = Codec(self._format, welcome.limits.max_message_bytes)
        return ws, welcome

    async def _hello(self, ws: ClientConnection, token: str) -> Welcome:
        if ws.subprotocol != self._codec.subprotocol:
            await ws.close(CloseCode.UNSUPPORTED_PROTOCOL)
            raise SessionClosed(
                CloseCode.UNSUPPORTED_PROTOCOL,
                f"the server chose subprotocol {ws.subprotocol!r}",
                retryable=False,
            )
        try:
            await self._send_on(ws, Hello(token=token, client=self._client_name))
            async with asyncio.timeout(self._open_timeout):
                raw = await ws.recv(decode=False)
        except ConnectionClosed as exc:
            code, reason = _close_of(exc)
            raise SessionClosed(code, reason, retryable=close_is_retryable(code)) from None
        except TimeoutError:
            await ws.close()
            raise SessionClosed(_LOST, "no welcome in time", retryable=True) from None
        try:
            message = self._codec.decode_server(raw)
        except DecodeError as exc:
            await ws.close(_PROTOCOL_ERROR)
            raise SessionClosed(_PROTOCOL_ERROR, f"undecodable welcome: {exc}") from None
        if isinstance(message, Welcome):
            return message
        await ws.close(_PROTOCOL_ERROR if not isinstance(message, Error) else _CLIENT_CLOSED)
        if isinstance(message, Error):
            raise SessionClosed(message.code, message.message, retryable=message.retryable)
        raise SessionClosed(_PROTOCOL_ERROR, f"expected welcome, got {type(message).__name__}")

    async def _restore(self, ws: ClientConnection) -> None:
        """Make ``ws`` current: rejoin or resume every room, resend unanswered commands."""
        async with self._lock:
            self._generation += 1
            generation = self._generation
            self._ws = ws
            try:
                for room in list(self._rooms.values()):
                    if room.joining or room.last_seq is None:
                        room.join_generation = generation
                        room.resuming = False
                        await self._send_on(ws, Join(room=room.name))
                    else:
                        room.resuming = True
                        await self._send_on(ws, Resume(room=room.name, last_seq=room.last_seq))
                for pending in list(self._pending.values()):
                    if not pending.future.done():
                        pending.generation = generation
                        await self._send_on(ws, pending.command)
                for nonce in list(self._pings):
                    await self._send_on(ws, Ping(nonce=nonce))
            except ConnectionClosed:
                pass  # the reader sees the close next and reconnects again
            self._ready = True
        welcome = self._welcome
        if self._heartbeat and self._heartbeat_task is None and welcome is not None:
            interval = welcome.limits.heartbeat_s / 2
            if interval > 0:
                self._heartbeat_task = self._spawn(self._beat(interval))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _beat(self, interval: float) -> None:
        while self._closed is None:
            await asyncio.sleep(interval)
            await self._send_session(Ping(nonce=0))

    async def _run(self, ws: ClientConnection) -> None:
        """Read until the connection ends, then reconnect or finish the session."""
        try:
            while True:
                code, reason = await self._read(ws)
                self._ready = False
                self._ws = None
                if self._closed is not None:
                    return
                if not close_is_retryable(code):
                    self._finish(SessionClosed(code, reason, retryable=False), normal=False)
                    return
                if not self._reconnect:
                    self._finish(SessionClosed(code, reason, retryable=True), normal=False)
                    return
                log.info("connection closed (%s %s); reconnecting", code, reason)
                reopened = await self._reopen(code, reason)
                if reopened is None:
                    return
                ws = reopened
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: end the session visibly rather than hang
            log.exception("livepilot client failed")
            self._finish(SessionClosed(_CLIENT_FAILURE, f"client failure: {exc!r}"), normal=False)
            current, self._ws = self._ws, None
            if current is not None:
                current.transport.abort()

    async def _reopen(self, code: int, reason: str) -> ClientConnection | None:
        """Reconnect with backoff; None when the session ended instead."""
        last = SessionClosed(code, reason, retryable=True)
        while True:
            limit = self._backoff.max_attempts
            if limit is not None and self._attempt >= limit:
                self._finish(
                    SessionClosed(
                        last.code,
                        f"gave up after {self._attempt} reconnect attempts: {last.reason}",
                        retryable=True,
                    ),
                    normal=False,
                )
                return None
            delay = self._backoff.delay(self._attempt, self._rand())
            self._attempt += 1
            await self._sleep(delay)
            if self._closed is not None:
                return None
            try:
                ws, _ = await self._open()
            except SessionClosed as exc:
                if not exc.retryable:
                    self._finish(exc, normal=False)
                    return None
                log.info("reconnect attempt %d failed: %s", self._attempt, exc)
                last = exc
                continue
            if self._closed is not None:
                await ws.close()
                return None
            await self._restore(ws)
            return ws

    async def _read(self, ws: ClientConnection) -> tuple[int, str]:
        """Dispatch frames until the connection closes; return the close code and reason."""
        while True:
            try:
                raw = await ws.recv(decode=False)
            except ConnectionClosed as exc:
                return _close_of(exc)
            try:
                message = self._codec.decode_server(raw)
            except DecodeError as exc:  # e.g. a message type from a newer server
                log.warning("ignored an undecodable frame (%s): %s", exc.code, exc.message)
                continue
            self._attempt = 0  # the connection works: the next loss starts backoff afresh
            self._dispatch(message)
            if self._closed is not None:
                await ws.close()
                return _CLIENT_CLOSED, ""

    # --- receiving ----------------------------------------------------------

    def _dispatch(self, message: ServerMessage) -> None:
        """Act on one message; never waits, so reading never stalls behind a sender."""
        if isinstance(message, Event):
            if self._on_event(message):
                self._publish(message)
            return
        if isinstance(message, Snapshot):
            self._on_snapshot(message)
        elif isinstance(message, Resumed):
            self._on_resumed(message)
        elif isinstance(message, Ack | BagListing):
            self._settle(message.command_id, message)
        elif isinstance(message, Refused):
            self._settle(
                message.command_id,
                CommandRefused(message.command_id, message.code, message.message),
            )
        elif isinstance(message, Pong):
            ping = self._pings.pop(message.nonce, None)
            if ping is not None and not ping.done():
                ping.set_result(message)
        elif isinstance(message, Error):
            self._on_error(message)
        self._publish(message)
        if isinstance(message, AccessChanged) and message.terminal:
            self._finish(
                SessionClosed(
                    CloseCode.ACCESS_REVOKED,
                    f"access to {message.creator} {message.status}",
                    retryable=False,
                ),
                normal=False,
            )

    def _on_event(self, event: Event) -> bool:
        """Whether to deliver ``event``: the next one of a joined room."""
        room = self._rooms.get(event.room)
        if room is None or room.last_seq is None:
            return False
        if event.seq <= room.last_seq:
            return False  # already delivered (a resume replays from last_seq)
        if event.seq > room.last_seq + 1:
            if not room.resuming:
                log.info(
                    "gap in %s after seq %d (got %d); resuming", room.name, room.last_seq, event.seq
                )
                self._resume(room)
            return False  # the resume replays it in order
        room.last_seq = event.seq
        return True

    def _resume(self, room: _Room) -> None:
        """Ask for every event after the room's last seq (in the background)."""
        assert room.last_seq is not None
        room.resuming = True
        self._spawn(self._send_session(Resume(room=room.name, last_seq=room.last_seq)))
        # Not sent when the connection is down: the reconnect resumes the room anyway.

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        room = self._rooms.get(snapshot.room)
        if room is None:
            return
        room.last_seq = snapshot.seq
        room.resuming = False
        if room.join is not None and not room.join.done():
            room.join.set_result(snapshot)

    def _on_resumed(self, resumed: Resumed) -> None:
        room = self._rooms.get(resumed.room)
        if room is None or room.last_seq is None:
            return
        room.resuming = False
        if resumed.seq > room.last_seq:  # the replay missed events: ask again
            log.warning(
                "resume of %s ended at %d but only %d arrived; resuming again",
                room.name,
                resumed.seq,
                room.last_seq,
            )
            self._resume(room)

    def _settle(self, command_id: str, answer: Ack | BagListing | CommandRefused) -> None:
        pending = self._pending.pop(command_id, None)
        if pending is None or pending.future.done():
            return  # a duplicate answer (the command was resent) or a forgotten command
        if isinstance(answer, CommandRefused):
            pending.future.set_exception(answer)
        else:
            pending.future.set_result(answer)

    def _on_error(self, error: Error) -> None:
        if error.code == Code.TOKEN_EXPIRED and not isinstance(self._token, str):
            self._spawn(self._refresh_from_source())
        elif 200 <= error.code <= 399:
            # An access or room error answers the join of the room it names (or,
            # from an older server, the oldest join still waiting); commands are
            # answered by Refused instead.
            for room in self._rooms.values():
                if error.room is not None and room.name != error.room:
                    continue
                if room.joining and room.join_generation == self._generation:
                    assert room.join is not None
                    room.join.set_exception(
                        ServerError(error.code, error.message, retryable=error.retryable)
                    )
                    if room.last_seq is None:
                        del self._rooms[room.name]
                    break

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

    def _publish(self, message: ServerMessage) -> None:
        for sub in list(self._subs):
            sub._offer(message)

    def _finish(self, reason: SessionClosed, *, normal: bool) -> None:
        """End the session once: fail what waits, end the subscriptions."""
        if self._closed is not None:
            return
        self._closed = reason
        self._ready = False
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(reason)
        self._pending.clear()
        for room in self._rooms.values():
            if room.join is not None and not room.join.done():
                room.join.set_exception(reason)
        for ping in self._pings.values():
            if not ping.done():
                ping.set_exception(reason)
        for sub in list(self._subs):
            sub._end(reason, normal=normal)
        self._subs.clear()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        self._done.set()


def _every(message: ServerMessage) -> ServerMessage:
    return message


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
