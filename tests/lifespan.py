"""Run an ASGI app's lifespan in a task of its own.

pytest-asyncio may set a fixture up and tear it down in different tasks; a
lifespan that owns a task group must enter and exit in one task, so it runs in
its own task here and the fixture only starts and stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette


@asynccontextmanager
async def lifespan_running(app: Starlette) -> AsyncIterator[None]:
    """Enter the app's lifespan (in a task of its own) until the block ends."""
    ready, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.router.lifespan_context(app):
            ready.set()
            await stop.wait()

    task = asyncio.ensure_future(hold())
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # the lifespan failed to start
        waiter.cancel()
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task
