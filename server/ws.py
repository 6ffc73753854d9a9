"""The WebSocket endpoint ``/ws``: protocol v1 over Starlette, thin on purpose.

Before accept: the Origin allowlist and subprotocol negotiation (and a token
offered as a ``livepilot.auth.<token>`` subprotocol, for browsers that cannot
send a first frame fast enough). After accept: the first frame must be
``hello`` with a valid token. Then three tasks, owned by one task group, serve
the session: a reader (decode, rate limit, dispatch to the hub), a writer
(drains the session's bounded outbox) and a watchdog (token expiry, idle
timeout). Whatever ends the session closes the socket with a code from
:mod:`protocol.errors`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio
from anyio.abc import TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol.codec import Codec, DecodeError, codec_for, negotiate
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
from server.hub.ratelimit import AbuseMeter, TokenBucket
from server.hub.session import Session

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = ["AUTH_SUBPROTOCOL_PREFIX", "websocket_endpoint"]

AUTH_SUBPROTOCOL_PREFIX: Final = "livepilot.auth."
logger = logging.getLogger("livepilot.ws")
FLUSH_ON_CLOSE_S: Final = 1.0
MAX_IN_FLIGHT: Final = 64
"""Commands of one connection that may be waiting for durability at once."""
"""How long a closing session may take to flush what is queued (e.g. access_changed)."""


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Serve one WebSocket connection from handshake to close."""
    rt: Runtime = websocket.app.state.runtime
    settings = rt.settings
    if not settings.origin_allowed(websocket.headers.get("origin")):
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
    session = await _authenticate(websocket, rt, codec, header_token)
    if session is None:
        return
    rt.hub.connect(session)
    try:
        await _serve(websocket, rt, session)
    finally:
        rt.hub.disconnect(session)
    await _close(websocket, session)


