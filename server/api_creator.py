"""The creator's endpoints of the HTTP API, and the pre- and after-LIVE reads staff share.

Answering requests (R2-R5), the grants in force and revoking them (R5, R9), the
inbox (R14) and the audit trail (R16) are the creator's; the pre-LIVE plan,
post-LIVE figures and account health (R12) are the creator's and those of staff
with access in force (the plan: within the grant's scopes). See the endpoint
table in :mod:`server.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, TypeVar

import msgspec
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from protocol import access as a
from protocol.errors import Code
from protocol.model import GRANTABLE, Family, Id, LiveSummary
from server.api_http import (
    ApiError,
    Events,
    authenticate,
    endpoint,
    json_response,
    read_command,
    read_query,
    require_creator,
    runtime_of,
    submit,
)
from server.domain.access import pending_requests
from server.domain.access_views import grants_of
from server.domain.planning import PLAN_FAMILIES, plan_of
from server.journal import AuditQuery

if TYPE_CHECKING:
    from server.runtime import Runtime

__all__ = [
    "MAX_PAGE", "accept", "audit", "decline", "grants", "health", "list_requests", "lives",
    "mark_read", "notifications", "plan", "revoke",
]  # fmt: skip

T = TypeVar("T")

INT64_MAX: Final = 2**63 - 1
MAX_PAGE: Final = 1000
"""Most entries one audit or inbox page returns."""


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
    """``GET /api/lives``, ``/api/health`` and ``/api/plan`` query: whose room
    (staff must say)."""

    creator: Id | None = None


@endpoint
async def list_requests(request: Request) -> Response:
    """R2: requests awaiting the creator, the expired ones flagged (unless ?expired=0)."""
    rt = runtime_of(request)
    actor = require_creator(request, rt)
    params = read_query(request, RequestsParams)
    found = pending_requests(rt.access.book, actor.id, rt.clock(), include_expired=params.expired)
    return json_response({"requests": found})


@endpoint
async def accept(request: Request) -> Response:
    """R5: the creator accepts, optionally limiting the grant to ``scopes``."""
    rt = runtime_of(request)
    actor = authenticate(request, rt)
    body = await read_command(request, rt, AcceptBody, optional=True)
    command = _path_command(request, a.AcceptRequest, scopes=body.scopes)
    return json_response(Events(events=await submit(rt, actor, command)))


@endpoint
async def decline(request: Request) -> Response:
    """R3, R4: the creator declines."""
    rt = runtime_of(request)
    actor = authenticate(request, rt)
    command = _path_command(request, a.DeclineRequest)
    return json_response(Events(events=await submit(rt, actor, command)))


def _path_command(request: Request, kind: type[T], **fields: object) -> T:
    try:
        return msgspec.convert({"request_id": request.path_params["id"], **fields}, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(Code.WRONG_FIELD_TYPE, str(exc)) from None


@endpoint
async def revoke(request: Request) -> Response:
    """R9: the creator revokes the agency's access and keeps the link."""
    rt = runtime_of(request)
    actor = authenticate(request, rt)
    command = await read_command(request, rt, a.RevokeAccess)
    return json_response(Events(events=await submit(rt, actor, command)))


@endpoint
async def grants(request: Request) -> Response:
    """R5, R9: the LIVE Manager access the creator has given, agency by agency - the
    grants in force, each with its scopes, since when and until when (what to revoke)."""
    rt = runtime_of(request)
    actor = require_creator(request, rt)
    return json_response({"grants": grants_of(rt.access.book, actor.id, rt.clock())})


@endpoint
async def notifications(request: Request) -> Response:
    """R14: the creator's inbox, newest first."""
    rt = runtime_of(request)
    actor = require_creator(request, rt)
    params = read_query(request, InboxParams)
    notes = await rt.journal.inbox(actor.id, unread_only=params.unread, limit=params.limit)
    return json_response({"notifications": notes})


@endpoint
async def mark_read(request: Request) -> Response:
    """R14: mark notifications read."""
    rt = runtime_of(request)
    actor = require_creator(request, rt)
    body = await read_command(request, rt, MarkRead)
    return json_response({"changed": await rt.journal.mark_read(actor.id, body.ids)})


@endpoint
async def audit(request: Request) -> Response:
    """R16: the creator's audit trail, every action with its real actor, newest first."""
    rt = runtime_of(request)
    actor = require_creator(request, rt)
    p = read_query(request, AuditParams)
    query = AuditQuery(
        creator=actor.id,
        agency=p.agency,
        staff=p.staff,
        family=p.family,
        since=p.since,
        until=p.until,
        limit=p.limit,
    )
    return json_response({"entries": await rt.hub.auditor.trail(query)})


def _room_reader(request: Request, rt: Runtime) -> tuple[str, frozenset[Family]]:
    """Whose room a read is about - the creator's own, or one staff has access to
    (R12) - and the families the reader may change there (staff: the grant's)."""
    actor = authenticate(request, rt)
    wanted = read_query(request, RoomParams).creator
    if actor.role == "creator":
        if wanted is not None and wanted != actor.id:
            raise ApiError(Code.FORBIDDEN, "this is another creator's room")
        return actor.id, GRANTABLE
    if wanted is None:
        raise ApiError(Code.INVALID_ARGUMENT, "staff name the room: ?creator=<id>")
    assert actor.agency is not None
    grant = rt.access.grant_for(actor.agency, wanted, rt.clock())
    if grant is None:
        raise ApiError(Code.NO_ACCESS, "no LIVE Manager access to this creator")
    return wanted, grant.scopes


def _room_owner(request: Request, rt: Runtime) -> str:
    """Whose room a read is about: the creator's own, or one staff has access to (R12)."""
    return _room_reader(request, rt)[0]


def _summary(s: LiveSummary) -> dict[str, object]:
    figures: dict[str, object] = msgspec.to_builtins(s)
    figures["conversion"] = s.conversion
    return figures


@endpoint
async def lives(request: Request) -> Response:
    """Post-LIVE figures of every ended LIVE, and the running LIVE's (the dashboard)."""
    rt = runtime_of(request)
    creator = _room_owner(request, rt)
    state = (await rt.hub.room(creator)).state
    return json_response({
        "creator": creator, "status": state.status,
        "current": None if state.current is None else _summary(state.current),
        "lives": [_summary(s) for s in state.lives],
    })  # fmt: skip


@endpoint
async def plan(request: Request) -> Response:
    """R12: the pre-LIVE plan - LIVE events, product sets, campaigns, showcase,
    giveaways and flash sales set up - no live stream needed; staff see the
    sections their grant's scopes cover and are refused without one."""
    rt = runtime_of(request)
    creator, scopes = _room_reader(request, rt)
    if not scopes & PLAN_FAMILIES:
        raise ApiError(Code.OUT_OF_SCOPE, "the grant covers neither planning nor promotion")
    state = (await rt.hub.room(creator)).state
    return json_response(plan_of(state, scopes))


@endpoint
async def health(request: Request) -> Response:
    """Account health: every violation the platform reported, oldest first."""
    rt = runtime_of(request)
    creator = _room_owner(request, rt)
    state = (await rt.hub.room(creator)).state
    return json_response({"creator": creator, "violations": state.violations})
