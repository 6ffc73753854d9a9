"""The HTTP JSON API: partnership and LIVE Manager access (R1-R9), the creator's
inbox (R14) and audit trail (R16), post-LIVE figures and account health (R12).

Everything that changes access goes through
:meth:`~server.access_service.AccessService.submit` (which decides, stores,
audits with the real actor, notifies the creator and cuts staff off on unlink
or revoke); platform facts go through
:meth:`~server.access_service.AccessService.record_platform_fact`.

Endpoints (JSON bodies and responses; ``{id}`` a request id):

======  ================================  ========  =====================================
method  path                              who       body -> response
======  ================================  ========  =====================================
POST    ``/api/requests``                 staff     RequestLink | RequestAccess |
                                                    RequestExtension (``type`` required,
                                                    ``request_id`` optional) -> 201
                                                    ``{"request", "events"}``
GET     ``/api/creators``                 staff     -> ``{"creators": [CreatorStatus]}``
POST    ``/api/unlink``                   either    Unlink (own side may be omitted) ->
                                                    ``{"events"}``
GET     ``/api/requests``                 creator   ``?expired=0|1`` (default 1) ->
                                                    ``{"requests": [AccessRequest]}``
POST    ``/api/requests/{id}/accept``     creator   optional ``{"scopes": [...]}`` ->
                                                    ``{"events"}``
POST    ``/api/requests/{id}/decline``    creator   none -> ``{"events"}``
POST    ``/api/revoke``                   creator   RevokeAccess ``{"agency"}`` ->
                                                    ``{"events"}``
GET     ``/api/notifications``            creator   ``?unread=0|1&limit=`` ->
                                                    ``{"notifications": [Notification]}``
POST    ``/api/notifications/read``       creator   ``{"ids": [...]}`` -> ``{"changed": n}``
GET     ``/api/audit``                    creator   ``?staff=&agency=&family=&since=&until=
                                                    &limit=`` -> ``{"entries": [AuditEntry]}``
GET     ``/api/lives``                    creator,  ``?creator=`` (staff) -> ``{"creator",
                                          staff*    "status", "current", "lives"}``
GET     ``/api/health``                   creator,  ``?creator=`` (staff) -> ``{"creator",
                                          staff*    "violations"}``
POST    ``/api/platform``                 operator  RegisterAgency | RecordSharing ->
                                                    ``{"events"}``
======  ================================  ========  =====================================

``staff*``: a staff member with access in force to that creator (R12: after-LIVE
features need access, not a live stream); the creator reads their own.

Choices:

* **Auth**: ``Authorization: Bearer <jwt>`` (:func:`server.auth.verify` with the
  runtime's keys and clock). Missing, malformed or forged: 401 BAD_TOKEN;
  expired: 401 TOKEN_EXPIRED; both with ``WWW-Authenticate: Bearer``.
* **Request ids**: the client may choose ``request_id`` (an ``Id``; a UUID is
  best, ids are global), which makes a retry safe: resending the same request
  answers 200 with the request already stored. Left out, the server makes one
  (``req-<uuid4 hex>``) and returns it. Either way the response carries the
  request.
* **Roles**: a party command from the wrong role is still submitted, so the
  decider refuses it (403 FORBIDDEN) and the attempt lands in the audit trail;
  reads are refused at the door (403 CREATOR_ONLY / FORBIDDEN).
* **Operator** (``/api/platform``): there is no operator role in tokens and no
  operator secret in the settings, so platform facts are accepted only from a
  loopback client (127.0.0.1 / ::1) that came through no proxy (no
  ``Forwarded`` / ``X-Forwarded-For`` / ``X-Real-IP`` header): the platform
  feed or an operator runs on the node itself. Behind a reverse proxy on the
  same host, the proxy must set ``X-Forwarded-For`` (uvicorn then reports the
  real client), or this endpoint must not be routed.
* **Errors**: ``{"code", "name", "message", "retryable"}`` with codes from
  :mod:`protocol.errors`. HTTP status by range - 100-199: 400, 200-299: 403,
  300-399: 409, 500-599: 503 - except 401 for BAD_TOKEN / TOKEN_EXPIRED, 404 for
  UNKNOWN_REQUEST / NOT_FOUND (and unknown paths), 409 for the access workflow's
  state conflicts (NOT_LINKED, ALREADY_LINKED, the *_PENDING codes,
  REQUEST_EXPIRED, REQUEST_CLOSED, LINK_ENDED, ALREADY_GRANTED), 429 for
  RATE_LIMITED, 500 for INTERNAL, 405 for a known path with another method. The
  code is authoritative; the status is for HTTP tooling.
* **Bodies**: at most ``settings.max_message_bytes`` (TOO_LARGE, checked on
  ``Content-Length`` and while reading), a JSON object (MALFORMED,
  INVALID_UTF8, TOO_DEEP when nested beyond the decoder's depth), fields of the
  :mod:`protocol.access` type (WRONG_FIELD_TYPE; an unknown ``type`` is
  UNKNOWN_TYPE; times are bounded by the protocol's ``Millis``). Query
  parameters out of range: INVALID_ARGUMENT. Unknown fields are ignored.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Final, TypeVar

import msgspec
from msgspec import Meta, Struct
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from protocol import access as a
from protocol.access import AccessEvent, AccessRequest, RequestKind
from protocol.errors import Code, describe, is_retryable
from protocol.model import Actor, Id, LiveSummary
from server.auth import AuthError, verify
from server.domain.access import creators_of, pending_requests, request_view
from server.domain.refusal import Refusal
from server.journal import AuditQuery
from server.log.base import LogError

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = ["ApiError", "api_routes", "http_status"]

log = logging.getLogger("livepilot.api")

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]

INT64_MAX: Final = 2**63 - 1
MAX_PAGE: Final = 1000
"""Most entries one audit or inbox page returns."""

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
_LOOPBACK_NAMES: Final = frozenset({"localhost"})
_PROXY_HEADERS: Final = ("forwarded", "x-forwarded-for", "x-real-ip")


def http_status(code: int) -> int:
    """The HTTP status an error code answers with (see the module docstring)."""
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

    def __init__(self, code: Code, message: str = "", *, status: int | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
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


# --- request and response bodies ------------------------------------------------

RequestCommand = a.RequestLink | a.RequestAccess | a.RequestExtension


class AcceptBody(Struct, frozen=True, kw_only=True):
    """``POST /api/requests/{id}/accept``: the families granted (None: all, R5)."""

    scopes: a.Scopes | None = None


class MarkRead(Struct, frozen=True, kw_only=True):
    """``POST /api/notifications/read``."""

    ids: Annotated[list[Id], Meta(max_length=MAX_PAGE)]


Page = Annotated[int, Meta(ge=1, le=MAX_PAGE)]
Time = Annotated[int, Meta(ge=0, le=INT64_MAX)]


class AuditParams(Struct, frozen=True, kw_only=True):
    """``GET /api/audit`` query: every given filter must match (R16)."""

    staff: Id | None = None
    agency: Id | None = None
    family: Id | None = None
    since: Time | None = None
    until: Time | None = None
    limit: Page = 100


class InboxParams(Struct, frozen=True, kw_only=True):
    """``GET /api/notifications`` query."""

    unread: bool = False
    limit: Page = 100


class RequestsParams(Struct, frozen=True, kw_only=True):
    """``GET /api/requests`` query."""

    expired: bool = True


class RoomParams(Struct, frozen=True, kw_only=True):
    """``GET /api/lives`` and ``/api/health`` query: whose room (staff must say)."""

    creator: Id | None = None


class Events(Struct, frozen=True, kw_only=True):
    """The answer to a command: the events it recorded."""

    events: list[AccessEvent]


class RequestCreated(Struct, frozen=True, kw_only=True):
    """The answer to a new request: the request as stored, and the events."""

    request: AccessRequest
    events: list[AccessEvent]


_encoder = msgspec.json.Encoder()


def _json(value: object, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


def _error_response(error: ApiError) -> Response:
    body = ErrorBody(code=int(error.code), name=error.code.name, message=error.message,
                     retryable=is_retryable(error.code))
    response = _json(body, error.status)
    response.headers.update(error.headers)
    return response


def _refused(refusal: Refusal) -> ApiError:
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
        except LogError:
            log.exception("storage failure on %s %s", request.method, request.url.path)
            return _error_response(ApiError(Code.UNAVAILABLE, "storage unavailable"))
        except Exception:
            log.exception("unexpected failure on %s %s", request.method, request.url.path)
            return _error_response(ApiError(Code.INTERNAL))

    return wrapper


# --- who is calling -------------------------------------------------------------------


def _runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(Code.UNAVAILABLE, "the server is starting or stopping")
    return runtime


def _actor(request: Request, rt: Runtime) -> Actor:
    """The token's actor, or 401."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    principal = verify(token.strip() if scheme.lower() == "bearer" else None, rt.keys,
                       now=rt.clock())
    if isinstance(principal, AuthError):
        challenge = 'Bearer realm="livepilot", error="invalid_token"'
        raise ApiError(principal.code, principal.reason,
                       headers={"WWW-Authenticate": challenge})
    return principal.actor


