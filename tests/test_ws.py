"""The /ws endpoint's own parts (its stories run end to end in tests/e2e)."""

from __future__ import annotations

import asyncio

import anyio

from server.ws import MAX_IN_FLIGHT, _InFlight


async def test_in_flight_commands_are_bounded() -> None:
    """Reading waits once ``limit`` commands are in flight, and goes on when one is answered."""
    slots = _InFlight(2)
    await slots.take()
    await slots.take()
    third = asyncio.ensure_future(slots.take())
    await anyio.wait_all_tasks_blocked()
    assert not third.done()  # the third command is not read yet
    answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    answered.add_done_callback(slots.release)  # as the read loop releases a slot
    answered.set_result(None)
    with anyio.fail_after(5):
        await third


async def test_taking_a_free_slot_does_not_suspend() -> None:
    """A free slot is taken without a trip through the event loop."""
    slots = _InFlight(MAX_IN_FLIGHT)
    coro = slots.take()
    try:
        coro.send(None)
    except StopIteration:
        pass
    else:  # pragma: no cover - it suspended
        raise AssertionError("take() suspended with free slots")
