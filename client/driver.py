"""A client's connection: one WebSocket at a time, reopened with backoff.

:class:`Driver` opens a WebSocket to ``ws://host:port/ws`` with one of the
protocol v1 subprotocols, says ``hello`` and waits for ``welcome``, sends what
the :class:`~client.state.ClientState` needs restored on the new connection,
then reads frames and hands each message to the state until the connection
closes. After a retryable close (4000-4499, or lost without a close frame) it
reconnects with bounded exponential backoff and does it all again; after a
terminal one, or when reconnecting gives up, it ends the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from client.errors import (
    CLIENT_CLOSED,
    CLIENT_FAILURE,
    LOST,
    PROTOCOL_ERROR,
    ClientClosed,
    InvalidMessage,
    close_is_retryable,
)
from client.options import ClientOptions, TokenSource
from client.state import ClientState
from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, Codec, DecodeError
from protocol.errors import CloseCode, Code
from protocol.messages import (
    ClientMessage,
    Error,
    Hello,
    Ping,
    Refresh,
    ServerMessage,
    Welcome,
)

__all__ = ["Driver"]

log = logging.getLogger("livepilot.client")


def _close_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the server sent, 1006 if it sent none."""
    if exc.rcvd is None:
        return LOST, "connection lost"
    return exc.rcvd.code, exc.rcvd.reason


