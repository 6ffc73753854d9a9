"""The access workflow as a service: the pure :mod:`server.domain.access` decider,
an event store, and the side effects of access changing.

The :class:`~server.domain.access.AccessBook` lives in memory (it is small: links
and requests) and is rebuilt at start from the stored access events. Every
decision is appended durably before it is applied. When access ends (unlink,
revoke, or the link's end date) the hub is told at once and cuts the agency's
staff off that creator's room (R5, R6; decision 0015); every event that
concerns the creator becomes an inbox notification (R14), and every attempt
lands in the audit trail with its real actor (R16) - a refused one only when
the caller has a relation to the creator (:func:`related`): a stranger's
refusal is logged and counted instead, so no token holder can fill another
creator's trail.

An end date is not an event: nothing is stored when it passes. One loop timer is
armed for the soonest end among the grants in force, re-armed whenever the book
changes, and when it fires the pairs whose end passed are ended as "expired".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

import anyio

from protocol import access as a
from protocol.access import AccessEvent
from protocol.messages import Notification
from protocol.model import Actor
from server.access_store import (
    AccessEventStore,
    AccessMovedError,
    CatchingUpStore,
    MemoryAccessEventStore,
)
from server.domain.access import (
    AccessBook,
    decide_access,
    decide_platform,
    evolve_access,
    grant_for,
)
from server.domain.access_book import access_ended_between, next_access_end
from server.domain.access_views import related
from server.domain.grants import AccessEnd, Grant
from server.domain.ids import access_notification_id
from server.domain.refusal import Refusal
from server.journal import AuditEntry, Journal
from server.metrics import Metrics

__all__ = [
    "MAX_MOVED_RETRIES",
    "MAX_TIMER_S",
    "AccessEventStore",
    "AccessMovedError",
    "AccessService",
    "MemoryAccessEventStore",
]

logger = logging.getLogger("livepilot.access")

MAX_TIMER_S: Final = 60.0
"""The deadline timer wakes at least this often. The clock is wall time and the
loop's timer monotonic: a step of the wall clock delays an end by at most this."""


MAX_MOVED_RETRIES: Final = 5
"""A decision whose creator's events moved meanwhile is decided again this often."""


AccessEnded = Callable[[str, str, AccessEnd], object]
"""``(agency, creator, status)``: called when an agency's access to a creator ends."""

_NOTICES: dict[type[AccessEvent], str] = {
    a.RequestSent: "sent you a request",
    a.LinkRemoved: "is no longer linked to you",
    a.AccessGranted: "now has LIVE Manager access",
    a.AccessRevoked: "no longer has LIVE Manager access",
    a.LinkExtended: "link was extended",
}


