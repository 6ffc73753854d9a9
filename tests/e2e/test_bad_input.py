"""Bad input over real sockets: each gets its code; nothing else is affected (H6)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol import commands as c
from protocol.errors import CloseCode, Code
from protocol.messages import Ack, Error, Join, Ping, Pong, Refused, Snapshot
from protocol.model import BagItem
from server.config import Settings
from tests.e2e.conftest import Raw, Server, raw_client, run_server


async def live_room(raw: Raw, room: str) -> None:
    await raw.send(Join(room=room))
    await raw.expect(Snapshot)
    await raw.send(c.StartLive(command_id=f"go-{room}", room=room))
    assert isinstance(await raw.expect(Ack), Ack)


async def still_works(raw: Raw, room: str, n: int) -> None:
    """The session still applies commands after the bad input."""
    await raw.send(c.BagAdd(command_id=f"ok-{n}", room=room, item=BagItem(product_id=f"p{n}")))
    reply = await raw.expect(Ack | Refused)
    assert isinstance(reply, Ack), reply


BAD_JSON: list[tuple[str, str | bytes, Code]] = [
    ("malformed", "{not json", Code.MALFORMED),
    ("unknown type", '{"type": "teleport", "room": "r"}', Code.UNKNOWN_TYPE),
    ("wrong field type", '{"type": "ping", "nonce": "many"}', Code.WRONG_FIELD_TYPE),
    ("oversized", '{"type":"ping","pad":"' + "x" * (64 * 1024) + '"}', Code.TOO_LARGE),
    ("binary on a JSON session", b'{"type":"ping"}', Code.WRONG_FRAME_TYPE),
]


@pytest.mark.parametrize(("name", "frame", "code"), BAD_JSON, ids=[b[0] for b in BAD_JSON])
async def test_bad_frames_get_their_code(
    server: Server, name: str, frame: str | bytes, code: Code
) -> None:
    """Each kind of bad frame is answered with its code and the session carries on."""
    # H6
    async with raw_client(server, server.token(creator="cr")) as raw:
        await live_room(raw, "cr")
        await raw.ws.send(frame)
        error = await raw.expect(Error)
        assert error.code == code, name
        assert not error.retryable
        await still_works(raw, "cr", 1)


async def test_deep_nesting_gets_too_deep(make_settings: Callable[..., Settings]) -> None:
    """A 10**5-deep frame (within the size limit) is refused with TOO_DEEP, not a crash."""
    # H6
    async with (
        run_server(make_settings(max_message_bytes=1024 * 1024)) as srv,
        raw_client(srv, srv.token(creator="cr")) as raw,
    ):
        await live_room(raw, "cr")
        await raw.ws.send('{"type":"ping","x":' + "[" * 100_000 + "]" * 100_000 + "}")
        error = await raw.expect(Error)
        assert error.code == Code.TOO_DEEP
        await still_works(raw, "cr", 2)


async def test_msgpack_session_rejects_text(server: Server) -> None:
    """A text frame on a MessagePack session is refused with WRONG_FRAME_TYPE."""
    # H6
    async with raw_client(server, server.token(creator="cr"), "msgpack") as raw:
        await raw.ws.send('{"type":"ping"}')
        error = await raw.expect(Error)
        assert error.code == Code.WRONG_FRAME_TYPE
        await raw.send(Ping(nonce=7))
        assert (await raw.expect(Pong)).nonce == 7


async def test_out_of_role_command_is_refused(server: Server) -> None:
    """A creator commanding another creator's room is refused with FORBIDDEN."""
    # H6 R10
    async with raw_client(server, server.token(creator="mallory")) as raw:
        await raw.send(c.StartLive(command_id="x", room="cr"))
        refused = await raw.expect(Refused)
        assert refused.code == Code.FORBIDDEN


async def test_flood_is_rate_limited_then_closed_and_other_rooms_work(
    make_settings: Callable[..., Settings],
) -> None:
    """A flood is refused with RATE_LIMITED, then closed as abuse; other rooms carry on."""
    # H6
    settings = make_settings(rate_per_s=1.0, rate_burst=20, abuse_refusals=10)
    async with (
        run_server(settings) as srv,
        raw_client(srv, srv.token(creator="calm")) as calm,
        raw_client(srv, srv.token(creator="flooder")) as flooder,
    ):
        await live_room(calm, "calm")
        for i in range(40):
            await flooder.send(Ping(nonce=i))
        messages, close_code = await flooder.until_closed()
        codes = {m.code for m in messages if isinstance(m, Error)}
        assert codes == {Code.RATE_LIMITED}
        assert close_code == CloseCode.ABUSE
        await still_works(calm, "calm", 3)
