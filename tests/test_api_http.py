"""The HTTP API's plumbing (server/api_http.py): auth (H6), body decoding and its
refusals (H6), each actor's writes rate limited (H6, decision 0021), and an
unexpected failure answered 500 INTERNAL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from protocol.errors import Code
from server.api_http import http_status
from server.auth import mint
from server.config import load_settings
from tests.actors import AGENCY, CREATOR_ID, OTHER_AGENCY
from tests.api_env import Env, Opener, env_opener, expect_error, running_env

_ = (env_opener, running_env)  # the fixtures, used by name

FOREIGN_SECRET = "someone-elses-secret-of-enough-bytes!!"


# --- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer not-a-jwt", "Basic dXNlcg=="])
async def test_missing_or_malformed_token(env: Env, header: str | None) -> None:
    """H6: no usable bearer token: 401 BAD_TOKEN with a challenge."""
    headers = {} if header is None else {"Authorization": header}
    answer = await env.client.get("/api/creators", headers=headers)
    expect_error(answer, 401, Code.BAD_TOKEN)
    assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_forged_token(env: Env) -> None:
    """H6: a token signed with another secret: 401 BAD_TOKEN."""
    forger = load_settings({}, data_path=":memory:", jwt_secret=FOREIGN_SECRET)
    token = mint(forger, agency=AGENCY, staff="ann", now=env.clock())
    answer = await env.client.post(
        "/api/requests",
        json={"type": "request_link", "creator": CREATOR_ID, "with_access": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    expect_error(answer, 401, Code.BAD_TOKEN)
    assert (await env.status())["status"] == "unknown"


async def test_expired_token(env: Env) -> None:
    """H6: an expired token: 401 TOKEN_EXPIRED (retryable with a fresh token)."""
    headers = env.creator(ttl_s=60)
    env.clock.advance((60 + env.settings.token_leeway_s) * 1000)
    expect_error(
        await env.client.get("/api/notifications", headers=headers), 401, Code.TOKEN_EXPIRED
    )


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", Code.MALFORMED),
        (b"", Code.MALFORMED),
        (b'{"type": "request_link", "creator": "\xff"}', Code.INVALID_UTF8),
        (b"[1, 2]", Code.WRONG_FIELD_TYPE),
        (b'{"type": "request_link", "creator": 7, "with_access": true}', Code.WRONG_FIELD_TYPE),
        (b'{"type": "request_link", "creator": "cr-1"}', Code.WRONG_FIELD_TYPE),
        (b'{"creator": "cr-1", "with_access": true}', Code.WRONG_FIELD_TYPE),
        (b'{"type": "request_link", "creator": "a/b", "with_access": true}', Code.WRONG_FIELD_TYPE),
        (b'{"type": "hack_the_planet", "creator": "cr-1"}', Code.UNKNOWN_TYPE),
        (
            b'{"type": "request_link", "creator": "cr-1", "with_access": true,'
            b' "ends_at": 100000000000000000000000}',
            Code.WRONG_FIELD_TYPE,
        ),
    ],
)
async def test_bad_bodies(env: Env, content: bytes, code: Code) -> None:
    """H6: a malformed, mistyped or unknown body: 400 with its code, nothing changes."""
    answer = await env.client.post(
        "/api/requests",
        content=content,
        headers={**env.staff(), "Content-Type": "application/json"},
    )
    expect_error(answer, 400, code)
    assert (await env.status())["status"] == "unknown"


async def test_oversized_body(env: Env) -> None:
    """H6: a body over max_message_bytes: 400 TOO_LARGE, declared or streamed."""
    big = json.dumps(
        {
            "type": "request_link",
            "creator": CREATOR_ID,
            "with_access": True,
            "pad": "x" * env.settings.max_message_bytes,
        }
    ).encode()
    declared = await env.client.post("/api/requests", content=big, headers=env.staff())
    expect_error(declared, 400, Code.TOO_LARGE)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    streamed = await env.client.post("/api/requests", content=chunks(), headers=env.staff())
    assert "content-length" not in streamed.request.headers
    expect_error(streamed, 400, Code.TOO_LARGE)


async def test_deeply_nested_body(open_env: Opener) -> None:
    """H6: 10**5 levels of nesting: 400 TOO_DEEP, not a crash."""
    async for env in open_env(max_message_bytes=1 << 20):
        deep = b'{"type": "request_link", "pad": ' + b"[" * 10**5 + b"]" * 10**5 + b"}"
        answer = await env.client.post("/api/requests", content=deep, headers=env.staff())
        expect_error(answer, 400, Code.TOO_DEEP)
        ok = await env.request({"type": "request_link", "creator": CREATOR_ID, "with_access": True})
        assert ok.status_code == 201


# --- rate limit and failures --------------------------------------------------------------


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
        other_token = mint(
            env.settings, agency=AGENCY, staff="ann", ttl_s=60, now=env.clock()
        )  # another token of the same actor
        again = await env.client.post(
            "/api/requests", json=link("cr-4"), headers={"Authorization": f"Bearer {other_token}"}
        )
        expect_error(again, 429, Code.RATE_LIMITED)
        listed = await env.client.get("/api/creators", headers=env.staff())
        assert listed.status_code == 200  # reads are not charged
        assert len(listed.json()["creators"]) == 3
        other = await env.request(link("cr-0"), agency=OTHER_AGENCY)  # another "ann"
        assert other.status_code == 201, other.text
        metrics = (await env.client.get("/metrics")).text
        assert 'livepilot_rate_limit_refusals_total{limit="http"} 2.0' in metrics


async def test_an_unexpected_failure_is_500_internal_and_logged(
    open_env: Opener,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
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


async def test_redis_unreachable_is_a_retryable_unavailable(
    open_env: Opener,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request whose store (Redis, many nodes) cannot be reached is answered UNAVAILABLE
    (retryable), logged in one line without a traceback; the next request is served."""
    # H6
    import redis.exceptions

    async for env in open_env():

        async def unreachable(*_: object) -> None:
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1")

        monkeypatch.setattr(env.runtime.access, "submit", unreachable)
        answer = await env.request(link("cr-0"))
        body = expect_error(answer, http_status(Code.UNAVAILABLE), Code.UNAVAILABLE)
        assert body["retryable"] is True
        assert "storage unavailable on POST /api/requests" in caplog.text
        assert "Traceback" not in caplog.text
        monkeypatch.undo()
        assert (await env.request(link("cr-0"))).status_code == 201
