"""/ws served on livepilot's own connection (server.endpoint): what a connection holds.

Decision 0023: an idle connection holds no task; a task runs only while the
session has messages to handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio

from protocol.errors import CloseCode
from protocol.messages import Join, Ping, Pong, Snapshot
from server.config import Settings
from server.wire import WebSocketConnection
from tests.e2e.conftest import TIMEOUT, raw_client, run_server


async def quiet() -> None:
    """Return once every task of the loop waits (the server's callbacks have run)."""
    with anyio.fail_after(TIMEOUT):
        await anyio.wait_all_tasks_blocked()


def server_tasks() -> list[asyncio.Task[object]]:
    """The loop's tasks but the clients' (websockets' own) and this test's."""
    return [
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and "/websockets/" not in t.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    ]


async def test_idle_connections_hold_no_task(make_settings: Callable[..., Settings]) -> None:
    """Twenty joined, silent connections add no task to the server's loop: the task that
    handled their messages is gone once they are handled."""
    async with run_server(make_settings()) as srv, AsyncExitStack() as stack:
        await quiet()
        before = len(server_tasks())
        # Each in a room of its own: clients that read nothing get no presence updates.
        clients = [
            await stack.enter_async_context(raw_client(srv, srv.token(creator=f"cr{i}")))
            for i in range(20)
        ]
        for i, raw in enumerate(clients):
            await raw.send(Join(room=f"cr{i}"))
            await raw.expect(Snapshot)
            await raw.send(Ping(nonce=1))
            await raw.expect(Pong)
        await quiet()
        assert len(server_tasks()) == before
        sessions = list(srv.runtime.hub.sessions.values())
        assert len(sessions) == 20
        assert all(isinstance(s.sink, WebSocketConnection) for s in sessions)


async def test_no_hello_in_time_closes_with_idle_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    """A connection that sends no hello within hello_timeout_s is closed with 4005 and
    counted, without a task having waited for it."""
    async with run_server(make_settings(hello_timeout_s=0.2)) as srv, raw_client(srv, None) as raw:
        _, code = await raw.until_closed()
        assert code == CloseCode.IDLE_TIMEOUT
        registry = srv.runtime.metrics.registry
        assert registry.get_sample_value("livepilot_hello_timeouts_total") == 1
