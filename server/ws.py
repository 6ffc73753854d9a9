"""The WebSocket endpoint ``/ws``: protocol v1 over ASGI, thin on purpose.

(:class:`server.app.LivepilotApp` hands ``/ws`` connections here directly, past
Starlette's middleware and router; the endpoint still takes Starlette's
``WebSocket``.)

Before accept: the Origin allowlist and subprotocol negotiation (and a token
offered as a ``livepilot.auth.<token>`` subprotocol, for browsers that cannot
send a first frame fast enough). After accept: the first frame must be
``hello`` with a valid token, and the actor must be under its connection cap
(else 4006). Then the connection's own task reads (rate limit, decode, dispatch
to the hub) until the client goes or the session is closed; frames to the
client are written by the hub's fan-out straight to the socket
(:mod:`server.wire`), or, under an ASGI server without that extension, by a
writer task. Token expiry and the idle timeout are a loop timer, not a
task. Whatever ends the session closes the socket with a code from
:mod:`protocol.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

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
from server.wire import SINK_EXTENSION, fit_close_reason

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = ["AUTH_SUBPROTOCOL_PREFIX", "websocket_endpoint"]

AUTH_SUBPROTOCOL_PREFIX: Final = "livepilot.auth."
logger = logging.getLogger("livepilot.ws")
FLUSH_ON_CLOSE_S: Final = 1.0
"""How long a closing session may take to flush what is queued (e.g. access_changed)."""
MAX_IN_FLIGHT: Final = 64
"""Commands of one connection that may be waiting for durability at once."""


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one WebSocket connection from handshake to close."""
    rt: Runtime = websocket.app.state.runtime
    settings = rt.settings
    origin = websocket.headers.get("origin")
    if not (settings.origin_allowed(origin) or _own_origin(origin, websocket.headers.get("host"))):
        await websocket.close(code=CloseCode.FORBIDDEN)  # before accept: HTTP 403
        return
    offered: list[str] = list(websocket.scope.get("subprotocols", []))
    subprotocol = negotiate(offered)
    if subprotocol is None:
        await websocket.close(code=CloseCode.UNSUPPORTED_PROTOCOL)
        return
    prefix = AUTH_SUBPROTOCOL_PREFIX
    header_token = next((p[len(prefix):] for p in offered if p.startswith(prefix)), None)
    if header_token is not None and isinstance(verify(header_token, rt.keys, now=rt.clock()),
                                               AuthError):
        await websocket.close(code=CloseCode.BAD_TOKEN)
        return
    await websocket.accept(subprotocol=subprotocol)
    codec = codec_for(subprotocol, settings.max_message_bytes)
    make_sink: Callable[[bool], Sink] | None = websocket.scope.get(
        "extensions", {}).get(SINK_EXTENSION)
    sink = make_sink(codec.binary) if make_sink is not None else None
    session = await _authenticate(websocket, rt, codec, header_token, sink)
    if session is None:
        return
    actor_bucket = rt.actors.open(session.actor, time.monotonic())
    if actor_bucket is None:  # the actor's connection cap (decision 0021)
        rt.metrics.connection_refusals.labels("too_many_connections").inc()
        await _safe_close(websocket, CloseCode.TOO_MANY_CONNECTIONS,
                          describe(CloseCode.TOO_MANY_CONNECTIONS))
        return
    try:
        limits = Limits(max_message_bytes=settings.max_message_bytes,
                        rate_per_s=settings.rate_per_s, burst=settings.rate_burst,
                        heartbeat_s=settings.heartbeat_s)
        session.send(Welcome(session_id=session.id, limits=limits, actor=session.actor))
        rt.hub.connect(session)
        watch = _Watch(rt, session)
        try:
            await _serve(websocket, rt, session, actor_bucket)
        finally:
            watch.cancel()
            rt.hub.disconnect(session)
    finally:
        rt.actors.close(session.actor, time.monotonic())
    await _close(websocket, rt, session)


def _own_origin(origin: str | None, host: str | None) -> bool:
    """Whether a browser page of this hub itself (``/console``, ``/creator``) opens the
    socket: its Origin names the host the request was sent to. A page elsewhere has
    another Origin; a DNS-rebound one matches but still needs a token in hello."""
    if origin is None or host is None:
        return False
    scheme, _, rest = origin.strip().lower().partition("://")
    return scheme in ("http", "https") and rest.rstrip("/") == host.strip().lower()


