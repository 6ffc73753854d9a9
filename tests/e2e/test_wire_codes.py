"""Codes of the error table on the wire where no other test reached them (H6)."""

from __future__ import annotations

from websockets.frames import Frame, Opcode

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
            (Code.NOT_AUTHENTICATED, False)
        ]
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


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(server: Server) -> None:
    """Invalid UTF-8 in a JSON text frame is closed 1007 by the WebSocket layer (errors.md
    says so: error 104 is for HTTP bodies and MessagePack strings)."""
    # H6
    async with raw_client(server, server.token(creator="cr")) as raw:
        raw.ws.protocol.send_frame(Frame(Opcode.TEXT, b'{"type":"ping","x":"\xff"}'))
        raw.ws.send_data()
        _, code = await raw.until_closed()
        assert code == 1007


async def test_a_frame_far_over_the_limit_closes_with_1009(server: Server) -> None:
    """A frame over four times max_message_bytes is cut by the WebSocket layer with 1009;
    one just over the limit gets error 105 (errors.md says both)."""
    # H6
    limit = server.settings.max_message_bytes
    async with raw_client(server, server.token(creator="cr")) as raw:
        await raw.ws.send('{"type":"ping","pad":"' + "x" * limit + '"}')
        assert (await raw.expect(Error)).code == Code.TOO_LARGE
        await raw.ws.send('{"type":"ping","pad":"' + "x" * (4 * limit) + '"}')
        _, code = await raw.until_closed()
        assert code == 1009
