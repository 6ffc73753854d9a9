"""connect(): a Client connected in one call, awaited or used as an async context manager."""

from __future__ import annotations

import asyncio

from client import connect
from tests.client.fakehub import BOUND, FakeHub, Sleeps


async def test_connect_function_is_a_context_manager(hub: FakeHub, sleeps: Sleeps) -> None:
    """connect() opens a client for an async with block and closes it after."""
    async with asyncio.timeout(BOUND):
        async with connect(
            hub.url, "good", sleep=sleeps, heartbeat=False, connect_options={"proxy": None}
        ) as client:
            assert client.connected
        assert client.closed is not None
        assert client.closed.code == 1000
        awaited = await connect(hub.url, "good", connect_options={"proxy": None})
        assert awaited.connected
        await awaited.close()