async def _receive(websocket: WebSocket) -> str | bytes | None:
    """The next frame's payload; None when the client went away."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text: str | None = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _authenticate(
    websocket: WebSocket, rt: Runtime, codec: Codec, header_token: str | None,
    sink: Sink | None,
) -> Session | None:
    """Read hello (within the hello timeout) and verify its token, or close.

    The session is not welcomed yet: the caller admits it first."""
    settings = rt.settings
    frame: str | bytes | None = None
    with anyio.move_on_after(settings.hello_timeout_s) as waiting:
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
    try:
        hello = codec.decode_client(frame)
    except DecodeError as e:
        await _safe_close(websocket, CloseCode.BAD_REQUEST, describe(e.code))
        return None
    if not isinstance(hello, Hello):  # no token at all: say so, then close
        with contextlib.suppress(Exception):  # the peer may be gone already
            data = codec.encode(_error(Code.NOT_AUTHENTICATED))
            await websocket.send({"type": "websocket.send", "bytes": data} if codec.binary
                                 else {"type": "websocket.send", "text": data.decode()})
        await _safe_close(websocket, CloseCode.BAD_TOKEN, describe(Code.NOT_AUTHENTICATED))
        return None
    token = hello.token if hello.token is not None else header_token or ""
    principal = verify(token, rt.keys, now=rt.clock())
    if isinstance(principal, AuthError):
        await _safe_close(websocket, principal.close_code, describe(principal.code))
        return None
    session = Session(uuid.uuid4().hex, principal.actor, codec, principal.expires_at,
                      settings.send_buffer_bytes, sink=sink)
    session.last_seen = time.monotonic()
    return session


async def _serve(websocket: WebSocket, rt: Runtime, session: Session,
                 actor_bucket: TokenBucket) -> None:
    """Read until the client goes or the session is closed.

    Closing the session (by the hub, the watch, or the reader) cancels reading
    at once; the commands it already submitted run on to their durable end
    (what is left of them runs in the runtime's tasks, not the connection's).
    No task of its own per connection: each one costs every idle connection
    several KB (docs/benchmarks.md, idle).
    """
    with anyio.CancelScope() as reading:
        session.on_close = reading.cancel
        if session.is_closed:  # closed before it started (e.g. shutting down)
            reading.cancel()
        if session.sink is not None:
            await _read_until_closed(websocket, rt, session, actor_bucket)
        else:
            async with anyio.create_task_group() as io:
                io.start_soon(_write_loop, websocket, session)
                await _read_until_closed(websocket, rt, session, actor_bucket)


async def _read_until_closed(websocket: WebSocket, rt: Runtime, session: Session,
                             actor_bucket: TokenBucket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        await _read_loop(websocket, rt, session, actor_bucket)
    session.close(1000, "client went away")


async def _write_loop(websocket: WebSocket, session: Session) -> None:
    """Drain the outbox (only under an ASGI server without the direct sink)."""
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


async def _read_loop(websocket: WebSocket, rt: Runtime, session: Session,
                     actor_bucket: TokenBucket) -> None:
    settings = rt.settings
    in_flight = _InFlight(MAX_IN_FLIGHT)
    codec = session.codec
    hub = rt.hub
    limiter = FrameLimiter(
        TokenBucket(settings.rate_per_s, settings.rate_burst, time.monotonic()), actor_bucket)
    abuse: AbuseMeter | None = None  # made on the first refusal: most connections never need one
    while True:
        frame = await _receive(websocket)
        if frame is None or session.is_closed:
            return
        now = time.monotonic()
        session.last_seen = now
        # Every frame pays before it is decoded, a bad one more after (decision 0021).
        refused_by = limiter.admit(now)
        if refused_by is not None:
            rt.metrics.rate_limited.labels(refused_by).inc()
            command_id = peek_command_id(codec, frame, settings.max_message_bytes)
            if command_id is not None:
                session.send(Refused(command_id=command_id, code=Code.RATE_LIMITED,
                                     message=describe(Code.RATE_LIMITED)))
            else:
                session.send(_error(Code.RATE_LIMITED))
            if abuse is None:
                abuse = AbuseMeter(settings.abuse_refusals, settings.abuse_window_s)
            if abuse.refused(now):
                # Refused for its own rate, the connection is the abuser (terminal);
                # for its actor's, the actor's other connections spend (decision 0021).
                if refused_by == "actor":
                    session.close(CloseCode.RATE_LIMITED, "sustained refusals for the actor")
                else:
                    session.close(CloseCode.ABUSE, "sustained rate-limit abuse")
                return
            continue
        if isinstance(frame, bytes) != codec.binary:
            limiter.penalize(now)
            session.send(_error(Code.WRONG_FRAME_TYPE))
            continue
        try:
            message = codec.decode_client(frame)
        except DecodeError as e:
            limiter.penalize(now)
            rt.metrics.decode_errors.labels(e.code.name).inc()
            session.send(Error(code=e.code, message=e.message[:500]))
            continue
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
                await in_flight.take()
                answered = None
                try:
                    answered = await hub.command(session, message, rt.spawn)
                finally:
                    if answered is None:
                        in_flight.release()
                    else:
                        answered.add_done_callback(in_flight.release)


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


class _Watch:
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
                min(until_expiry, until_idle) + 0.001, self._check)

    def cancel(self) -> None:
        """Stop watching (the session ended)."""
        if self._handle is not None:
            self._handle.cancel()


async def _send(websocket: WebSocket, session: Session, frame: bytes) -> None:
    # The ASGI message straight to the server: Starlette's send_text/send_bytes only
    # re-check a state that the session's lifecycle already guarantees.
    if session.codec.binary:
        await websocket._send({"type": "websocket.send", "bytes": frame})
    else:
        await websocket._send({"type": "websocket.send", "text": frame.decode()})


async def _close(websocket: WebSocket, rt: Runtime, session: Session) -> None:
    """Close with the session's code; without a sink, flush what is queued first
    (unless the client is the problem). With one, it is closed already."""
    if session.close_code == CloseCode.SLOW_CONSUMER:
        rt.metrics.slow_consumers.inc()
    logger.log(logging.DEBUG if session.close_code == 1000 else logging.INFO, "session closed",
               extra={"session": session.id, "role": session.actor.role,
                      "agency": session.actor.agency, "code": session.close_code,
                      "reason": session.close_reason})
    if session.sink is None:
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
