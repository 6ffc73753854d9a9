"""``/ws`` served on livepilot's own WebSocket connection (decision 0023).

:class:`LivepilotWebSocketProtocol` is a :class:`server.wire.WebSocketConnection`
whose opening handshake and messages are livepilot's (:class:`Client`). The
admission gate (:mod:`server.admission`) hands it a connection whose first bytes
ask for ``/ws``; an upgrade that reaches uvicorn's HTTP protocol gets it through
uvicorn's public ``ws`` setting. The checks, the hello, the reader and the
watch are :mod:`server.ws`'s, shared with the ASGI fallback.

A connection holds no task while it is idle: the handshake and the hello are
handled in the protocol's callback; a message after that goes to an inbox, and a
task runs only while the inbox has messages (commands and joins may wait for the
log); it ends when the inbox is empty. Reading pauses once :data:`READ_AHEAD`
messages wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import anyio
from websockets.http11 import Request

from protocol.codec import codec_for
from protocol.errors import CloseCode
from server.app import WS_PATH
from server.hub.session import Session
from server.wire import Accepted, Options, Rejected, WebSocketConnection
from server.ws import Reader, Refusal, Watch, hello_session, opening, session_ended

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = ["READ_AHEAD", "Client", "LivepilotWebSocketProtocol", "options_for"]

logger = logging.getLogger("livepilot.ws")
READ_AHEAD: Final = 16
"""Messages read from a socket before reading pauses until the session handles them."""


def options_for(rt: Runtime) -> Options:
    """The connection options the settings call for."""
    settings = rt.settings
    return Options(
        # The app answers frames up to max_message_bytes with TOO_LARGE itself; only
        # far bigger ones are cut by the transport (close 1009).
        max_size=settings.max_message_bytes * 4,
        deflate=settings.permessage_deflate,
        ping_interval=settings.heartbeat_s or None,
        ping_timeout=settings.heartbeat_s or None,
    )


class Client(Reader):
    """One ``/ws`` connection: before hello, its codec; after, its session and reader.

    It is the connection's :class:`server.wire.Peer`. What a session needs of the
    reader (:class:`server.ws.Reader`) it inherits, so a connection is one object here.
    """

    __slots__ = (
        "_codec",
        "_conn",
        "_header_token",
        "_hello_timer",
        "_inbox",
        "_scope",
        "_task",
        "_watch",
    )

    def __init__(
        self, rt: Runtime, conn: WebSocketConnection, subprotocol: str, header_token: str | None
    ) -> None:
        self.rt = rt
        self._conn = conn
        self._codec = codec_for(subprotocol, rt.settings.max_message_bytes)
        self._header_token = header_token
        self._inbox: deque[str | bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._watch: Watch | None = None
        # A socket that says nothing holds a descriptor for nothing.
        self._hello_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            rt.settings.hello_timeout_s, self._no_hello
        )

    # --- the Peer ---------------------------------------------------------------------

    def message(self, data: str | bytes) -> None:
        """A message from the client: the hello, or the next for the reader."""
        session: Session | None = getattr(self, "session", None)
        if session is None:
            self._hello(data)
            return
        if session.is_closed:
            return
        inbox = self._inbox
        if inbox is None:  # made on first use: an idle connection holds none
            inbox = self._inbox = deque()
        inbox.append(data)
        if len(inbox) >= READ_AHEAD:
            self._conn.pause_reading()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(session, inbox))

    def closed(self) -> None:
        """The connection is closing or lost: the session ends (if it began)."""
        self._cancel_hello()
        session: Session | None = getattr(self, "session", None)
        if session is not None:
            session.close(1000, "client went away")

    # --- internals --------------------------------------------------------------------

    def _hello(self, data: str | bytes) -> None:
        if self._hello_timer is None:
            return  # closing already
        self._cancel_hello()
        rt = self.rt
        admitted = hello_session(rt, self._codec, data, self._header_token, self._conn)
        if isinstance(admitted, Refusal):
            if admitted.error is not None:
                self._conn.write(self._codec.encode(admitted.error))
            self._conn.close(admitted.code, admitted.reason)
            return
        session = admitted.session
        Reader.__init__(self, rt, session, admitted.actor_bucket)
        session.on_close = self._session_closed
        rt.hub.connect(session)
        self._watch = Watch(rt, session)

    def _no_hello(self) -> None:
        self._hello_timer = None
        self.rt.metrics.hello_timeouts.inc()
        self._conn.close(CloseCode.IDLE_TIMEOUT, "no hello in time")

    def _cancel_hello(self) -> None:
        timer, self._hello_timer = self._hello_timer, None
        if timer is not None:
            timer.cancel()

    async def _drain(self, session: Session, inbox: deque[str | bytes]) -> None:
        """Handle what the inbox holds, in order, then end (the next message starts
        another). Closing the session cancels it at once (its commands run on)."""
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                while inbox and not session.is_closed:
                    frame = inbox.popleft()
                    if not inbox:
                        self._conn.resume_reading()
                    if not await self.handle(frame):
                        break
        except Exception:  # a bug: this session ends, the server goes on
            logger.exception("handling a message failed", extra={"session": session.id})
            session.close(1011, "internal error")
        finally:
            self._scope = None
            self._task = None

    def _session_closed(self) -> None:
        scope = self._scope
        if scope is not None:
            scope.cancel()
        # Not now: the hub may be iterating over the room this session leaves.
        asyncio.get_running_loop().call_soon(self._ended)

    def _ended(self) -> None:
        session = self.session
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._inbox = None
        self.rt.hub.disconnect(session)
        self.rt.actors.close(session.actor, time.monotonic())
        session_ended(self.rt, session)


class LivepilotWebSocketProtocol(WebSocketConnection):
    """The protocol for uvicorn's ``ws`` setting: ``/ws`` served by :class:`Client`.

    uvicorn builds it on an upgrade with keywords ``config``, ``server_state`` and
    ``app_state``; what it uses of them: ``config.app`` (the livepilot app, whose
    ``state.runtime`` the lifespan set) and ``server_state.connections`` (the set
    uvicorn's shutdown closes and waits for), when there is one.
    """

    __slots__ = ("_rt",)

    def __init__(
        self, config: Any, server_state: Any = None, app_state: Any = None, **_: Any
    ) -> None:
        state: Any = getattr(getattr(config, "app", None), "state", None)
        rt: Runtime | None = getattr(state, "runtime", None)
        self._rt = rt
        options: Options | None = getattr(state, "ws_options", None)
        if options is None and rt is not None:
            options = state.ws_options = options_for(rt)
        super().__init__(
            self._open, options or Options(), registry=getattr(server_state, "connections", None)
        )

    def _open(self, conn: WebSocketConnection, request: Request) -> Accepted | Rejected:
        rt = self._rt
        if rt is None:  # not started, or stopped
            return Rejected(503, "starting or stopping\n")
        if request.path.partition("?")[0] != WS_PATH:
            return Rejected(404, "not found\n")
        headers = request.headers
        offered = [
            p.strip() for h in headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")
        ]
        opened = opening(rt, headers.get("Origin"), headers.get("Host"), offered)
        if isinstance(opened, CloseCode):
            return Rejected(403)
        subprotocol, header_token = opened
        client = Client(rt, conn, subprotocol, header_token)
        return Accepted(client, subprotocol, client._codec.binary)
