"""The WebSocket endpoint ``/ws``: protocol v1, thin on purpose.

Two ways in, one behaviour. ``livepilot serve`` serves ``/ws`` with livepilot's
own connection (:mod:`server.wire`, :mod:`server.endpoint`, decision 0023): no
task per connection, frames written by the hub straight to the socket. Under any
other ASGI server, :func:`websocket_endpoint` serves it with Starlette's
``WebSocket``: a reader in the connection's task and a writer task draining the
session's outbox. (:class:`server.app.LivepilotApp` hands ``/ws`` connections
here directly, past Starlette's middleware and router.) Both share what this
module defines:

Before accept (:func:`opening`): the Origin allowlist and subprotocol negotiation
(an Origin naming the host itself is the hub's own pages), and a token offered
as a ``livepilot.auth.<token>`` subprotocol, for browsers that cannot send a first
frame fast enough. After accept, the first frame must be ``hello`` with a valid
token, and the actor must be under its connection cap (else 4006;
:func:`hello_session`). Then each frame pays the rate limits, is decoded and
dispatched to the hub (:class:`Reader`) until the client goes or the session is
closed. Token expiry and the idle timeout are a loop timer
(:class:`Watch`), not a task. Whatever ends the session closes the socket with a
code from :mod:`protocol.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Final, NamedTuple

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol.codec import Codec, DecodeError, codec_for, negotiate, peek_command_id
from protocol.errors import CloseCode, Code, describe, is_retryable
from protocol.messages import (
    Error,
    Hello,
    Join,
    Leave,
    Limits,
    Ping,
    Pong,
    Refresh,
    Refused,
    Resume,
    Welcome,
)
from server.auth import AuthError, verify
from server.hub.ratelimit import AbuseMeter, FrameLimiter, TokenBucket
from server.hub.session import Session, Sink
from server.wire import fit_close_reason

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = [
    "AUTH_SUBPROTOCOL_PREFIX",
    "Admitted",
    "Reader",
    "Refusal",
    "Watch",
    "hello_session",
    "opening",
    "session_ended",
    "websocket_endpoint",
]

AUTH_SUBPROTOCOL_PREFIX: Final = "livepilot.auth."
logger = logging.getLogger("livepilot.ws")
FLUSH_ON_CLOSE_S: Final = 1.0
"""How long a closing session may take to flush what is queued (e.g. access_changed)."""
MAX_IN_FLIGHT: Final = 64
"""Commands of one connection that may be waiting for durability at once."""


def opening(
    rt: Runtime, origin: str | None, host: str | None, offered: list[str]
) -> tuple[str, str | None] | CloseCode:
    """The subprotocol to accept and the token offered in the handshake (or None), or
    the close code that refuses the handshake (answered HTTP 403)."""
    if not (rt.settings.origin_allowed(origin) or _own_origin(origin, host)):
        return CloseCode.FORBIDDEN
    subprotocol = negotiate(offered)
    if subprotocol is None:
        return CloseCode.UNSUPPORTED_PROTOCOL
    prefix = AUTH_SUBPROTOCOL_PREFIX
    header_token = next((p[len(prefix) :] for p in offered if p.startswith(prefix)), None)
    if header_token is not None and isinstance(
        verify(header_token, rt.keys, now=rt.clock()), AuthError
    ):
        return CloseCode.BAD_TOKEN
    return subprotocol, header_token


def _own_origin(origin: str | None, host: str | None) -> bool:
    """Whether a browser page of this hub itself (``/console``, ``/creator``) opens the
    socket: its Origin names the host the request was sent to. A page elsewhere has
    another Origin; a DNS-rebound one matches but still needs a token in hello."""
    if origin is None or host is None:
        return False
    scheme, _, rest = origin.strip().lower().partition("://")
    return scheme in ("http", "https") and rest.rstrip("/") == host.strip().lower()


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one WebSocket connection from handshake to close (under an ASGI server)."""
    rt: Runtime = websocket.app.state.runtime
    opened = opening(
        rt,
        websocket.headers.get("origin"),
        websocket.headers.get("host"),
        list(websocket.scope.get("subprotocols", [])),
    )
    if isinstance(opened, CloseCode):
        await websocket.close(code=opened)  # before accept: HTTP 403
        return
    subprotocol, header_token = opened
    await websocket.accept(subprotocol=subprotocol)
    codec = codec_for(subprotocol, rt.settings.max_message_bytes)
    admitted = await _authenticate(websocket, rt, codec, header_token)
    if admitted is None:
        return
    session = admitted.session
    try:
        rt.hub.connect(session)
        watch = Watch(rt, session)
        try:
            await _serve(websocket, rt, session, admitted.actor_bucket)
        finally:
            watch.cancel()
            rt.hub.disconnect(session)
    finally:
        rt.actors.close(session.actor, time.monotonic())
    await _close(websocket, rt, session)