def _creator(request: Request, rt: Runtime) -> Actor:
    actor = _actor(request, rt)
    if actor.role != "creator":
        raise ApiError(Code.CREATOR_ONLY, "this endpoint is the creator's")
    return actor


def _staff(request: Request, rt: Runtime) -> Actor:
    actor = _actor(request, rt)
    if actor.role != "staff" or actor.agency is None:
        raise ApiError(Code.FORBIDDEN, "this endpoint is for agency staff")
    return actor


def _operator(request: Request) -> None:
    """Platform facts only from the node itself (see the module docstring)."""
    client = request.client
    if client is None or any(h in request.headers for h in _PROXY_HEADERS):
        raise ApiError(Code.FORBIDDEN, "platform facts are accepted from the node only")
    host = client.host
    if host in _LOOPBACK_NAMES:
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ApiError(Code.FORBIDDEN, "platform facts are accepted from the node only") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_loopback:
        raise ApiError(Code.FORBIDDEN, "platform facts are accepted from the node only")


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


async def _command(
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


def _query(request: Request, kind: type[T]) -> T:
    try:
        return msgspec.convert(dict(request.query_params), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(Code.INVALID_ARGUMENT, f"query: {exc}") from None


async def _submit(rt: Runtime, actor: Actor, command: a.AccessCommand) -> list[AccessEvent]:
    decision = await rt.access.submit(actor, command)
    if isinstance(decision, Refusal):
        raise _refused(decision)
    return decision


# --- agency staff --------------------------------------------------------------------


def _kind(command: RequestCommand) -> RequestKind:
    match command:
        case a.RequestLink(with_access=True):
            return "link_and_access"
        case a.RequestLink():
            return "link"
        case a.RequestAccess():
            return "access"
        case a.RequestExtension():
            return "extension"
    raise AssertionError(command)  # pragma: no cover - the union is closed


@endpoint
async def send_request(request: Request) -> Response:
    """R1, R7, R8: agency staff send a link, access or extension request."""
    rt = _runtime(request)
    actor = _actor(request, rt)
    command: RequestCommand = await _command(
        request, rt, RequestCommand,  # type: ignore[arg-type]  # a union of structs
        defaults={"request_id": f"req-{uuid.uuid4().hex}"},
    )
    decision = await rt.access.submit(actor, command)
    now = rt.clock()
    if isinstance(decision, Refusal):
        stored = rt.access.book.requests.get(command.request_id)
        if (decision.code == Code.ALREADY_EXISTS and stored is not None
                and stored.agency == actor.agency and stored.creator == command.creator
                and stored.kind == _kind(command)):
            view = request_view(rt.access.book, command.request_id, now)
            assert view is not None
            return _json(RequestCreated(request=view, events=[]))  # a safe retry
        raise _refused(decision)
    view = request_view(rt.access.book, command.request_id, now)
    assert view is not None  # just stored
    return _json(RequestCreated(request=view, events=decision), 201)


@endpoint
async def list_creators(request: Request) -> Response:
    """The agency's creators with their status, grant and waiting requests."""
    rt = _runtime(request)
    actor = _staff(request, rt)
    assert actor.agency is not None
    return _json({"creators": creators_of(rt.access.book, actor.agency, rt.clock())})


@endpoint
async def unlink(request: Request) -> Response:
    """R6: either party unlinks; access ends at once. The caller's side may be omitted."""
    rt = _runtime(request)
    actor = _actor(request, rt)
    own = {"creator": actor.id} if actor.role == "creator" else {"agency": actor.agency}
    command = await _command(request, rt, a.Unlink, defaults=own)
    return _json(Events(events=await _submit(rt, actor, command)))


# --- the creator ----------------------------------------------------------------------


@endpoint
async def list_requests(request: Request) -> Response:
    """R2: requests awaiting the creator, the expired ones flagged (unless ?expired=0)."""
    rt = _runtime(request)
    actor = _creator(request, rt)
    params = _query(request, RequestsParams)
    found = pending_requests(rt.access.book, actor.id, rt.clock(),
                             include_expired=params.expired)
    return _json({"requests": found})


@endpoint
async def accept(request: Request) -> Response:
    """R5: the creator accepts, optionally limiting the grant to ``scopes``."""
    rt = _runtime(request)
    actor = _actor(request, rt)
    body = await _command(request, rt, AcceptBody, optional=True)
    command = _path_command(request, a.AcceptRequest, scopes=body.scopes)
    return _json(Events(events=await _submit(rt, actor, command)))


@endpoint
async def decline(request: Request) -> Response:
    """R3, R4: the creator declines."""
    rt = _runtime(request)
    actor = _actor(request, rt)
    command = _path_command(request, a.DeclineRequest)
    return _json(Events(events=await _submit(rt, actor, command)))


def _path_command(request: Request, kind: type[T], **fields: object) -> T:
    try:
        return msgspec.convert({"request_id": request.path_params["id"], **fields}, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(Code.WRONG_FIELD_TYPE, str(exc)) from None


@endpoint
async def revoke(request: Request) -> Response:
    """R9: the creator revokes the agency's access and keeps the link."""
    rt = _runtime(request)
    actor = _actor(request, rt)
    command = await _command(request, rt, a.RevokeAccess)
    return _json(Events(events=await _submit(rt, actor, command)))


@endpoint
async def notifications(request: Request) -> Response:
    """R14: the creator's inbox, newest first."""
    rt = _runtime(request)
    actor = _creator(request, rt)
    params = _query(request, InboxParams)
    notes = await rt.journal.inbox(actor.id, unread_only=params.unread, limit=params.limit)
    return _json({"notifications": notes})


@endpoint
async def mark_read(request: Request) -> Response:
    """R14: mark notifications read."""
    rt = _runtime(request)
    actor = _creator(request, rt)
    body = await _command(request, rt, MarkRead)
    return _json({"changed": await rt.journal.mark_read(actor.id, body.ids)})


@endpoint
async def audit(request: Request) -> Response:
    """R16: the creator's audit trail, every action with its real actor, newest first."""
    rt = _runtime(request)
    actor = _creator(request, rt)
    p = _query(request, AuditParams)
    query = AuditQuery(creator=actor.id, agency=p.agency, staff=p.staff, family=p.family,
                       since=p.since, until=p.until, limit=p.limit)
    return _json({"entries": await rt.journal.query_audit(query)})


def _room_owner(request: Request, rt: Runtime) -> str:
    """Whose room a read is about: the creator's own, or one staff has access to (R12)."""
    actor = _actor(request, rt)
    wanted = _query(request, RoomParams).creator
    if actor.role == "creator":
        if wanted is not None and wanted != actor.id:
            raise ApiError(Code.FORBIDDEN, "this is another creator's room")
        return actor.id
    if wanted is None:
        raise ApiError(Code.INVALID_ARGUMENT, "staff name the room: ?creator=<id>")
    assert actor.agency is not None
    if rt.access.grant_for(actor.agency, wanted, rt.clock()) is None:
        raise ApiError(Code.NO_ACCESS, "no LIVE Manager access to this creator")
    return wanted


def _summary(s: LiveSummary) -> dict[str, object]:
    figures: dict[str, object] = msgspec.to_builtins(s)
    figures["conversion"] = s.conversion
    return figures


@endpoint
async def lives(request: Request) -> Response:
    """Post-LIVE figures of every ended LIVE, and the running LIVE's (the dashboard)."""
    rt = _runtime(request)
    creator = _room_owner(request, rt)
    state = (await rt.hub.room(creator)).state
    return _json({
        "creator": creator, "status": state.status,
        "current": None if state.current is None else _summary(state.current),
        "lives": [_summary(s) for s in state.lives],
    })  # fmt: skip


@endpoint
async def health(request: Request) -> Response:
    """Account health: every violation the platform reported, oldest first."""
    rt = _runtime(request)
    creator = _room_owner(request, rt)
    state = (await rt.hub.room(creator)).state
    return _json({"creator": creator, "violations": state.violations})


# --- the platform ------------------------------------------------------------------------


@endpoint
async def platform(request: Request) -> Response:
    """R8: record a platform fact (cross-border status, sharing), from the node only."""
    _operator(request)
    rt = _runtime(request)
    command: a.PlatformCommand = await _command(
        request, rt, a.PlatformCommand  # type: ignore[arg-type]  # a union of structs
    )
    return _json(Events(events=await rt.access.record_platform_fact(command)))


# --- routing ------------------------------------------------------------------------------


def api_routes() -> list[BaseRoute]:
    """The API's routes, ending with a JSON 404/405 for anything else under ``/api``."""
    routes: list[BaseRoute] = [
        Route("/api/requests", send_request, methods=["POST"]),
        Route("/api/requests", list_requests, methods=["GET"]),
        Route("/api/requests/{id}/accept", accept, methods=["POST"]),
        Route("/api/requests/{id}/decline", decline, methods=["POST"]),
        Route("/api/creators", list_creators, methods=["GET"]),
        Route("/api/unlink", unlink, methods=["POST"]),
        Route("/api/revoke", revoke, methods=["POST"]),
        Route("/api/notifications", notifications, methods=["GET"]),
        Route("/api/notifications/read", mark_read, methods=["POST"]),
        Route("/api/audit", audit, methods=["GET"]),
        Route("/api/lives", lives, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/platform", platform, methods=["POST"]),
    ]
    known = list(routes)

    @endpoint
    async def fallback(request: Request) -> Response:
        allowed = sorted({
            method for route in known if isinstance(route, Route) and route.methods
            and route.matches(request.scope)[0] == Match.PARTIAL for method in route.methods
        })  # fmt: skip
        if allowed:
            raise ApiError(Code.BAD_REQUEST, f"use {', '.join(allowed)}", status=405,
                           headers={"Allow": ", ".join(allowed)})
        raise ApiError(Code.NOT_FOUND, f"no endpoint {request.url.path}")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes.append(Route("/api/{rest:path}", fallback, methods=methods))
    return routes
