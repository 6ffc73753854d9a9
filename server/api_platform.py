"""The platform's endpoint of the HTTP API: record platform facts (R8), node only.

There is no operator role in tokens and no operator secret in the settings, so
``POST /api/platform`` accepts facts only from a loopback client that came
through no proxy (see "Operator" in :mod:`server.api`).
"""

from __future__ import annotations

import ipaddress
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from protocol import access as a
from protocol.errors import Code
from server.api_http import ApiError, Events, endpoint, json_response, read_command, runtime_of

__all__ = ["platform"]

_LOOPBACK_NAMES: Final = frozenset({"localhost"})
_PROXY_HEADERS: Final = ("forwarded", "x-forwarded-for", "x-real-ip")


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


@endpoint
async def platform(request: Request) -> Response:
    """R8: record a platform fact (cross-border status, sharing), from the node only."""
    _operator(request)
    rt = runtime_of(request)
    command: a.PlatformCommand = await read_command(
        request,
        rt,
        a.PlatformCommand,  # type: ignore[arg-type]  # a union of structs
    )
    return json_response(Events(events=await rt.access.record_platform_fact(command)))
