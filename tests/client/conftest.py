"""Fixtures of the client SDK's tests: a fake hub on a loopback port, a recording sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import serve
from websockets.typing import Subprotocol

from protocol.messages import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK
from tests.client.fakehub import FakeHub, Sleeps


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    """A FakeHub serving JSON and MessagePack on 127.0.0.1."""
    fake = FakeHub()
    subprotocols = [Subprotocol(SUBPROTOCOL_JSON), Subprotocol(SUBPROTOCOL_MSGPACK)]
    async with serve(
        fake.handler,
        "127.0.0.1",
        0,
        subprotocols=subprotocols,
        process_request=fake.process_request,
        close_timeout=1,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/ws"
        yield fake


@pytest.fixture
def sleeps() -> Sleeps:
    """The recording backoff sleep."""
    return Sleeps()
