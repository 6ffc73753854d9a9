"""The connection under a session: one WebSocket at a time, reopened with backoff.

:class:`Link` opens a WebSocket to ``ws://host:port/ws`` with one of the
protocol v1 subprotocols, says ``hello`` and waits for ``welcome``, then reads
frames until the connection closes. After a retryable close (4000-4499, or
lost without a close frame) it reconnects with bounded exponential backoff,
says ``hello`` again and restores the session on the new connection; after a
terminal one it ends the session. What to do with a message, what to resend on
a new connection and how the session ends are left to the subclass,
:class:`~client.session.Session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from client.backoff import Backoff
from client.errors import (
    CLIENT_CLOSED,
    CLIENT_FAILURE,
    LOST,
    PROTOCOL_ERROR,
    SessionClosed,
    close_is_retryable,
)
from protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, Codec, DecodeError, Format
from protocol.errors import CloseCode
from protocol.messages import ClientMessage, Error, Hello, Ping, ServerMessage, Welcome

__all__ = ["Link", "Sleep", "TokenSource"]

log = logging.getLogger("livepilot.client")

TokenSource = str | Callable[[], Awaitable[str]]
"""A token, or an async callable returning a fresh one (called on every connect)."""
Sleep = Callable[[float], Awaitable[None]]
"""How the client waits between reconnect attempts (``asyncio.sleep`` by default)."""


def _close_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the server sent, 1006 if it sent none."""
    if exc.rcvd is None:
        return LOST, "connection lost"
    return exc.rcvd.code, exc.rcvd.reason


class Link(ABC):
    """One connection at a time: open, hello, read, reconnect; the base of a session.

    ``_ws`` is the current connection and ``_generation`` counts connections;
    ``_ready`` is set once the session is restored on the current one. Sends
    go through ``_lock`` so a restore is never interleaved with other sends.
    """

    def __init__(
        self,
        *,
        client_name: str,
        sleep: Sleep,
        rand: Callable[[], float],
        open_timeout: float | None,
        heartbeat: bool,
        max_frame_bytes: int,
        connect_options: Mapping[str, Any] | None,
    ) -> None:
        self._client_name = client_name
        self._sleep = sleep
        self._rand = rand
        self._open_timeout = open_timeout
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
        self._welcome: Welcome | None = None
        self._closed: SessionClosed | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- what the session does ------------------------------------------------

    @abstractmethod
    def _dispatch(self, message: ServerMessage) -> None:
        """Act on one message; must not wait, so reading never stalls."""

    @abstractmethod
    async def _resend(self, ws: ClientConnection, generation: int) -> None:
        """Restore the session on the new connection ``ws`` (number ``generation``)."""

    @abstractmethod
    def _finish(self, reason: SessionClosed, *, normal: bool) -> None:
        """End the session once, for ``reason``."""

    # --- sending --------------------------------------------------------------

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

    # --- connection -----------------------------------------------------------

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
            raise SessionClosed(LOST, f"invalid url: {exc}", retryable=False) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise SessionClosed(LOST, f"cannot connect: {exc!r}", retryable=True) from exc
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
            raise SessionClosed(LOST, "no welcome in time", retryable=True) from None
        try:
            message = self._codec.decode_server(raw)
        except DecodeError as exc:
            await ws.close(PROTOCOL_ERROR)
            raise SessionClosed(PROTOCOL_ERROR, f"undecodable welcome: {exc}") from None
        if isinstance(message, Welcome):
            return message
        await ws.close(PROTOCOL_ERROR if not isinstance(message, Error) else CLIENT_CLOSED)
        if isinstance(message, Error):
            raise SessionClosed(message.code, message.message, retryable=message.retryable)
        raise SessionClosed(PROTOCOL_ERROR, f"expected welcome, got {type(message).__name__}")

    async def _restore(self, ws: ClientConnection) -> None:
        """Make ``ws`` current: restore the session on it, then start the heartbeat."""
        async with self._lock:
            self._generation += 1
            generation = self._generation
            self._ws = ws
            # A close here: the reader sees it next and reconnects again.
            with contextlib.suppress(ConnectionClosed):
                await self._resend(ws, generation)
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

    # --- the reconnect loop ---------------------------------------------------

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
            self._finish(SessionClosed(CLIENT_FAILURE, f"client failure: {exc!r}"), normal=False)
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
                return CLIENT_CLOSED, ""