async def _receive(websocket: WebSocket) -> str | bytes | None:
    """The next frame's payload; None when the client went away."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text: str | None = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _authenticate(
    websocket: WebSocket,
    rt: Runtime,
    codec: Codec,
    header_token: str | None,
) -> Admitted | None:
    """Read hello (within the hello timeout) and verify its token, or close."""
    frame: str | bytes | None = None
    with anyio.move_on_after(rt.settings.hello_timeout_s) as waiting:
        try:
            frame = await _receive(websocket)
        except WebSocketDisconnect:
            return None
    if waiting.cancelled_caught:  # a socket that says nothing holds a descriptor for nothing
        rt.metrics.hello_timeouts.inc()
        await _safe_close(websocket, CloseCode.IDLE_TIMEOUT, "no hello in time")
        return None
    if frame is None:
        await _safe_close(websocket, CloseCode.BAD_TOKEN, "no hello")
        return None
    admitted = hello_session(rt, codec, frame, header_token, None)
    if isinstance(admitted, Refusal):
        if admitted.error is not None:
            with contextlib.suppress(Exception):  # the peer may be gone already
                data = codec.encode(admitted.error)
                await websocket.send(
                    {"type": "websocket.send", "bytes": data}
                    if codec.binary
                    else {"type": "websocket.send", "text": data.decode()}
                )
        await _safe_close(websocket, admitted.code, admitted.reason)
        return None
    return admitted


class Admitted(NamedTuple):
    """A session opened by hello, and the rate bucket its actor's connections share."""

    session: Session
    actor_bucket: TokenBucket


class Refusal(NamedTuple):
    """Why a first frame opens no session: the close code and reason, and the error to
    send before the close, if any."""

    code: int
    reason: str
    error: Error | None = None


def hello_session(
    rt: Runtime, codec: Codec, frame: str | bytes, header_token: str | None, sink: Sink | None
) -> Admitted | Refusal:
    """The session a first frame opens (its welcome sent), or the refusal: the frame
    must be ``hello`` with a valid token, and the actor under its connection cap.

    An admitted session holds one of its actor's connections (``rt.actors``) until
    whoever serves it calls ``rt.actors.close``."""
    settings = rt.settings
    try:
        hello = codec.decode_client(frame)
    except DecodeError as e:
        return Refusal(CloseCode.BAD_REQUEST, describe(e.code))
    if not isinstance(hello, Hello):  # no token at all: say so, then close
        return Refusal(
            CloseCode.BAD_TOKEN, describe(Code.NOT_AUTHENTICATED), _error(Code.NOT_AUTHENTICATED)
        )
    token = hello.token if hello.token is not None else header_token or ""
    principal = verify(token, rt.keys, now=rt.clock())
    if isinstance(principal, AuthError):
        return Refusal(principal.close_code, describe(principal.code))
    now = time.monotonic()
    actor_bucket = rt.actors.open(principal.actor, now)
    if actor_bucket is None:  # the actor's connection cap (decision 0021)
        rt.metrics.connection_refusals.labels("too_many_connections").inc()
        return Refusal(CloseCode.TOO_MANY_CONNECTIONS, describe(CloseCode.TOO_MANY_CONNECTIONS))
    session = Session(
        uuid.uuid4().hex,
        principal.actor,
        codec,
        principal.expires_at,
        settings.send_buffer_bytes,
        sink=sink,
    )
    session.last_seen = now
    limits = Limits(
        max_message_bytes=settings.max_message_bytes,
        rate_per_s=settings.rate_per_s,
        burst=settings.rate_burst,
        heartbeat_s=settings.heartbeat_s,
    )
    session.send(Welcome(session_id=session.id, limits=limits, actor=principal.actor))
    return Admitted(session, actor_bucket)


