"""Who may connect: origin, subprotocol and token checks at the handshake and after."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from protocol.codec import Codec
from protocol.errors import CloseCode, Code
from protocol.messages import Error, Hello, Ping, Pong, Refresh
from server.auth import mint
from server.config import Settings
from tests.e2e.conftest import TIMEOUT, Raw, Server, raw_client, run_server

JSON = Codec("json")


async def handshake_status(srv: Server, **kwargs: object) -> int | None:
    """The HTTP status of a refused handshake, or None if it was accepted."""
    try:
        async with connect(srv.url, open_timeout=TIMEOUT, **kwargs):  # type: ignore[arg-type]
            return None
    except InvalidStatus as e:
        return e.response.status_code


async def test_foreign_origin_is_refused_before_accept(
    make_settings: Callable[..., Settings],
) -> None:
    """A browser origin outside the allowlist gets HTTP 403; an allowed one connects."""
    async with run_server(make_settings(allowed_origins="https://console.example.com")) as srv:
        sub = [JSON.subprotocol]
        assert await handshake_status(srv, subprotocols=sub, origin="https://evil.example") == 403
        assert (
            await handshake_status(srv, subprotocols=sub, origin="https://console.example.com")
            is None
        )
        assert await handshake_status(srv, subprotocols=sub) is None  # no Origin: not a browser


async def test_no_supported_subprotocol_is_refused(server: Server) -> None:
    """A client offering none of our subprotocols is refused before accept."""
    assert await handshake_status(server, subprotocols=["chat"]) == 403


async def test_bad_token_in_subprotocol_header_is_refused_before_accept(server: Server) -> None:
    """A forged token offered in the subprotocol header is refused before accept."""
    offered = [JSON.subprotocol, "livepilot.auth.not-a-jwt"]
    assert await handshake_status(server, subprotocols=offered) == 403


async def test_token_in_subprotocol_header_authenticates(server: Server) -> None:
    """A valid token in the subprotocol header authenticates a hello that carries none."""
    token = server.token(creator="cr")
    offered = [Subprotocol(JSON.subprotocol), Subprotocol(f"livepilot.auth.{token}")]
    async with connect(server.url, subprotocols=offered, open_timeout=TIMEOUT) as ws:
        raw = Raw(ws, JSON)
        await raw.send(Hello())
        await raw.send(Ping(nonce=3))
        assert (await raw.expect(Pong)).nonce == 3


@pytest.mark.parametrize(
    ("first_frame", "close_code"),
    [
        ("forged", CloseCode.BAD_TOKEN),
        ("expired", CloseCode.TOKEN_EXPIRED),
        ("missing", CloseCode.BAD_TOKEN),
        ("garbage", CloseCode.BAD_REQUEST),
    ],
)
async def test_bad_hello_closes_with_its_code(
    server: Server, first_frame: str, close_code: CloseCode
) -> None:
    """A forged, expired or missing token closes the session with the matching code."""
    settings = server.settings
    frames = {
        "forged": JSON.encode(
            Hello(
                token=mint(
                    Settings(jwt_secret="another-secret-that-is-long-enough-xx"),
                    creator="cr",
                    now=server.clock(),
                )
            )
        ).decode(),
        "expired": JSON.encode(
            Hello(token=mint(settings, creator="cr", ttl_s=60, now=server.clock() - 3_600_000))
        ).decode(),
        "missing": JSON.encode(Ping()).decode(),
        "garbage": "{",
    }
    async with raw_client(server, None) as raw:
        await raw.ws.send(frames[first_frame])
        _, code = await raw.until_closed()
        assert code == close_code


async def test_session_closes_at_token_expiry_unless_refreshed(server: Server) -> None:
    """At exp the session is closed with the retryable expired code; a refreshed one stays."""
    # exp has a one-second resolution: a 2 s token lives between 1 and 2 s.
    async with (
        raw_client(server, server.token(creator="cr", ttl_s=2)) as lapsing,
        raw_client(server, server.token(creator="cr", ttl_s=2)) as refreshed,
    ):
        await refreshed.send(Refresh(token=server.token(creator="cr", ttl_s=3600)))
        await refreshed.send(Ping(nonce=1))
        await refreshed.expect(Pong)
        messages, code = await lapsing.until_closed()
        assert code == CloseCode.TOKEN_EXPIRED
        assert any(
            isinstance(m, Error) and m.code == Code.TOKEN_EXPIRED and m.retryable for m in messages
        )
        await refreshed.send(Ping(nonce=2))
        assert (await refreshed.expect(Pong)).nonce == 2


async def test_refresh_for_another_actor_is_refused(server: Server) -> None:
    """A session cannot swap identity by refreshing with someone else's token."""
    async with raw_client(server, server.token(creator="cr")) as raw:
        await raw.send(Refresh(token=server.token(creator="someone-else")))
        error = await raw.expect(Error)
        assert error.code == Code.FORBIDDEN


async def test_idle_session_is_closed(make_settings: Callable[..., Settings]) -> None:
    """A client that sends nothing within the idle timeout is closed (retryable)."""
    async with (
        run_server(make_settings(heartbeat_s=0.2, idle_timeout_s=0.5)) as srv,
        raw_client(srv, srv.token(creator="cr")) as raw,
    ):
        _, code = await raw.until_closed()
        assert code == CloseCode.IDLE_TIMEOUT
