"""The agency staff's endpoints of the HTTP API: send requests, list creators, unlink.

``POST /api/requests`` (R1, R7, R8), ``GET /api/creators`` and ``POST
/api/unlink`` (R6, either party); see the endpoint table in :mod:`server.api`.
"""

from __future__ import annotations

import uuid

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response

from protocol import access as a
from protocol.access import AccessEvent, AccessRequest, RequestKind
from protocol.errors import Code
from server.api_http import (
    Events,
    authenticate,
    endpoint,
    json_response,
    read_command,
    refusal_error,
    require_staff,
    runtime_of,
    submit,
)
from server.domain.access import creators_of, request_view
from server.domain.refusal import Refusal

__all__ = ["RequestCommand", "RequestCreated", "list_creators", "send_request", "unlink"]

RequestCommand = a.RequestLink | a.RequestAccess | a.RequestExtension


class RequestCreated(Struct, frozen=True, kw_only=True):
    """The answer to a new request: the request as stored, and the events."""

    request: AccessRequest
    events: list[AccessEvent]


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
    rt = runtime_of(request)
    actor = authenticate(request, rt)
    command: RequestCommand = await read_command(
        request,
        rt,
        RequestCommand,  # type: ignore[arg-type]  # a union of structs
        defaults={"request_id": f"req-{uuid.uuid4().hex}"},
    )
    decision = await rt.access.submit(actor, command)
    now = rt.clock()
    if isinstance(decision, Refusal):
        stored = rt.access.book.requests.get(command.request_id)
        if (
            decision.code == Code.ALREADY_EXISTS
            and stored is not None
            and stored.agency == actor.agency
            and stored.creator == command.creator
            and stored.kind == _kind(command)
        ):
            view = request_view(rt.access.book, command.request_id, now)
            assert view is not None
            return json_response(RequestCreated(request=view, events=[]))  # a safe retry
        raise refusal_error(decision)
    view = request_view(rt.access.book, command.request_id, now)
    assert view is not None  # just stored
    return json_response(RequestCreated(request=view, events=decision), 201)


@endpoint
async def list_creators(request: Request) -> Response:
    """The agency's creators with their status, grant and waiting requests."""
    rt = runtime_of(request)
    actor = require_staff(request, rt)
    assert actor.agency is not None
    return json_response({"creators": creators_of(rt.access.book, actor.agency, rt.clock())})


@endpoint
async def unlink(request: Request) -> Response:
    """R6: either party unlinks; access ends at once. The caller's side may be omitted."""
    rt = runtime_of(request)
    actor = authenticate(request, rt)
    own = {"creator": actor.id} if actor.role == "creator" else {"agency": actor.agency}
    command = await read_command(request, rt, a.Unlink, defaults=own)
    return json_response(Events(events=await submit(rt, actor, command)))