async def _serve(
    websocket: WebSocket, rt: Runtime, session: Session, actor_bucket: TokenBucket
) -> None:
    """Read until the client goes or the session is closed; a writer task drains the
    session's outbox meanwhile.

    Closing the session (by the hub, the watch, or the reader) cancels reading
    at once; the commands it already submitted run on to their durable end
    (what is left of them runs in the runtime's tasks, not the connection's).
    """
    with anyio.CancelScope() as reading:
        session.on_close = reading.cancel
        if session.is_closed:  # closed before it started (e.g. shutting down)
            reading.cancel()
        async with anyio.create_task_group() as io:
            io.start_soon(_write_loop, websocket, session)
            await _read_until_closed(websocket, rt, session, actor_bucket)


async def _read_until_closed(
    websocket: WebSocket, rt: Runtime, session: Session, actor_bucket: TokenBucket
) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        await _read_loop(websocket, rt, session, actor_bucket)
    session.close(1000, "client went away")


async def _write_loop(websocket: WebSocket, session: Session) -> None:
    """Drain the outbox."""
    # The client may vanish mid-send: that ends the session, not the server task.
    try:
        while not session.is_closed:
            await session.wait_frames()
            if session.is_closed:
                return  # what is left is flushed by _close
            for frame in session.take_frames():
                await _send(websocket, session, frame)
    except (WebSocketDisconnect, OSError):
        session.close(1000, "client went away")


async def _read_loop(
    websocket: WebSocket, rt: Runtime, session: Session, actor_bucket: TokenBucket
) -> None:
    reader = Reader(rt, session, actor_bucket)
    while True:
        frame = await _receive(websocket)
        if frame is None or session.is_closed:
            return
        if not await reader.handle(frame):
            return


class Reader:
    """What a session's frames do, in the order read: rate limit, decode, dispatch.

    One per session, on either path; its state (the rate limits, the abuse meter,
    the commands in flight) lives as long as the session.
    """

    __slots__ = ("_abuse", "_in_flight", "_limiter", "rt", "session")

    def __init__(self, rt: Runtime, session: Session, actor_bucket: TokenBucket | None) -> None:
        self.rt = rt
        self.session = session
        self._in_flight = _InFlight(MAX_IN_FLIGHT)
        settings = rt.settings
        self._limiter = FrameLimiter(
            TokenBucket(settings.rate_per_s, settings.rate_burst, time.monotonic()), actor_bucket
        )
        # Made on the first refusal: most connections never need one.
        self._abuse: AbuseMeter | None = None

    async def handle(self, frame: str | bytes) -> bool:
        """Handle one frame (``str`` from a text frame); False once reading must stop."""
        rt = self.rt
        session = self.session
        settings = rt.settings
        codec = session.codec
        hub = rt.hub
        now = time.monotonic()
        session.last_seen = now
        limiter = self._limiter
        # Every frame pays before it is decoded, a bad one more after (decision 0021).
        refused_by = limiter.admit(now)
        if refused_by is not None:
            rt.metrics.rate_limited.labels(refused_by).inc()
            command_id = peek_command_id(codec, frame, settings.max_message_bytes)
            if command_id is not None:
                session.send(
                    Refused(
                        command_id=command_id,
                        code=Code.RATE_LIMITED,
                        message=describe(Code.RATE_LIMITED),
                    )
                )
            else:
                session.send(_error(Code.RATE_LIMITED))
            if self._abuse is None:
                self._abuse = AbuseMeter(settings.abuse_refusals, settings.abuse_window_s)
            if self._abuse.refused(now):
                # Refused for its own rate, the connection is the abuser (terminal);
                # for its actor's, the actor's other connections spend (decision 0021).
                if refused_by == "actor":
                    session.close(CloseCode.RATE_LIMITED, "sustained refusals for the actor")
                else:
                    session.close(CloseCode.ABUSE, "sustained rate-limit abuse")
                return False
            return True
        if isinstance(frame, bytes) != codec.binary:
            limiter.penalize(now)
            session.send(_error(Code.WRONG_FRAME_TYPE))
            return True
        try:
            message = codec.decode_client(frame)
        except DecodeError as e:
            limiter.penalize(now)
            rt.metrics.decode_errors.labels(e.code.name).inc()
            session.send(Error(code=e.code, message=e.message[:500]))
            return True
        match message:
            case Ping(nonce=nonce):
                session.send(Pong(nonce=nonce))
            case Join(room=room):
                await hub.join(session, room)
            case Resume(room=room, last_seq=last_seq):
                await hub.join(session, room, last_seq)
            case Leave(room=room):
                hub.leave(session, room)
            case Refresh(token=token):
                principal = verify(token, rt.keys, now=rt.clock())
                if isinstance(principal, AuthError):
                    session.send(_error(principal.code))
                elif principal.actor != session.actor:
                    session.send(_error(Code.FORBIDDEN))
                else:
                    session.expires_at = principal.expires_at
            case Hello():
                session.send(_error(Code.ALREADY_AUTHENTICATED))
            case _:
                # Read on while the command becomes durable, but only so far ahead.
                await self._in_flight.take()
                answered = None
                try:
                    answered = await hub.command(session, message, rt.spawn)
                finally:
                    if answered is None:
                        self._in_flight.release()
                    else:
                        answered.add_done_callback(self._in_flight.release)
        return True


