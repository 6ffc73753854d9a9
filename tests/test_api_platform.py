"""The platform's endpoint (server/api_platform.py): platform facts such as a
cross-border agency's sharing relationship (R8), accepted from the node only."""

from __future__ import annotations

import httpx

from protocol.errors import Code
from tests.actors import AGENCY, CREATOR_ID
from tests.api_env import Env, env_opener, expect_error, running_env

_ = (env_opener, running_env)  # the fixtures, used by name


# --- R8: cross-border via the platform endpoint -------------------------------------------


async def test_cross_border_needs_sharing(env: Env) -> None:
    """R8: a cross-border agency gets access only with a sharing relationship."""
    registered = await env.client.post(
        "/api/platform", json={"type": "register_agency", "agency": AGENCY, "cross_border": True}
    )
    assert registered.status_code == 200, registered.text
    assert [e["type"] for e in registered.json()["events"]] == ["agency_registered"]
    refused = await env.request(
        {"type": "request_link", "creator": CREATOR_ID, "with_access": True}
    )
    expect_error(refused, 403, Code.CROSS_BORDER_NOT_ALLOWED)
    shared = await env.client.post(
        "/api/platform",
        json={"type": "record_sharing", "agency": AGENCY, "creator": CREATOR_ID, "kind": "data"},
    )
    assert shared.status_code == 200, shared.text
    await env.link()
    assert (await env.status())["status"] == "access_granted"


async def test_platform_facts_only_from_the_node(env: Env) -> None:
    """R8: no party can vouch for itself: remote or proxied callers are refused."""
    body = {"type": "register_agency", "agency": AGENCY, "cross_border": False}
    remote = httpx.ASGITransport(app=env.app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://node") as outsider:
        expect_error(
            await outsider.post("/api/platform", json=body, headers=env.staff()),
            403,
            Code.FORBIDDEN,
        )
    proxied = await env.client.post(
        "/api/platform", json=body, headers={"X-Forwarded-For": "203.0.113.7"}
    )
    expect_error(proxied, 403, Code.FORBIDDEN)
    staff_says = await env.client.post("/api/requests", json=body, headers=env.staff())
    expect_error(staff_says, 400, Code.UNKNOWN_TYPE)
