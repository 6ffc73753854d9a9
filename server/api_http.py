"""The HTTP API's plumbing: error answers, who is calling, and decoding bodies.

Every endpoint of :mod:`server.api` is wrapped in :func:`endpoint`, which turns
an :class:`ApiError` (or a storage failure) into the JSON error body with its
HTTP status (:func:`http_status`; the mapping is in the :mod:`server.api`
docstring). :func:`authenticate` checks the bearer token (401 otherwise) and
charges a write (POST) to the caller's budget (429 RATE_LIMITED past it);
:func:`read_command` and :func:`read_query` decode a bounded JSON body or the
query string into a protocol type, with the protocol's error codes.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec
import redis.exceptions
from msgspec import Struct
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from protocol import access as a
from protocol.access import AccessEvent
from protocol.codec import classify_decode_error
from protocol.errors import Code, describe, is_retryable
from protocol.model import Actor
from server.auth import AuthError, verify
from server.domain.refusal import Refusal
from server.log.base import CorruptRecordError, LogError

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = [
    "ApiError", "ErrorBody", "Events", "authenticate", "endpoint", "http_status",
    "json_response", "read_command", "read_query", "refusal_error", "require_creator",
    "require_staff", "runtime_of", "submit",
]  # fmt: skip

log = logging.getLogger("livepilot.api")

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]

_STATUS: Final[dict[int, int]] = {
    Code.BAD_TOKEN: 401,
    Code.TOKEN_EXPIRED: 401,
    Code.UNKNOWN_REQUEST: 404,
    Code.NOT_FOUND: 404,
    Code.NOT_LINKED: 409,
    Code.ALREADY_LINKED: 409,
    Code.REQUEST_PENDING: 409,
    Code.EXTENSION_PENDING: 409,
    Code.ACCESS_PENDING: 409,
    Code.REQUEST_EXPIRED: 409,
    Code.REQUEST_CLOSED: 409,
    Code.LINK_ENDED: 409,
    Code.ALREADY_GRANTED: 409,
    Code.RATE_LIMITED: 429,
    Code.INTERNAL: 500,
}


def http_status(code: int) -> int:
    """The HTTP status an error code answers with (see the :mod:`server.api` docstring)."""
    if code in _STATUS:
        return _STATUS[code]
    if 100 <= code < 200:
        return 400
    if 200 <= code < 300:
        return 403
    if 300 <= code < 400:
        return 409
    if 500 <= code < 600:
        return 503
    return 500


class ApiError(Exception):
    """An error answer: a protocol code, a message, and optionally a status/headers."""

    def __init__(
        self,
        code: Code,
        message: str = "",
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or describe(code))
        self.code = code
        self.message = message or describe(code)
        self.status = http_status(code) if status is None else status
        self.headers = dict(headers or {})


class ErrorBody(Struct, frozen=True, kw_only=True):
    """The JSON body of every error answer."""

    code: int
    name: str
    message: str
    retryable: bool


class Events(Struct, frozen=True, kw_only=True):
    """The answer to a command: the events it recorded."""

    events: list[AccessEvent]


_encoder = msgspec.json.Encoder()


def json_response(value: object, status: int = 200) -> Response:
    """``value`` encoded as a JSON answer."""
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


def _error_response(error: ApiError) -> Response:
    body = ErrorBody(
        code=int(error.code),
        name=error.code.name,
        message=error.message,
        retryable=is_retryable(error.code),
    )
    response = json_response(body, error.status)
    response.headers.update(error.headers)
    return response


def refusal_error(refusal: Refusal) -> ApiError:
    """The error answer to a decider's refusal."""
    return ApiError(refusal.code, refusal.message)


def endpoint(handler: Handler) -> Handler:
    """Answer an :class:`ApiError` (or a storage failure) with its JSON error."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as error:
            return _error_response(error)
        except ClientDisconnect:  # nobody is left to read an answer
            return Response(status_code=400)
        except CorruptRecordError:  # the hub counted and logged it, once per room
            return _error_response(ApiError(Code.ROOM_UNAVAILABLE))
        except LogError:
            log.exception("storage failure on %s %s", request.method, request.url.path)
            return _error_response(ApiError(Code.UNAVAILABLE, "storage unavailable"))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            # Redis down or slow (many nodes): retryable, one line, no traceback per request.
            log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, error)
            return _error_response(ApiError(Code.UNAVAILABLE, "storage unavailable"))
        except Exception:
            log.exception("unexpected failure on %s %s", request.method, request.url.path)
            return _error_response(ApiError(Code.INTERNAL))

    return wrapper


# --- who is calling -------------------------------------------------------------------


def runtime_of(request: Request) -> Runtime:
    """The app's runtime, or 503 while the server is starting or stopping."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(Code.UNAVAILABLE, "the server is starting or stopping")
    return runtime


