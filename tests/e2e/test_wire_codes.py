"""Codes of the error table on the wire where no other test reached them (H6)."""

from __future__ import annotations

from protocol.errors import CloseCode, Code
from protocol.messages import Error, Hello, Ping, Pong
from tests.e2e.conftest import Server, raw_client


async def test_a_frame_before_hello_gets_not_authenticated_then_close(server: Server) -> None:
    """A first frame that is not hello is answered NOT_AUTHENTICATED, then closed 4500."""
    # H6
    async with raw_client(server, None) as raw:
        await raw.send(Ping(nonce=1))
        messages, code = await raw.until_closed()
        assert [(m.code, m.retryable) for m in messages if isinstance(m, Error)] == [
            (Code.NOT_AUTHENTICATED, False)]
        assert code == CloseCode.BAD_TOKEN


async def test_a_second_hello_is_refused_and_the_session_carries_on(server: Server) -> None:
    """hello on an authenticated session gets ALREADY_AUTHENTICATED; nothing else changes."""
    # H6
    token = server.token(creator="cr")
    async with raw_client(server, token) as raw:
        await raw.send(Hello(token=token))
        error = await raw.expect(Error)
        assert error.code == Code.ALREADY_AUTHENTICATED
        await raw.send(Ping(nonce=2))
        assert (await raw.expect(Pong)).nonce == 2
