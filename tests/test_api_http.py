"""The HTTP API's plumbing: each actor's writes are rate limited (H6, decision 0021)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.errors import Code
from server.auth import mint
from tests.test_api import AGENCY, OTHER_AGENCY, Opener, expect_error, open_env

_ = open_env  # the fixture, used by name


def link(creator: str) -> dict[str, Any]:
    """A link request's body."""
    return {"type": "request_link", "creator": creator, "with_access": False}


async def test_writes_past_the_actor_budget_get_429_rate_limited(open_env: Opener) -> None:
    """Past `api_rate_burst` writes, an actor's next write is answered 429 with the
    protocol's RATE_LIMITED body and Retry-After, whichever of its tokens it uses;
    its reads and other actors' writes go on."""
    # H6
    async for env in open_env(api_rate_per_s=0.001, api_rate_burst=3):
        for i in range(3):
            sent = await env.request(link(f"cr-{i}"))
            assert sent.status_code == 201, sent.text
        fourth = await env.request(link("cr-3"))
        body = expect_error(fourth, 429, Code.RATE_LIMITED)
        assert body["retryable"] is True
        assert int(fourth.headers["retry-after"]) >= 1
        other_token = mint(env.settings, agency=AGENCY, staff="ann", ttl_s=60,
                           now=env.clock())  # another token of the same actor
        again = await env.client.post("/api/requests", json=link("cr-4"),
                                      headers={"Authorization": f"Bearer {other_token}"})
        expect_error(again, 429, Code.RATE_LIMITED)
        listed = await env.client.get("/api/creators", headers=env.staff())
        assert listed.status_code == 200  # reads are not charged
        assert len(listed.json()["creators"]) == 3
        other = await env.request(link("cr-0"), agency=OTHER_AGENCY)  # another "ann"
        assert other.status_code == 201, other.text
        metrics = (await env.client.get("/metrics")).text
        assert 'livepilot_rate_limit_refusals_total{limit="http"} 2.0' in metrics


async def test_an_unexpected_failure_is_500_internal_and_logged(
    open_env: Opener, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception no endpoint expects is answered 500 INTERNAL (retryable), with the
    traceback in the log and not in the answer; the next request is served."""
    # H6
    async for env in open_env():
        async def broken(*_: object) -> None:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(env.runtime.access, "submit", broken)
        answer = await env.request(link("cr-0"))
        body = expect_error(answer, 500, Code.INTERNAL)
        assert "secret detail" not in answer.text
        assert body["retryable"] is True
        assert "unexpected failure on POST /api/requests" in caplog.text
        monkeypatch.undo()
        assert (await env.request(link("cr-0"))).status_code == 201