class _InFlight:
    """A connection's commands submitted and not answered yet, at most ``limit``.

    A counter rather than a semaphore: taking a free slot must not suspend
    (a semaphore's checkpoint cost a scheduler round trip per command).
    """

    __slots__ = ("_changed", "_count", "_limit")

    def __init__(self, limit: int) -> None:
        self._count = 0
        self._limit = limit
        self._changed: anyio.Event | None = None

    async def take(self) -> None:
        """Take a slot, waiting only while every slot is taken."""
        while self._count >= self._limit:
            await self._wait()
        self._count += 1

    def release(self, _: object = None) -> None:
        """Give a slot back (also usable as a future's done callback)."""
        self._count -= 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()


class Watch:
    """Close a session at token expiry (unless refreshed) or after the idle timeout.

    A loop timer re-armed when it fires, not a task: a task per connection cost
    several KB of every idle connection (docs/benchmarks.md, idle).
    """

    __slots__ = ("_handle", "_rt", "_session")

    def __init__(self, rt: Runtime, session: Session) -> None:
        self._rt = rt
        self._session = session
        self._handle: asyncio.TimerHandle | None = None
        self._check()

    def _check(self) -> None:
        session = self._session
        if session.is_closed:
            return
        until_expiry = (session.expires_at - self._rt.clock()) / 1000
        until_idle = session.last_seen + self._rt.settings.idle_timeout_s - time.monotonic()
        if until_expiry <= 0:
            session.send(_error(Code.TOKEN_EXPIRED))
            session.close(CloseCode.TOKEN_EXPIRED, "token expired")
        elif until_idle <= 0:
            session.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
        else:
            self._handle = asyncio.get_running_loop().call_later(
                min(until_expiry, until_idle) + 0.001, self._check
            )

    def cancel(self) -> None:
        """Stop watching (the session ended)."""
        if self._handle is not None:
            self._handle.cancel()


async def _send(websocket: WebSocket, session: Session, frame: bytes) -> None:
    if session.codec.binary:
        await websocket.send({"type": "websocket.send", "bytes": frame})
    else:
        await websocket.send({"type": "websocket.send", "text": frame.decode()})


def session_ended(rt: Runtime, session: Session) -> None:
    """Count and log a session that ended (either path)."""
    if session.close_code == CloseCode.SLOW_CONSUMER:
        rt.metrics.slow_consumers.inc()
    logger.log(
        logging.DEBUG if session.close_code == 1000 else logging.INFO,
        "session closed",
        extra={
            "session": session.id,
            "role": session.actor.role,
            "agency": session.actor.agency,
            "code": session.close_code,
            "reason": session.close_reason,
        },
    )


async def _close(websocket: WebSocket, rt: Runtime, session: Session) -> None:
    """Close with the session's code, flushing what is queued first (unless the client
    is the problem)."""
    session_ended(rt, session)
    # Each step bounded: the ASGI server's send waits while the client does not
    # read, and a client that never reads must not keep this task (and socket).
    if session.close_code not in (CloseCode.SLOW_CONSUMER, 1000):
        with anyio.move_on_after(FLUSH_ON_CLOSE_S):
            for frame in session.take_frames():
                try:
                    await _send(websocket, session, frame)
                except Exception:  # the socket is gone; nothing left to flush to
                    break
    with anyio.move_on_after(FLUSH_ON_CLOSE_S):
        await _safe_close(websocket, session.close_code, session.close_reason)


async def _safe_close(websocket: WebSocket, code: int, reason: str) -> None:
    # The peer (or the server shutting down) may have closed it already.
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=fit_close_reason(reason))


def _error(code: Code) -> Error:
    return Error(code=code, message=describe(code), retryable=is_retryable(code))