def authenticate(request: Request, rt: Runtime) -> Actor:
    """The token's actor, or 401; a write (POST) past the actor's budget: 429."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    principal = verify(
        token.strip() if scheme.lower() == "bearer" else None, rt.keys, now=rt.clock()
    )
    if isinstance(principal, AuthError):
        challenge = 'Bearer realm="livepilot", error="invalid_token"'
        raise ApiError(principal.code, principal.reason, headers={"WWW-Authenticate": challenge})
    if request.method == "POST":
        _charge_write(rt, principal.actor)
    return principal.actor


def _charge_write(rt: Runtime, actor: Actor) -> None:
    """One write of ``actor``'s budget, shared by all its tokens (decision 0021)."""
    wait = rt.api_writers.take(actor, time.monotonic())
    if wait > 0:
        rt.metrics.rate_limited.labels("http").inc()
        retry_after = math.ceil(min(wait, 3600.0))  # whole seconds (RFC 9110)
        raise ApiError(Code.RATE_LIMITED, headers={"Retry-After": str(retry_after)})


def require_creator(request: Request, rt: Runtime) -> Actor:
    """The token's actor if it is a creator, or 401/403."""
    actor = authenticate(request, rt)
    if actor.role != "creator":
        raise ApiError(Code.CREATOR_ONLY, "this endpoint is the creator's")
    return actor


def require_staff(request: Request, rt: Runtime) -> Actor:
    """The token's actor if it is agency staff, or 401/403."""
    actor = authenticate(request, rt)
    if actor.role != "staff" or actor.agency is None:
        raise ApiError(Code.FORBIDDEN, "this endpoint is for agency staff")
    return actor


# --- bodies and queries ----------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(Code.BAD_REQUEST, "Content-Length is not a number") from None
        if size > limit:
            raise ApiError(Code.TOO_LARGE, f"body of {size} bytes exceeds {limit}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ApiError(Code.TOO_LARGE, f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation(exc: msgspec.ValidationError) -> ApiError:
    text = str(exc)
    # An unknown tag reads "Invalid value '<tag>' - at `$.type`" (see protocol.codec).
    if text.startswith("Invalid value ") and text.endswith(" - at `$.type`"):
        return ApiError(Code.UNKNOWN_TYPE, text)
    return ApiError(Code.WRONG_FIELD_TYPE, text)


async def read_command(
    request: Request, rt: Runtime, kind: type[T], *, defaults: Mapping[str, object] = {},
    fixed: Mapping[str, object] = {}, optional: bool = False,
) -> T:  # fmt: skip
    """Decode the body as ``kind`` (a protocol struct or a union of them).

    ``defaults`` fill fields the body leaves out; ``fixed`` (path parameters)
    override the body. With ``optional``, an empty body stands for ``{}``.
    """
    data = await _read_body(request, rt.settings.max_message_bytes)
    if optional and not data.strip():
        data = b"{}"
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        # msgspec 0.23 reports bad UTF-8 as a DecodeError; earlier releases raised UnicodeError.
        if classify_decode_error(exc).code == Code.INVALID_UTF8:
            raise ApiError(Code.INVALID_UTF8, str(exc)) from None
        raise ApiError(Code.MALFORMED, f"the body is not JSON: {exc}") from None
    except RecursionError:  # msgspec on 3.11 recurses on nesting
        raise ApiError(Code.TOO_DEEP, "the body is nested too deeply") from None
    except UnicodeError as exc:
        raise ApiError(Code.INVALID_UTF8, str(exc)) from None
    if not isinstance(raw, dict):
        raise ApiError(Code.WRONG_FIELD_TYPE, "the body must be a JSON object")
    for key, value in defaults.items():
        raw.setdefault(key, value)
    raw.update(fixed)
    try:
        command: T = msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise _validation(exc) from None
    except RecursionError:
        raise ApiError(Code.TOO_DEEP, "the body is nested too deeply") from None
    return command


def read_query(request: Request, kind: type[T]) -> T:
    """The query string as ``kind``, or INVALID_ARGUMENT."""
    try:
        return msgspec.convert(dict(request.query_params), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(Code.INVALID_ARGUMENT, f"query: {exc}") from None


async def submit(rt: Runtime, actor: Actor, command: a.AccessCommand) -> list[AccessEvent]:
    """Submit a party's access command: its events, or the refusal as an error answer."""
    decision = await rt.access.submit(actor, command)
    if isinstance(decision, Refusal):
        raise refusal_error(decision)
    return decision