class AccessService:
    """Decides access commands, stores their events, and applies their effects."""

    def __init__(
        self,
        store: AccessEventStore,
        journal: Journal,
        *,
        clock: Callable[[], int],
        on_access_ended: AccessEnded | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
        self.clock = clock
        self.on_access_ended = on_access_ended
        self.metrics = metrics
        self.book = AccessBook()
        self.shared = False
        """Multi-node: other nodes append to the store too; the book is the store's
        events folded in the store's order (:meth:`sync`), never ours alone."""
        self.on_changed: Callable[[], object] | None = None
        """Called after this node changed the book (multi-node: the others reload)."""
        self._applied = 0
        """How many of the store's events are folded into the book."""
        self._lock = anyio.Lock()
        self._checked = clock()
        """End dates up to this time have been dealt with (by :meth:`check_deadlines`)."""
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    async def start(self) -> None:
        """Rebuild the book from the stored events and arm the deadline timer.

        Ends passed while the node was down concern no session: they are not
        announced."""
        book = AccessBook()
        events = await self.store.load_access_events()
        for event in events:
            book = evolve_access(book, event)
        self.book = book
        self._applied = len(events)
        self._checked = self.clock()
        self._arm()

    async def sync(self) -> None:
        """Fold in the events other nodes stored since the last sync (multi-node).

        An end among them is not announced here: the node where it happened
        announces it on the bus, and end dates are each node's own timer's."""
        async with self._lock:
            await self._sync()

    async def catch_up(self, creator: str) -> None:
        """Fold in the creator's (and the platform's) events other nodes stored: a
        staff append refused because the grant moved (R6) decides again on them."""
        async with self._lock:
            await self._catch_up(creator)

    async def _catch_up(self, creator: str | None) -> None:
        store = self.store
        if not isinstance(store, CatchingUpStore):
            await self._sync()
            return
        events = [
            *await store.catch_up(None),
            *([] if creator is None else await store.catch_up(creator)),
        ]
        self._fold(events)

    def _fold(self, events: Sequence[AccessEvent]) -> None:
        if not events:
            return
        book = self.book
        for event in events:
            book = evolve_access(book, event)
        self.book = book
        self._applied += len(events)
        self._arm()

    async def _sync(self) -> None:
        events = await self.store.load_access_events()
        if isinstance(self.store, CatchingUpStore):
            # Kept per creator, merged by time: the new events are not all at the
            # end of the list, so the book is folded again from the start.
            book = AccessBook()
            for event in events:
                book = evolve_access(book, event)
            self.book = book
            self._applied = len(events)
            self._arm()
            return
        if len(events) <= self._applied:
            return
        book = self.book
        for event in events[self._applied :]:
            book = evolve_access(book, event)
        self.book = book
        self._applied = len(events)
        self._arm()

    def close(self) -> None:
        """Stop the deadline timer (the node is shutting down)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check_deadlines(self) -> list[tuple[str, str]]:
        """End access, as "expired", for every pair whose end date passed since the
        last check (R5, R6), then re-arm the timer; returns those pairs.

        The timer calls this; so may a test whose clock jumps ahead."""
        now = self.clock()
        ended = access_ended_between(self.book, self._checked, now)
        # A wall clock stepped back re-announces nothing harmful: the hub tells
        # only sessions that still use the access.
        self._checked = now
        for agency, creator in ended:
            self._ended(agency, creator, "expired")
        self._arm()
        return ended

    def _arm(self) -> None:
        """Arm the one timer for the soonest end among the grants in force (or none)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        end = next_access_end(self.book, self._checked)
        if end is None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # used outside a loop (a pure test): check_deadlines by hand
            return
        # The loop may fire a timer slightly early: +1 ms, and an early firing
        # finds nothing ended and arms again for the rest.
        delay = min(max(end - self.clock(), 0) / 1000 + 0.001, MAX_TIMER_S)
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        try:
            self.check_deadlines()
        except Exception:  # a bug: logged, and the timer keeps going
            logger.exception("checking access end dates failed")
            self._arm()

    def _ended(self, agency: str, creator: str, status: AccessEnd) -> None:
        """Tell the hub; one failing pair does not keep the others from being cut off."""
        if self.on_access_ended is None:
            return
        try:
            self.on_access_ended(agency, creator, status)
        except Exception:
            logger.exception(
                "cutting off ended access failed", extra={"agency": agency, "creator": creator}
            )

    def grant_for(self, agency: str, creator: str, now: int) -> Grant | None:
        """The access in force now (the hub calls this for every staff command)."""
        return grant_for(self.book, agency, creator, now)

    def related(self, who: Actor, creator: str, now: int) -> bool:
        """Whether ``who``'s refused attempts go to ``creator``'s audit trail (R16):
        the creator, or staff of an agency linked to them now."""
        return related(self.book, who, creator, now)

    async def submit(self, who: Actor, command: a.AccessCommand) -> list[AccessEvent] | Refusal:
        """Decide a party's command and apply it; a refusal changes nothing.

        With a shared store, decided on what every node stored of the creator; if
        another node stored some of theirs in between (:class:`AccessMovedError`),
        caught up and decided again."""
        async with self._lock:
            if self.shared:  # decide on what every node stored so far
                await self._catch_up(_creator_of(self.book, command, who))
            events: list[AccessEvent] = []
            for attempt in range(MAX_MOVED_RETRIES):
                now = self.clock()
                decision = decide_access(self.book, who, command, now)
                creator = _creator_of(self.book, command, who)
                if isinstance(decision, Refusal):
                    if creator is not None and related(self.book, who, creator, now):
                        await self._audit(who, command, creator, now, decision.code)
                    else:
                        self._unaudited(who, command, creator, decision)
                    return decision
                try:
                    await self._apply(decision)
                except AccessMovedError as moved:
                    if attempt == MAX_MOVED_RETRIES - 1:
                        raise
                    await self._catch_up(moved.creator)
                    continue
                events = decision
                break
            await self._audit(who, command, creator, now, None)
        await self._effects(events, who)
        return events

    async def record_platform_fact(self, command: a.PlatformCommand) -> list[AccessEvent]:
        """Record what only the platform knows (cross-border status, sharing; R8)."""
        async with self._lock:
            for attempt in range(MAX_MOVED_RETRIES):
                events = decide_platform(self.book, command, self.clock())
                try:
                    await self._apply(events)
                except AccessMovedError:
                    if attempt == MAX_MOVED_RETRIES - 1:
                        raise
                    await self._catch_up(None)
                    continue
                break
        return events

    async def _apply(self, events: list[AccessEvent]) -> None:
        if not events:
            return
        await self.store.append_access_events(events)
        if self.on_changed is not None:
            self.on_changed()
        if self.shared and not isinstance(self.store, CatchingUpStore):
            await self._sync()
            return
        # A catching-up store appended only on top of what this node had seen of
        # the creator (else AccessMovedError): the book is the store's.
        self._fold(events)  # a grant, an extension, an unlink or a revoke moves the end

    async def _audit(
        self, who: Actor, command: a.AccessCommand, creator: str | None, now: int, code: int | None
    ) -> None:
        if creator is None:
            return
        tag = str(type(command).__struct_config__.tag)
        await self.journal.audit(
            [AuditEntry(at=now, creator=creator, actor=who, family="access", action=tag, code=code)]
        )

    def _unaudited(
        self, who: Actor, command: a.AccessCommand, creator: str | None, refusal: Refusal
    ) -> None:
        """A stranger's refusal: to the log and a metric, not to the creator's trail.

        A staff member's request to a creator their agency is not linked to is a
        legitimate attempt at a relation: applied, it is audited and lands in the
        creator's inbox (R14); refused, the creator never sees it, in the inbox or
        in the trail.
        """
        tag = str(type(command).__struct_config__.tag)
        if self.metrics is not None:
            self.metrics.unaudited_refusals.labels("access", refusal.code.name).inc()
        logger.info(
            "refused access command of a caller with no relation to the creator",
            extra={
                "action": tag,
                "code": int(refusal.code),
                "creator": creator,
                "actor": who.id,
                "agency": who.agency,
                "role": who.role,
            },
        )

    async def _effects(self, events: list[AccessEvent], who: Actor) -> None:
        notes: list[Notification] = []
        for event in events:
            if isinstance(event, a.LinkRemoved | a.AccessRevoked):
                status: AccessEnd = "unlinked" if isinstance(event, a.LinkRemoved) else "revoked"
                self._ended(event.agency, event.creator, status)
            text = _NOTICES.get(type(event))
            creator = getattr(event, "creator", None)
            agency = getattr(event, "agency", None)
            if isinstance(event, a.RequestSent):
                creator, agency = event.request.creator, event.request.agency
            if text is None or creator is None or who.role == "creator":
                continue
            nid = access_notification_id(event.at, type(event).__name__, agency or "")
            notes.append(
                Notification(
                    notification_id=nid,
                    creator=creator,
                    kind="agency_changed",
                    text=f"Agency {agency} {text}",
                    at=event.at,
                    by=who,
                )
            )
        if notes:
            await self.journal.notify(notes)


def _creator_of(book: AccessBook, command: a.AccessCommand, who: Actor) -> str | None:
    """The creator an access command concerns (for the audit trail)."""
    creator = getattr(command, "creator", None)
    if isinstance(creator, str):
        return creator
    request_id = getattr(command, "request_id", None)
    if isinstance(request_id, str) and request_id in book.requests:
        return book.requests[request_id].creator
    return who.id if who.role == "creator" else None
