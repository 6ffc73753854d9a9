"""The HTTP JSON API: partnership and LIVE Manager access (R1-R9), the creator's
grants in force, inbox (R14) and audit trail (R16), the pre-LIVE plan, post-LIVE
figures and account health (R12).

Everything that changes access goes through
:meth:`~server.access_service.AccessService.submit` (which decides, stores,
audits with the real actor, notifies the creator and cuts staff off on unlink
or revoke); platform facts go through
:meth:`~server.access_service.AccessService.record_platform_fact`.

This module routes; the endpoints are in :mod:`server.api_agency`,
:mod:`server.api_creator` and :mod:`server.api_platform`, on the plumbing of
:mod:`server.api_http` (error answers, auth, body and query decoding).

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
GET     ``/api/grants``                   creator   -> ``{"grants": [GrantInForce]}``
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
GET     ``/api/plan``                     creator,  ``?creator=`` (staff) -> Plan
                                          staff**
POST    ``/api/platform``                 operator  RegisterAgency | RecordSharing ->
                                                    ``{"events"}``
======  ================================  ========  =====================================

``staff*``: a staff member with access in force to that creator (R12: after-LIVE
features need access, not a live stream); the creator reads their own.
``staff**``: the same, and the grant's scopes cover ``planning`` or ``promotion``
(OUT_OF_SCOPE otherwise); the plan's sections outside the scopes are null.

Choices:

* **Auth**: ``Authorization: Bearer <jwt>`` (:func:`server.auth.verify` with the
  runtime's keys and clock). Missing, malformed or forged: 401 BAD_TOKEN;
  expired: 401 TOKEN_EXPIRED; both with ``WWW-Authenticate: Bearer``.
* **Rate limit**: every write (POST) of an actor takes from that actor's budget
  (``api_rate_per_s``, ``api_rate_burst``; all its tokens share it); past it,
  429 RATE_LIMITED with ``Retry-After`` (decision 0021).
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
  RATE_LIMITED (with ``Retry-After``), 500 for INTERNAL, 405 for a known path
  with another method. The code is authoritative; the status is for HTTP tooling.
* **Bodies**: at most ``settings.max_message_bytes`` (TOO_LARGE, checked on
  ``Content-Length`` and while reading), a JSON object (MALFORMED,
  INVALID_UTF8, TOO_DEEP when nested beyond the decoder's depth), fields of the
  :mod:`protocol.access` type (WRONG_FIELD_TYPE; an unknown ``type`` is
  UNKNOWN_TYPE; times are bounded by the protocol's ``Millis``). Query
  parameters out of range: INVALID_ARGUMENT. Unknown fields are ignored.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from protocol.errors import Code
from server.api_agency import list_creators, send_request, unlink
from server.api_creator import (
    accept,
    audit,
    decline,
    grants,
    health,
    list_requests,
    lives,
    mark_read,
    notifications,
    plan,
    revoke,
)
from server.api_http import ApiError, endpoint, http_status
from server.api_platform import platform

__all__ = ["ApiError", "api_routes", "http_status"]


def api_routes() -> list[BaseRoute]:
    """The API's routes, ending with a JSON 404/405 for anything else under ``/api``."""
    routes: list[BaseRoute] = [
        Route("/api/requests", send_request, methods=["POST"]),
        Route("/api/requests", list_requests, methods=["GET"]),
        Route("/api/requests/{id}/accept", accept, methods=["POST"]),
        Route("/api/requests/{id}/decline", decline, methods=["POST"]),
        Route("/api/creators", list_creators, methods=["GET"]),
        Route("/api/unlink", unlink, methods=["POST"]),
        Route("/api/grants", grants, methods=["GET"]),
        Route("/api/revoke", revoke, methods=["POST"]),
        Route("/api/notifications", notifications, methods=["GET"]),
        Route("/api/notifications/read", mark_read, methods=["POST"]),
        Route("/api/audit", audit, methods=["GET"]),
        Route("/api/lives", lives, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/plan", plan, methods=["GET"]),
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
            raise ApiError(
                Code.BAD_REQUEST,
                f"use {', '.join(allowed)}",
                status=405,
                headers={"Allow": ", ".join(allowed)},
            )
        raise ApiError(Code.NOT_FOUND, f"no endpoint {request.url.path}")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes.append(Route("/api/{rest:path}", fallback, methods=methods))
    return routes