class Driver:
    """The connections of one client, one at a time: open, hello, restore, read, reconnect.

    ``_ws`` is the current connection and ``_generation`` counts connections;
    ``_ready`` is set once the state is restored on the current one. Sends go
    through ``_lock`` so a restore is never interleaved with other sends.
    ``token`` is the token (or token source) the next ``hello`` uses.
    """

    def __init__(self, options: ClientOptions, token: TokenSource, state: ClientState) -> None:
        self.options = options
        self.token = token
        self._state = state
        self._codec = Codec(options.format, options.max_frame_bytes)
        # Validates outgoing messages against the server's limits (from welcome).
        self._checker = Codec(options.format, DEFAULT_MAX_MESSAGE_BYTES)
        self._attempt = 0
        self._ws: ClientConnection | None = None
        self._generation = 0
        self._ready = False
        self._lock = asyncio.Lock()
        self.welcome: Welcome | None = None
        """The last :class:`Welcome` received (a reconnect gets a new one)."""
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether a connection is open and the state restored on it right now."""
        return self._ready and self._state.closed is None

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> Welcome:
        """Open the first connection, restore the state on it, then read in the background.

        Raises :class:`ClientClosed` (and ends the client) when the connection
        cannot be opened or the server refuses the hello.
        """
        try:
            ws, welcome = await self._open()
        except ClientClosed as exc:
            self._finish(exc, normal=False)
            raise
        except BaseException:
            self._finish(ClientClosed(LOST, "connect was interrupted"), normal=False)
            raise
        if self._state.closed is not None:  # closed while connecting
            await ws.close()
            raise self._state.closed
        await self._restore(ws)
        self._supervisor = asyncio.create_task(self._run(ws), name="livepilot-client")
        return welcome

    async def close(self) -> None:
        """Close the connection and stop every task; the state has ended already."""
        self._halt()
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

    def _halt(self) -> None:
        """Stop using the connection: nothing more is sent on it, the heartbeat stops."""
        self._ready = False
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()

    def _finish(self, reason: ClientClosed, *, normal: bool) -> None:
        self._halt()
        self._state.finish(reason, normal=normal)

    # --- sending --------------------------------------------------------------

    def validate(self, message: ClientMessage) -> None:
        """Refuse locally what the server would reject as malformed (:class:`InvalidMessage`)."""
        try:
            self._checker.decode_client(self._checker.encode(message))
        except DecodeError as exc:
            raise InvalidMessage(exc.code, exc.message) from None

    async def _send_on(self, ws: ClientConnection, message: ClientMessage) -> None:
        await ws.send(self._codec.encode(message), text=not self._codec.binary)

    async def send_now(self, message: ClientMessage) -> bool:
        """Send ``message`` now if connected; False if it was not sent."""
        async with self._lock:
            ws = self._ws
            if not self.ready or ws is None:
                return False
            try:
                await self._send_on(ws, message)
            except ConnectionClosed:
                return False
            return True

    def send_soon(self, message: ClientMessage) -> None:
        """Send ``message`` in the background (not at all if disconnected)."""
        self._spawn(self.send_now(message))

    async def send_once(self, message: ClientMessage, claim: Callable[[int], bool]) -> None:
        """Send ``message`` on the current connection if ``claim(generation)`` allows it.

        ``claim`` says False when it was sent on that connection already or is no
        longer needed. While disconnected nothing is sent: the restore sends it.
        """
        async with self._lock:
            ws = self._ws
            if not self.ready or ws is None or not claim(self._generation):
                return
            with contextlib.suppress(ConnectionClosed):
                await self._send_on(ws, message)

    # --- connection -----------------------------------------------------------

    async def _open(self) -> tuple[ClientConnection, Welcome]:
        """Open a connection and authenticate; raise ClientClosed on failure."""
        options = self.options
        token = self.token if isinstance(self.token, str) else await self.token()
        try:
            ws = await ws_connect(
                options.url,
                subprotocols=[Subprotocol(self._codec.subprotocol)],
                open_timeout=options.open_timeout,
                max_size=options.max_frame_bytes,
                **options.connect_options,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            retry = status >= 500 or status == 429
            raise ClientClosed(
                status, f"handshake refused: HTTP {status}", retryable=retry
            ) from exc
        except InvalidURI as exc:
            raise ClientClosed(LOST, f"invalid url: {exc}", retryable=False) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ClientClosed(LOST, f"cannot connect: {exc!r}", retryable=True) from exc
        try:
            welcome = await self._hello(ws, token)
        except BaseException:
            ws.transport.abort()
            raise
        self.welcome = welcome
        self._checker = Codec(options.format, welcome.limits.max_message_bytes)
        return ws, welcome

    async def _hello(self, ws: ClientConnection, token: str) -> Welcome:
        if ws.subprotocol != self._codec.subprotocol:
            await ws.close(CloseCode.UNSUPPORTED_PROTOCOL)
            raise ClientClosed(
                CloseCode.UNSUPPORTED_PROTOCOL,
                f"the server chose subprotocol {ws.subprotocol!r}",
                retryable=False,
            )
        try:
            await self._send_on(ws, Hello(token=token, client=self.options.client_name))
            async with asyncio.timeout(self.options.open_timeout):
                raw = await ws.recv(decode=False)
        except ConnectionClosed as exc:
            code, reason = _close_of(exc)
            raise ClientClosed(code, reason, retryable=close_is_retryable(code)) from None
        except TimeoutError:
            await ws.close()
            raise ClientClosed(LOST, "no welcome in time", retryable=True) from None
        try:
            message = self._codec.decode_server(raw)
        except DecodeError as exc:
            await ws.close(PROTOCOL_ERROR)
            raise ClientClosed(PROTOCOL_ERROR, f"undecodable welcome: {exc}") from None
        if isinstance(message, Welcome):
            return message
        await ws.close(PROTOCOL_ERROR if not isinstance(message, Error) else CLIENT_CLOSED)
        if isinstance(message, Error):
            raise ClientClosed(message.code, message.message, retryable=message.retryable)
        raise ClientClosed(PROTOCOL_ERROR, f"expected welcome, got {type(message).__name__}")

    async def _restore(self, ws: ClientConnection) -> None:
        """Make ``ws`` current: restore the state on it, then start the heartbeat."""
        async with self._lock:
            self._generation += 1
            self._ws = ws
            # A close here: the reader sees it next and reconnects again.
            with contextlib.suppress(ConnectionClosed):
                for message in self._state.restore(self._generation):
                    await self._send_on(ws, message)
            self._ready = True
        welcome = self.welcome
        if self.options.heartbeat and self._heartbeat_task is None and welcome is not None:
            interval = welcome.limits.heartbeat_s / 2
            if interval > 0:
                self._heartbeat_task = self._spawn(self._beat(interval))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _beat(self, interval: float) -> None:
        while self._state.closed is None:
            await asyncio.sleep(interval)
            await self.send_now(Ping(nonce=0))

    # --- the reconnect loop ---------------------------------------------------

    async def _run(self, ws: ClientConnection) -> None:
        """Read until the connection ends, then reconnect or end the client."""
        try:
            while True:
                code, reason = await self._read(ws)
                self._ready = False
                self._ws = None
                if self._state.closed is not None:
                    return
                if not close_is_retryable(code):
                    self._finish(ClientClosed(code, reason, retryable=False), normal=False)
                    return
                if not self.options.reconnect:
                    self._finish(ClientClosed(code, reason, retryable=True), normal=False)
                    return
                log.info("connection closed (%s %s); reconnecting", code, reason)
                reopened = await self._reopen(code, reason)
                if reopened is None:
                    return
                ws = reopened
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: end the client visibly rather than hang
            log.exception("livepilot client failed")
            self._finish(ClientClosed(CLIENT_FAILURE, f"client failure: {exc!r}"), normal=False)
            current, self._ws = self._ws, None
            if current is not None:
                current.transport.abort()

    async def _reopen(self, code: int, reason: str) -> ClientConnection | None:
        """Reconnect with backoff; None when the client ended instead."""
        backoff = self.options.backoff
        last = ClientClosed(code, reason, retryable=True)
        while True:
            limit = backoff.max_attempts
            if limit is not None and self._attempt >= limit:
                self._finish(
                    ClientClosed(
                        last.code,
                        f"gave up after {self._attempt} reconnect attempts: {last.reason}",
                        retryable=True,
                    ),
                    normal=False,
                )
                return None
            delay = backoff.delay(self._attempt, self.options.rand())
            self._attempt += 1
            await self.options.sleep(delay)
            if self._state.closed is not None:
                return None
            try:
                ws, _ = await self._open()
            except ClientClosed as exc:
                if not exc.retryable:
                    self._finish(exc, normal=False)
                    return None
                log.info("reconnect attempt %d failed: %s", self._attempt, exc)
                last = exc
                continue
            if self._state.closed is not None:
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
            self._receive(message)
            if self._state.closed is not None:
                self._halt()
                await ws.close()
                return CLIENT_CLOSED, ""

    def _receive(self, message: ServerMessage) -> None:
        """Hand one message to the state and send its answers; never waits."""
        if (
            isinstance(message, Error)
            and message.code == Code.TOKEN_EXPIRED
            and not isinstance(self.token, str)
        ):
            self._spawn(self._refresh_from_source())
        for answer in self._state.dispatch(message, self._generation):
            self.send_soon(answer)

    async def _refresh_from_source(self) -> None:
        source = self.token
        if isinstance(source, str):
            return
        try:
            token = await source()
        except Exception:
            log.exception("the token source failed; the client may close")
            return
        await self.send_now(Refresh(token=token))