async def _receive(websocket: WebSocket, codec: Codec) -> str | bytes | None:
    """The next frame's payload; None when the client went away."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text: str | None = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _authenticate(
    websocket: WebSocket, rt: Runtime, codec: Codec, header_token: str | None
) -> Session | None:
    """Read hello (within the idle timeout) and verify its token, or close."""
    settings = rt.settings
    frame: str | bytes | None = None
    with anyio.move_on_after(settings.idle_timeout_s):
        try:
            frame = await _receive(websocket, codec)
        except WebSocketDisconnect:
            return None
    if frame is None:
        await _safe_close(websocket, CloseCode.BAD_TOKEN, "no hello")
        return None
    try:
        hello = codec.decode_client(frame)
    except DecodeError as e:
        await _safe_close(websocket, CloseCode.BAD_REQUEST, describe(e.code))
        return None
    if not isinstance(hello, Hello):  # no token at all
        await _safe_close(websocket, CloseCode.BAD_TOKEN, describe(Code.NOT_AUTHENTICATED))
        return None
    token = hello.token if hello.token is not None else header_token or ""
    principal = verify(token, rt.keys, now=rt.clock())
    if isinstance(principal, AuthError):
        await _safe_close(websocket, principal.close_code, describe(principal.code))
        return None
    session = Session(uuid.uuid4().hex, principal.actor, codec, principal.expires_at,
                      settings.send_queue_size)
    limits = Limits(max_message_bytes=settings.max_message_bytes, rate_per_s=settings.rate_per_s,
                    burst=settings.rate_burst, heartbeat_s=settings.heartbeat_s)
    session.send(Welcome(session_id=session.id, limits=limits, actor=principal.actor))
    return session


async def _serve(websocket: WebSocket, rt: Runtime, session: Session) -> None:
    last_seen = [time.monotonic()]
    async with anyio.create_task_group() as tg:

        async def reader() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                await _read_loop(websocket, rt, session, last_seen, tg)
            session.close(1000, "client went away")

        async def writer() -> None:
            # The client may vanish mid-send: that ends the session, not the server task.
            try:
                while True:
                    await session.wait_frames()
                    for frame in session.take_frames():
                        await _send(websocket, frame)
            except (WebSocketDisconnect, OSError):
                session.close(1000, "client went away")

        tg.start_soon(reader)
        tg.start_soon(writer)
        tg.start_soon(_watchdog, rt, session, last_seen)
        await session.closed.wait()
        tg.cancel_scope.cancel()


async def _read_loop(websocket: WebSocket, rt: Runtime, session: Session,
                     last_seen: list[float], tg: TaskGroup) -> None:
    settings = rt.settings
    codec = session.codec
    hub = rt.hub
    bucket = TokenBucket(settings.rate_per_s, settings.rate_burst, time.monotonic())
    in_flight = anyio.Semaphore(MAX_IN_FLIGHT)
    abuse = AbuseMeter(settings.abuse_refusals, settings.abuse_window_s)
    while True:
        frame = await _receive(websocket, codec)
        if frame is None:
            return
        now = time.monotonic()
        last_seen[0] = now
        if isinstance(frame, bytes) != codec.binary:
            session.send(_error(Code.WRONG_FRAME_TYPE))
            continue
        try:
            message = codec.decode_client(frame)
        except DecodeError as e:
            rt.metrics.decode_errors.labels(e.code.name).inc()
            session.send(Error(code=e.code, message=e.message[:500]))
            continue
        if not bucket.take(now):
            rt.metrics.rate_limited.inc()
            command_id = getattr(message, "command_id", None)
            if command_id is not None:
                session.send(Refused(command_id=command_id, code=Code.RATE_LIMITED,
                                     message=describe(Code.RATE_LIMITED)))
            else:
                session.send(_error(Code.RATE_LIMITED))
            if abuse.refused(now):
                session.close(CloseCode.ABUSE, "sustained rate-limit abuse")
                return
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
                await in_flight.acquire()
                spawned = False

                def spawn(fn: Callable[..., Awaitable[None]], *args: object) -> None:
                    nonlocal spawned
                    spawned = True
                    tg.start_soon(_released, in_flight, fn, *args)

                try:
                    await hub.command(session, message, spawn)
                finally:
                    if not spawned:
                        in_flight.release()


async def _released(slot: anyio.Semaphore, fn: Callable[..., Awaitable[None]],
                    *args: object) -> None:
    try:
        await fn(*args)
    finally:
        slot.release()


async def _watchdog(rt: Runtime, session: Session, last_seen: list[float]) -> None:
    """Close at token expiry (unless refreshed) or after the idle timeout."""
    idle = rt.settings.idle_timeout_s
    while True:
        until_expiry = (session.expires_at - rt.clock()) / 1000
        until_idle = last_seen[0] + idle - time.monotonic()
        if until_expiry <= 0:
            session.send(_error(Code.TOKEN_EXPIRED))
            session.close(CloseCode.TOKEN_EXPIRED, "token expired")
            return
        if until_idle <= 0:
            session.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
            return
        await anyio.sleep(min(until_expiry, until_idle) + 0.001)


async def _send(websocket: WebSocket, frame: str | bytes) -> None:
    # The ASGI message straight to the server: Starlette's send_text/send_bytes only
    # re-check a state that the session's lifecycle already guarantees.
    if isinstance(frame, str):
        await websocket._send({"type": "websocket.send", "text": frame})
    else:
        await websocket._send({"type": "websocket.send", "bytes": frame})


async def _close(websocket: WebSocket, session: Session) -> None:
    """Flush what is queued (unless the client is the problem), then close with the code."""
    if session.close_code not in (CloseCode.SLOW_CONSUMER, 1000):
        with anyio.move_on_after(FLUSH_ON_CLOSE_S):
            for frame in session.take_frames():
                try:
                    await _send(websocket, frame)
                except Exception:  # the socket is gone; nothing left to flush to
                    break
    if session.close_code == CloseCode.SLOW_CONSUMER:
        rt: Runtime = websocket.app.state.runtime
        rt.metrics.slow_consumers.inc()
    logger.log(logging.DEBUG if session.close_code == 1000 else logging.INFO, "session closed",
               extra={"session": session.id, "role": session.actor.role,
                      "agency": session.actor.agency, "code": session.close_code,
                      "reason": session.close_reason})
    await _safe_close(websocket, session.close_code, session.close_reason)


async def _safe_close(websocket: WebSocket, code: int, reason: str) -> None:
    # The peer (or the server shutting down) may have closed it already.
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason[:120])


def _error(code: Code) -> Error:
    return Error(code=code, message=describe(code), retryable=is_retryable(code))
