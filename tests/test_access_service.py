"""The access service's deadline timer: a link's end date cuts access off when it
passes, through the same path as a revoke or an unlink (decision 0015)."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from protocol import access as a
from protocol.model import Actor
from server.access_service import MAX_TIMER_S, AccessService, MemoryAccessEventStore
from server.domain.grants import AccessEnd
from server.journal import MemoryJournal
from server.runtime import wall_clock
from tests.actors import AGENCY, ANN, CREATOR, CREATOR_ID

T0 = 1_700_000_000_000


class Clock:
    """A clock the test moves by hand (milliseconds since the epoch)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Ended(list[tuple[str, str, AccessEnd]]):
    """Records what the service tells the hub."""

    def __call__(self, agency: str, creator: str, status: AccessEnd) -> None:
        self.append((agency, creator, status))


def service(clock: Clock) -> tuple[AccessService, Ended]:
    ended = Ended()
    return AccessService(
        MemoryAccessEventStore(), MemoryJournal(), clock=clock, on_access_ended=ended
    ), ended


async def link(access: AccessService, creator: str, ends_at: int | None) -> None:
    """``creator`` accepts a link + access request ending at ``ends_at``."""
    rid = f"r-{creator}"
    sent = await access.submit(
        ANN, a.RequestLink(request_id=rid, creator=creator, with_access=True, ends_at=ends_at)
    )
    assert isinstance(sent, list), sent
    done = await access.submit(Actor(role="creator", id=creator), a.AcceptRequest(request_id=rid))
    assert isinstance(done, list), done


def armed_in(access: AccessService) -> float | None:
    """Seconds until the deadline timer fires, None if it is not armed."""
    timer = access._timer
    return None if timer is None else timer.when() - asyncio.get_running_loop().time()


async def test_end_date_ends_access_once_as_expired() -> None:
    """When the clock reaches the link's end date the hub is told "expired", exactly once."""
    # R5 (access lasts until the link's end date) R6 (then it is cut off at once)
    clock = Clock()
    access, ended = service(clock)
    await link(access, CREATOR_ID, T0 + 1000)
    clock.now = T0 + 999
    assert access.check_deadlines() == []
    clock.now = T0 + 1000
    assert access.check_deadlines() == [(AGENCY, CREATOR_ID)]
    assert access.check_deadlines() == []
    assert ended == [(AGENCY, CREATOR_ID, "expired")]
    access.close()


async def test_extension_moves_the_deadline() -> None:
    """An accepted extension before the end date: nothing ends then, it ends at the new date."""
    # R5 R7 (an extension moves the link's, and access's, end date)
    clock = Clock()
    access, ended = service(clock)
    await link(access, CREATOR_ID, T0 + 10_000)
    assert armed_in(access) == pytest.approx(10.0, abs=0.5)
    sent = await access.submit(
        ANN, a.RequestExtension(request_id="ext", creator=CREATOR_ID, new_ends_at=T0 + 20_000)
    )
    assert isinstance(sent, list)
    await access.submit(CREATOR, a.AcceptRequest(request_id="ext"))
    assert armed_in(access) == pytest.approx(20.0, abs=0.5)  # re-armed on the extension
    clock.now = T0 + 10_000
    assert access.check_deadlines() == []
    clock.now = T0 + 20_000
    assert access.check_deadlines() == [(AGENCY, CREATOR_ID)]
    assert ended == [(AGENCY, CREATOR_ID, "expired")]
    access.close()


async def test_timer_follows_the_soonest_end_among_grants_in_force() -> None:
    """The one timer is re-armed whenever the book changes: a revoke or unlink removes
    its end, the next one takes over; far ends are checked at least every MAX_TIMER_S."""
    # R6 R9 (a revoke or an unlink ends access before its end date)
    clock = Clock()
    access, ended = service(clock)
    await link(access, "soon", T0 + 5_000)
    await link(access, "later", T0 + 30_000)
    await link(access, "far", T0 + 10 * 24 * 3600 * 1000)
    await link(access, "open", None)
    assert armed_in(access) == pytest.approx(5.0, abs=0.5)
    await access.submit(Actor(role="creator", id="soon"), a.RevokeAccess(agency=AGENCY))
    assert armed_in(access) == pytest.approx(30.0, abs=0.5)
    await access.submit(ANN, a.Unlink(agency=AGENCY, creator="later"))
    assert armed_in(access) == pytest.approx(MAX_TIMER_S, abs=0.5)
    assert ended == [(AGENCY, "soon", "revoked"), (AGENCY, "later", "unlinked")]
    clock.now = T0 + 30_000  # past the revoked and unlinked ends: nothing more to end
    assert access.check_deadlines() == []
    await access.submit(ANN, a.Unlink(agency=AGENCY, creator="far"))
    assert armed_in(access) is None  # only an open-ended grant is left
    access.close()


async def test_the_timer_fires_at_the_end_date() -> None:
    """On the real clock, the loop timer cuts access off at the end date, within 1 s."""
    # R5 R6 (an end date needs a timer, not a check on the next command)
    access, _ = service(Clock())
    access.clock = wall_clock
    fired = anyio.Event()
    at: list[int] = []

    def ended(agency: str, creator: str, status: AccessEnd) -> None:
        at.append(wall_clock())
        fired.set()

    access.on_access_ended = ended
    await access.start()
    ends_at = wall_clock() + 200
    await link(access, CREATOR_ID, ends_at)
    with anyio.fail_after(5):
        await fired.wait()
    assert ends_at <= at[0] < ends_at + 1000
    access.close()


async def test_ends_passed_while_down_are_not_announced_and_close_stops_the_timer() -> None:
    """At start, ends already passed concern no open session; close() disarms the timer."""
    clock = Clock()
    store = MemoryAccessEventStore()
    first = AccessService(store, MemoryJournal(), clock=clock)
    await link(first, "gone", T0 + 1000)
    await link(first, "next", T0 + 60_000)
    first.close()
    clock.now = T0 + 5000
    again, ended = AccessService(store, MemoryJournal(), clock=clock), Ended()
    again.on_access_ended = ended
    await again.start()
    assert again.check_deadlines() == []
    assert armed_in(again) == pytest.approx(55.0, abs=0.5)
    again.close()
    assert armed_in(again) is None
    assert ended == []


async def test_a_failing_cut_off_does_not_stop_the_others() -> None:
    """If telling the hub about one pair fails, the other pairs are still cut off."""
    clock = Clock()
    access, ended = service(clock)
    await link(access, "bad", T0 + 1000)
    await link(access, "good", T0 + 1000)

    def flaky(agency: str, creator: str, status: AccessEnd) -> None:
        if creator == "bad":
            raise RuntimeError("boom")
        ended(agency, creator, status)

    access.on_access_ended = flaky
    clock.now = T0 + 1000
    assert access.check_deadlines() == [(AGENCY, "bad"), (AGENCY, "good")]
    assert ended == [(AGENCY, "good", "expired")]
    access.close()
