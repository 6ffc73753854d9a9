"""The access workflow (DOMAIN.md R1-R9): decide, evolve, grants and views.

Scenarios are tables of steps ``(who, command, now)``; ``who`` None means the
platform (``decide_platform``). Every refusal path of ``decide_access`` has a
row, and a property test drives random command sequences from random actors.
"""

from __future__ import annotations

from typing import Final

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import access as a
from protocol.access import AccessEvent, AnyAccessCommand
from protocol.errors import Code
from protocol.model import GRANTABLE, Actor, Family
from server.domain.access import (
    REQUEST_TTL_MS,
    AccessBook,
    creators_of,
    decide_access,
    decide_platform,
    evolve_access,
    grant_for,
    pair_key,
    pending_requests,
    request_view,
)
from server.domain.refusal import Refusal

AG, AG2 = "agency-1", "agency-2"
CR, CR2 = "creator-1", "creator-2"
STAFF = Actor(role="staff", id="staff-1", agency=AG)
STAFF_B = Actor(role="staff", id="staff-2", agency=AG)
OTHER_STAFF = Actor(role="staff", id="staff-9", agency=AG2)
LOOSE_STAFF = Actor(role="staff", id="staff-0")
CREATOR = Actor(role="creator", id=CR)
OTHER_CREATOR = Actor(role="creator", id=CR2)

HOUR: Final = 3_600_000
DAY: Final = 24 * HOUR
T0: Final = 1_700_000_000_000
END: Final = T0 + 30 * DAY
"""The end date of the links most scenarios create."""

Step = tuple[Actor | None, AnyAccessCommand, int]


# --- builders -------------------------------------------------------------------


def link(rid: str = "l1", *, access: bool = True, ends: int | None = END, at: int = T0,
         who: Actor = STAFF, creator: str = CR) -> Step:  # fmt: skip
    return (who, a.RequestLink(request_id=rid, creator=creator, with_access=access,
                               ends_at=ends), at)  # fmt: skip


def ask(rid: str = "q1", *, at: int = T0 + DAY, who: Actor = STAFF, creator: str = CR) -> Step:
    return (who, a.RequestAccess(request_id=rid, creator=creator), at)


def extend(rid: str = "x1", *, to: int = END + 30 * DAY, at: int = T0 + DAY,
           who: Actor = STAFF) -> Step:  # fmt: skip
    return (who, a.RequestExtension(request_id=rid, creator=CR, new_ends_at=to), at)


def accept(rid: str = "l1", *, scopes: list[Family] | None = None, at: int = T0 + HOUR,
           who: Actor = CREATOR) -> Step:  # fmt: skip
    return (who, a.AcceptRequest(request_id=rid, scopes=scopes), at)


def decline(rid: str = "l1", *, at: int = T0 + HOUR, who: Actor = CREATOR) -> Step:
    return (who, a.DeclineRequest(request_id=rid), at)


def unlink(*, at: int = T0 + 2 * DAY, who: Actor = CREATOR) -> Step:
    return (who, a.Unlink(agency=AG, creator=CR), at)


def revoke(*, at: int = T0 + 2 * DAY, who: Actor = CREATOR, agency: str = AG) -> Step:
    return (who, a.RevokeAccess(agency=agency), at)


def cross_border(agency: str = AG, flag: bool = True, at: int = T0 - 1) -> Step:
    return (None, a.RegisterAgency(agency=agency, cross_border=flag), at)


def sharing(kind: a.SharingKind = "commission", at: int = T0 - 1) -> Step:
    return (None, a.RecordSharing(agency=AG, creator=CR, kind=kind), at)


LINKED: Final = [link(access=False), accept()]
"""A link without access (l1, ends END)."""
GRANTED: Final = [link(), accept()]
"""A link with full access (l1, ends END)."""


def decide(book: AccessBook, who: Actor | None, cmd: AnyAccessCommand, now: int
           ) -> list[AccessEvent] | Refusal:  # fmt: skip
    if who is None:
        assert isinstance(cmd, a.RegisterAgency | a.RecordSharing)
        return decide_platform(book, cmd, now)
    return decide_access(book, who, cmd, now)


def play(steps: list[Step], book: AccessBook | None = None) -> AccessBook:
    """Apply steps that must all be accepted."""
    book = AccessBook() if book is None else book
    for who, cmd, now in steps:
        decision = decide(book, who, cmd, now)
        assert not isinstance(decision, Refusal), (cmd, decision)
        for event in decision:
            book = evolve_access(book, event)
    return book


def refused(steps: list[Step], step: Step) -> Code:
    """Play ``steps``, then the code ``step`` is refused with; the book is unchanged."""
    book = play(steps)
    before = msgspec.json.encode(book)
    decision = decide(book, *step)
    assert isinstance(decision, Refusal), decision
    assert msgspec.json.encode(book) == before
    return decision.code


def events_of(steps: list[Step], step: Step) -> list[str]:
    """The event tags ``step`` decides after ``steps``."""
    decision = decide(play(steps), *step)
    assert not isinstance(decision, Refusal), decision
    return [str(e.__struct_config__.tag) for e in decision]


# --- R1 -------------------------------------------------------------------------


# R1
@pytest.mark.parametrize(("steps", "granted"), [
    pytest.param([link()], False, id="bundled-request-unanswered"),
    pytest.param(GRANTED, True, id="bundled-request-accepted"),
    pytest.param([*LINKED], False, id="link-without-access-accepted"),
    pytest.param([*LINKED, ask()], False, id="access-request-unanswered"),
    pytest.param([*LINKED, ask(), accept("q1", at=T0 + 2 * DAY)], True, id="access-accepted"),
    pytest.param([link(who=OTHER_STAFF), accept()], False, id="other-agency-accepted"),
])  # fmt: skip
def test_r1_access_only_through_an_accepted_request(steps: list[Step], granted: bool) -> None:
    """An agency has access only once the creator accepted a request that asked for it."""
    assert (grant_for(play(steps), AG, CR, T0 + 3 * DAY) is not None) is granted
    assert grant_for(play(steps), AG, CR2, T0 + 3 * DAY) is None


# R1
@pytest.mark.parametrize(("steps", "step", "code"), [
    pytest.param([], link(who=CREATOR), Code.FORBIDDEN, id="creator-sends-link-request"),
    pytest.param([], link(who=LOOSE_STAFF), Code.FORBIDDEN, id="staff-without-agency"),
    pytest.param(LINKED, ask(who=CREATOR), Code.FORBIDDEN, id="creator-sends-access-request"),
    pytest.param(LINKED, extend(who=CREATOR), Code.FORBIDDEN, id="creator-sends-extension"),
    pytest.param([link()], accept(who=STAFF), Code.FORBIDDEN, id="staff-accepts"),
    pytest.param([link()], accept(who=OTHER_CREATOR), Code.FORBIDDEN, id="other-creator-accepts"),
    pytest.param([link()], decline(who=OTHER_CREATOR), Code.FORBIDDEN, id="other-creator-declines"),
    pytest.param([link()], decline(who=STAFF), Code.FORBIDDEN, id="staff-declines"),
    pytest.param([], accept("nope"), Code.UNKNOWN_REQUEST, id="accept-unknown"),
    pytest.param([], decline("nope"), Code.UNKNOWN_REQUEST, id="decline-unknown"),
    pytest.param([link()], link(creator=CR2), Code.ALREADY_EXISTS, id="request-id-reused"),
    pytest.param([], ask(), Code.NOT_LINKED, id="access-for-unlinked-creator"),
    pytest.param([], extend(), Code.NOT_LINKED, id="extension-for-unlinked-creator"),
    pytest.param([link()], ask(), Code.NOT_LINKED, id="access-while-link-pending"),
    pytest.param(LINKED, link("l2"), Code.ALREADY_LINKED, id="link-when-linked"),
    pytest.param([link()], link("l2", at=T0 + 1), Code.REQUEST_PENDING, id="second-link-request"),
    pytest.param([link(access=False)], link("l2"), Code.REQUEST_PENDING, id="bundle-after-link"),
    pytest.param([*LINKED, ask()], ask("q2"), Code.REQUEST_PENDING, id="second-access-request"),
    pytest.param(GRANTED, ask(), Code.ALREADY_GRANTED, id="access-when-granted"),
    pytest.param(GRANTED, accept(), Code.REQUEST_CLOSED, id="accept-twice"),
    pytest.param(GRANTED, decline(), Code.REQUEST_CLOSED, id="decline-after-accept"),
    pytest.param([link(), decline()], accept(), Code.REQUEST_CLOSED, id="accept-after-decline"),
    pytest.param([], link(ends=T0), Code.INVALID_ARGUMENT, id="link-ending-now"),
    pytest.param([], (STAFF, a.RegisterAgency(agency=AG, cross_border=False), T0),
                 Code.FORBIDDEN, id="party-registers-agency"),
    pytest.param([], (CREATOR, a.RecordSharing(agency=AG, creator=CR, kind="data"), T0),
                 Code.FORBIDDEN, id="party-records-sharing"),
])  # fmt: skip
def test_r1_who_may_request_and_answer(steps: list[Step], step: Step, code: Code) -> None:
    """Only staff request, only the addressed creator answers, once; else a clear code."""
    assert refused(steps, step) == code


# R1
def test_r1_other_staff_of_the_agency_share_its_links() -> None:
    """Requests and grants belong to the agency, not to the staff member who sent them."""
    book = play([link(who=STAFF_B), accept(), (STAFF, a.Unlink(agency=AG, creator=CR), T0 + DAY)])
    assert grant_for(book, AG, CR, T0 + DAY) is None
    assert book.requests["l1"].sent_by == STAFF_B.id


# --- R2 -------------------------------------------------------------------------


# R2
@pytest.mark.parametrize(("answer", "code"), [
    pytest.param(accept(at=T0 + REQUEST_TTL_MS - 1), None, id="accept-just-in-time"),
    pytest.param(accept(at=T0 + REQUEST_TTL_MS), Code.REQUEST_EXPIRED, id="accept-at-7-days"),
    pytest.param(accept(at=T0 + 8 * DAY), Code.REQUEST_EXPIRED, id="accept-after-7-days"),
    pytest.param(decline(at=T0 + 8 * DAY), Code.REQUEST_EXPIRED, id="decline-after-7-days"),
])  # fmt: skip
def test_r2_request_expires_after_7_days(answer: Step, code: Code | None) -> None:
    """A request unanswered for 7 days can no longer be accepted (or declined)."""
    if code is None:
        assert grant_for(play([link(), answer]), AG, CR, answer[2]) is not None
    else:
        assert refused([link()], answer) == code


# R2
@pytest.mark.parametrize(("steps", "rid", "now", "status"), [
    pytest.param([link()], "l1", T0 + DAY, "pending", id="fresh"),
    pytest.param([link()], "l1", T0 + 7 * DAY, "expired", id="seven-days-old"),
    pytest.param(GRANTED, "l1", T0 + 9 * DAY, "accepted", id="answered-never-expires"),
    pytest.param([link(), decline()], "l1", T0 + DAY, "declined", id="declined"),
    pytest.param([link(ends=T0 + DAY)], "l1", T0 + DAY, "expired", id="proposed-end-passed"),
    pytest.param([link(ends=None)], "l1", T0 + DAY, "pending", id="open-ended-proposal"),
    pytest.param([*LINKED, ask()], "q1", END, "expired", id="its-link-ended"),
])  # fmt: skip
def test_r2_expired_status_is_readable(steps: list[Step], rid: str, now: int, status: str) -> None:
    """A request's status is read at a time: unanswered past its life, it reads expired."""
    view = request_view(play(steps), rid, now)
    assert view is not None
    assert view.status == status
    assert request_view(play(steps), "nope", now) is None


# R2
@pytest.mark.parametrize(("steps", "step"), [
    pytest.param([link()], link("l2", at=T0 + 8 * DAY), id="new-link-request"),
    pytest.param([*LINKED, ask()], ask("q2", at=T0 + 9 * DAY), id="new-access-request"),
])  # fmt: skip
def test_r2_an_expired_request_blocks_nothing(steps: list[Step], step: Step) -> None:
    """Once a request expired the agency may send a new one."""
    assert events_of(steps, step) == ["request_sent"]


# --- R3, R4 ---------------------------------------------------------------------


# R3
def test_r3_declining_access_for_a_linked_creator_keeps_the_link() -> None:
    """Declining an access request rejects only it: the link stays, access can be asked again."""
    book = play([*LINKED, ask(), decline("q1", at=T0 + 2 * DAY)])
    assert book.links[f"{AG}/{CR}"].access is None
    assert grant_for(book, AG, CR, T0 + 2 * DAY) is None
    assert [s.status for s in creators_of(book, AG, T0 + 2 * DAY)] == ["linked"]
    assert events_of([*LINKED, ask(), decline("q1")], ask("q2")) == ["request_sent"]


# R4
@pytest.mark.parametrize("access", [pytest.param(True, id="link-and-access"),
                                    pytest.param(False, id="link-only")])  # fmt: skip
def test_r4_declining_a_bundled_request_leaves_no_link(access: bool) -> None:
    """Declining a link request deletes the pending link: no link comes into being."""
    steps = [link(access=access), decline()]
    book = play(steps)
    assert book.links == {}
    assert refused(steps, ask()) == Code.NOT_LINKED
    assert [s.status for s in creators_of(book, AG, T0 + DAY)] == ["none"]
    assert events_of(steps, link("l2")) == ["request_sent"]


# --- R5 -------------------------------------------------------------------------


# R5
@pytest.mark.parametrize(("steps", "now", "granted"), [
    pytest.param(GRANTED, END - 1, True, id="before-end-date"),
    pytest.param(GRANTED, END, False, id="at-end-date"),
    pytest.param([link(ends=None), accept()], END * 2, True, id="open-ended-link"),
    pytest.param([*GRANTED, extend(), accept("x1")], END + DAY, True, id="extended"),
    pytest.param([*GRANTED, extend(), accept("x1")], END + 30 * DAY, False, id="extended-end"),
    pytest.param([*GRANTED, unlink()], T0 + 3 * DAY, False, id="unlinked-first"),
])  # fmt: skip
def test_r5_access_lasts_for_the_link(steps: list[Step], now: int, granted: bool) -> None:
    """Access lasts until the link's end date or an unlink, whichever is first."""
    grant = grant_for(play(steps), AG, CR, now)
    assert (grant is not None) is granted
    if grant is not None:
        assert grant.active(now)
        assert grant.ends_at == play(steps).links[f"{AG}/{CR}"].ends_at


# R5
@pytest.mark.parametrize(("steps", "step", "code"), [
    pytest.param(LINKED, ask(at=END), Code.LINK_ENDED, id="access-after-end"),
    pytest.param(LINKED, extend(at=END), Code.LINK_ENDED, id="extension-after-end"),
    pytest.param(GRANTED, unlink(at=END), Code.LINK_ENDED, id="unlink-after-end"),
    pytest.param(GRANTED, revoke(at=END), Code.LINK_ENDED, id="revoke-after-end"),
    pytest.param([link(ends=T0 + DAY)], accept(at=T0 + DAY), Code.LINK_ENDED,
                 id="accept-link-after-proposed-end"),
    pytest.param([*LINKED, ask(at=END - DAY)], accept("q1", at=END), Code.LINK_ENDED,
                 id="accept-access-after-link-end"),
    pytest.param([*LINKED, extend(at=END - DAY)], decline("x1", at=END), Code.LINK_ENDED,
                 id="decline-extension-after-link-end"),
    pytest.param([link(ends=None), accept()], extend(), Code.INVALID_ARGUMENT,
                 id="extend-open-ended-link"),
    pytest.param(LINKED, extend(to=END), Code.INVALID_ARGUMENT, id="extension-not-later"),
])  # fmt: skip
def test_r5_the_end_date_is_final(steps: list[Step], step: Step, code: Code) -> None:
    """After the link's end date nothing can be done on that link."""
    assert refused(steps, step) == code


# R5
def test_r5_relink_after_the_end_date_is_a_new_link() -> None:
    """A relink after the end date starts a fresh link; requests about the old one lapse."""
    old = [*LINKED, ask(at=END - DAY)]
    steps = [*old, link("l2", at=END, ends=None), accept("l2", at=END + HOUR)]
    book = play(steps)
    assert book.links[f"{AG}/{CR}"].link_id == "l2"
    assert grant_for(book, AG, CR, END + HOUR) is not None
    assert refused(steps, accept("q1", at=END + 2 * HOUR)) == Code.LINK_ENDED
    assert pending_requests(book, CR, END + HOUR) == []
    assert events_of(old, link("l2", at=END, ends=None)) == ["request_sent"]


# --- R6 -------------------------------------------------------------------------


# R6
@pytest.mark.parametrize("who", [pytest.param(CREATOR, id="creator"),
                                 pytest.param(STAFF, id="staff"),
                                 pytest.param(STAFF_B, id="another-staff-member")])  # fmt: skip
def test_r6_unlinking_by_either_party_ends_access_at_once(who: Actor) -> None:
    """Unlinking, by the creator or the agency, removes link and access at that instant."""
    steps = [*GRANTED, unlink(who=who)]
    assert events_of(GRANTED, unlink(who=who)) == ["link_removed"]
    book = play(steps)
    assert grant_for(book, AG, CR, T0 + 2 * DAY) is None
    assert book.links == {}
    assert refused(steps, revoke(at=T0 + 3 * DAY)) == Code.NOT_LINKED


# R6
@pytest.mark.parametrize(("pending", "tags", "code"), [
    pytest.param(ask("r", at=T0 + 2 * DAY), ["request_cancelled", "link_removed"],
                 Code.REQUEST_CLOSED, id="access-request"),
    pytest.param(extend("r", at=T0 + 2 * DAY), ["request_cancelled", "link_removed"],
                 Code.REQUEST_CLOSED, id="extension-request"),
    pytest.param(ask("r", at=T0 + HOUR), ["link_removed"], Code.REQUEST_EXPIRED,
                 id="expired-request-stays-expired"),
])  # fmt: skip
def test_r6_unlinking_cancels_requests_about_the_link(
    pending: Step, tags: list[str], code: Code
) -> None:
    """Pending requests about a removed link are cancelled, so nobody can answer them."""
    steps, at = [*LINKED, pending], T0 + 8 * DAY
    assert events_of(steps, unlink(at=at)) == tags
    assert refused([*steps, unlink(at=at)], accept("r", at=at)) == code
    assert pending_requests(play([*steps, unlink(at=at)]), CR, at, include_expired=True) == (
        [] if code == Code.REQUEST_CLOSED else [request_view(play(steps), "r", at)]
    )


# R6
@pytest.mark.parametrize(("steps", "step", "code"), [
    pytest.param(GRANTED, unlink(who=OTHER_STAFF), Code.FORBIDDEN, id="other-agency-staff"),
    pytest.param(GRANTED, unlink(who=OTHER_CREATOR), Code.FORBIDDEN, id="other-creator"),
    pytest.param(GRANTED, unlink(who=LOOSE_STAFF), Code.FORBIDDEN, id="staff-without-agency"),
    pytest.param([], unlink(), Code.NOT_LINKED, id="never-linked"),
    pytest.param([*GRANTED, unlink()], unlink(at=T0 + 3 * DAY), Code.NOT_LINKED, id="twice"),
    pytest.param([*LINKED, ask(), unlink()], accept("q1", at=T0 + 3 * DAY),
                 Code.REQUEST_CLOSED, id="accept-cancelled-request"),
])  # fmt: skip
def test_r6_unlink_refusals(steps: list[Step], step: Step, code: Code) -> None:
    """Only a party unlinks, and only an existing link."""
    assert refused(steps, step) == code


# --- R7 -------------------------------------------------------------------------


# R7
@pytest.mark.parametrize(("steps", "step", "code"), [
    pytest.param([*LINKED, extend()], ask(at=T0 + 2 * DAY), Code.EXTENSION_PENDING,
                 id="access-while-extension-pending"),
    pytest.param([*LINKED, ask()], extend(at=T0 + 2 * DAY), Code.ACCESS_PENDING,
                 id="extension-while-access-pending"),
    pytest.param([*GRANTED, extend()], extend("x2", at=T0 + 2 * DAY), Code.REQUEST_PENDING,
                 id="second-extension"),
    pytest.param([*LINKED, ask()], (OTHER_STAFF, a.RequestExtension(
        request_id="x1", creator=CR, new_ends_at=END + DAY), T0 + 2 * DAY), Code.NOT_LINKED,
                 id="exclusion-is-per-agency"),
])  # fmt: skip
def test_r7_no_access_request_while_an_extension_is_pending(
    steps: list[Step], step: Step, code: Code
) -> None:
    """Access and extension requests of one agency to one creator exclude each other."""
    assert refused(steps, step) == code


# R7
@pytest.mark.parametrize(("steps", "step"), [
    pytest.param([*LINKED, extend(), accept("x1", at=T0 + 2 * DAY)], ask(at=T0 + 3 * DAY),
                 id="access-after-extension-accepted"),
    pytest.param([*LINKED, extend(), decline("x1", at=T0 + 2 * DAY)], ask(at=T0 + 3 * DAY),
                 id="access-after-extension-declined"),
    pytest.param([*LINKED, extend()], ask(at=T0 + 9 * DAY), id="access-after-extension-expired"),
    pytest.param([*LINKED, ask(), accept("q1", at=T0 + 2 * DAY)], extend(at=T0 + 3 * DAY),
                 id="extension-after-access-accepted"),
])  # fmt: skip
def test_r7_exclusion_ends_with_the_pending_request(steps: list[Step], step: Step) -> None:
    """Once the other request is answered or expired, the blocked one may be sent."""
    assert events_of(steps, step) == ["request_sent"]


# --- R8 -------------------------------------------------------------------------


# R8
@pytest.mark.parametrize(("facts", "step", "allowed"), [
    pytest.param([], link(), True, id="domestic-agency"),
    pytest.param([cross_border(flag=False)], link(), True, id="registered-domestic"),
    pytest.param([cross_border()], link(), False, id="cross-border-no-sharing"),
    pytest.param([cross_border()], link(access=False), True, id="cross-border-link-only"),
    pytest.param([cross_border(), sharing("commission")], link(), True, id="commission-sharing"),
    pytest.param([cross_border(), sharing("data")], link(), True, id="data-sharing"),
    pytest.param([cross_border(), (None, a.RecordSharing(agency=AG, creator=CR2, kind="data"),
                  T0)], link(), False, id="sharing-with-another-creator"),
    pytest.param([cross_border(), cross_border(flag=False)], link(), True, id="re-registered"),
    pytest.param([link(access=False), accept(), cross_border()], ask(), False,
                 id="access-for-linked-creator"),
    pytest.param([link(access=False), accept(), cross_border(), sharing()], ask(), True,
                 id="access-for-linked-sharing-creator"),
])  # fmt: skip
def test_r8_cross_border_agencies_need_a_sharing_relationship(
    facts: list[Step], step: Step, allowed: bool
) -> None:
    """A cross-border agency may ask access only of creators it shares commission or data with."""
    if allowed:
        assert events_of(facts, step) == ["request_sent"]
    else:
        assert refused(facts, step) == Code.CROSS_BORDER_NOT_ALLOWED


# R8
def test_r8_checked_again_on_accept() -> None:
    """An agency registered cross-border after asking cannot be granted access."""
    steps = [link(), cross_border(at=T0 + 1)]
    assert refused(steps, accept()) == Code.CROSS_BORDER_NOT_ALLOWED
    assert events_of([*steps, sharing("data", at=T0 + 2)], accept()) == [
        "request_accepted", "link_created", "access_granted"]  # fmt: skip


# R8
@pytest.mark.parametrize("fact", [pytest.param(cross_border(), id="register"),
                                  pytest.param(sharing(), id="sharing")])  # fmt: skip
def test_r8_platform_facts_are_recorded_once(fact: Step) -> None:
    """Recording a platform fact already known produces no event."""
    assert events_of([], fact) != []
    assert events_of([fact], fact) == []


# --- R9 -------------------------------------------------------------------------


# R9
def test_r9_revoking_ends_access_but_keeps_the_link() -> None:
    """The creator's revoke cuts access at once; the link stays and access can be asked again."""
    steps = [*GRANTED, revoke()]
    assert events_of(GRANTED, revoke()) == ["access_revoked"]
    book = play(steps)
    assert grant_for(book, AG, CR, T0 + 2 * DAY) is None
    assert book.links[f"{AG}/{CR}"].ends_at == END
    again = [*steps, ask("q2", at=T0 + 3 * DAY), accept("q2", at=T0 + 4 * DAY)]
    assert grant_for(play(again), AG, CR, T0 + 4 * DAY) is not None


# R9
@pytest.mark.parametrize(("steps", "step", "code"), [
    pytest.param(GRANTED, revoke(who=STAFF), Code.FORBIDDEN, id="staff-revokes"),
    pytest.param(GRANTED, revoke(who=OTHER_CREATOR), Code.NOT_LINKED, id="other-creator"),
    pytest.param(GRANTED, revoke(agency=AG2), Code.NOT_LINKED, id="other-agency"),
    pytest.param(LINKED, revoke(), Code.NO_ACCESS, id="link-without-access"),
    pytest.param([*GRANTED, revoke()], revoke(at=T0 + 3 * DAY), Code.NO_ACCESS, id="twice"),
])  # fmt: skip
def test_r9_revoke_refusals(steps: list[Step], step: Step, code: Code) -> None:
    """Only the creator revokes, and only access that exists."""
    assert refused(steps, step) == code


# R9
def test_r9_unlink_and_relink_without_access() -> None:
    """The platform's way: unlink, then a link request without access gives a bare link."""
    steps = [*GRANTED, unlink(), link("l2", access=False, at=T0 + 3 * DAY),
             accept("l2", at=T0 + 4 * DAY)]  # fmt: skip
    book = play(steps)
    assert book.links[f"{AG}/{CR}"].link_id == "l2"
    assert grant_for(book, AG, CR, T0 + 4 * DAY) is None
    assert [s.status for s in creators_of(book, AG, T0 + 4 * DAY)] == ["linked"]


# --- scopes ---------------------------------------------------------------------


# R5 (scoped grants)
@pytest.mark.parametrize(("scopes", "granted"), [
    pytest.param(None, GRANTABLE, id="default-all-grantable"),
    pytest.param(["bag"], {"bag"}, id="bag-only"),
    pytest.param(["planning", "bag", "bag"], {"bag", "planning"}, id="duplicates"),
    pytest.param(sorted(GRANTABLE), GRANTABLE, id="all-explicit"),
])  # fmt: skip
def test_scopes_are_chosen_by_the_creator_on_accept(
    scopes: list[Family] | None, granted: set[Family]
) -> None:
    """The creator may limit a grant to some command families; by default all grantable."""
    grant = grant_for(play([link(), accept(scopes=scopes)]), AG, CR, T0 + DAY)
    assert grant is not None
    assert grant.scopes == granted
    assert all(grant.covers(f) for f in granted)


# R5 (scoped grants)
@pytest.mark.parametrize(("steps", "step"), [
    pytest.param([link()], accept(scopes=[]), id="empty"),
    pytest.param([link()], accept(scopes=["bag", "live"]), id="live-not-grantable"),
    pytest.param([link()], accept(scopes=["feed"]), id="feed-not-grantable"),
    pytest.param([link(access=False)], accept(scopes=["bag"]), id="link-without-access"),
    pytest.param([*LINKED, extend()], accept("x1", scopes=["bag"]), id="extension"),
])  # fmt: skip
def test_scope_refusals(steps: list[Step], step: Step) -> None:
    """Scopes must be a non-empty subset of the grantable families, on access requests only."""
    assert refused(steps, step) == Code.INVALID_ARGUMENT


# --- views ----------------------------------------------------------------------


def test_pending_requests_for_a_creator() -> None:
    """A creator's inbox lists open requests oldest first; expired ones only when asked."""
    book = play([link(), link("m1", creator=CR2), link("o1", who=OTHER_STAFF, at=T0 + 3 * DAY),
                 decline("o1", at=T0 + 3 * DAY)])  # fmt: skip
    assert [r.request_id for r in pending_requests(book, CR, T0 + DAY)] == ["l1"]
    assert pending_requests(book, CR, T0 + 8 * DAY) == []
    listed = pending_requests(book, CR, T0 + 8 * DAY, include_expired=True)
    assert [(r.request_id, r.status) for r in listed] == [("l1", "expired")]


@pytest.mark.parametrize(("steps", "now", "status"), [
    pytest.param([], T0, None, id="never-asked"),
    pytest.param([link()], T0 + DAY, "pending", id="pending"),
    pytest.param([link()], T0 + 8 * DAY, "expired", id="expired"),
    pytest.param(LINKED, T0 + DAY, "linked", id="linked"),
    pytest.param(GRANTED, T0 + DAY, "access_granted", id="access-granted"),
    pytest.param(GRANTED, END, "ended", id="link-ended"),
    pytest.param([*GRANTED, link("l2", at=END, ends=None)], END, "pending", id="relink-pending"),
    pytest.param([*GRANTED, revoke()], T0 + 3 * DAY, "revoked", id="revoked"),  # R9
    pytest.param([*GRANTED, revoke(), ask("q2", at=T0 + 3 * DAY), accept("q2", at=T0 + 3 * DAY)],
                 T0 + 3 * DAY, "access_granted", id="granted-again"),
    pytest.param([*GRANTED, unlink()], T0 + 3 * DAY, "none", id="unlinked"),
    pytest.param([link(), decline()], T0 + DAY, "none", id="declined"),
])  # fmt: skip
def test_creators_of_an_agency(steps: list[Step], now: int, status: str | None) -> None:
    """An agency lists each creator it linked or asked, with the status at ``now``."""
    listed = creators_of(play([*steps, link("z", who=OTHER_STAFF)]), AG, now)
    assert [s.status for s in listed] == ([] if status is None else [status])


def test_creator_status_carries_link_scopes_and_open_requests() -> None:
    """The listing shows the end date, the granted scopes and requests awaiting the creator."""
    book = play([link(), accept(scopes=["bag"]), extend()])
    (row,) = creators_of(book, AG, T0 + DAY)
    assert (row.ends_at, row.scopes) == (END, ["bag"])
    assert [r.request_id for r in row.requests] == ["x1"]


# --- wire -----------------------------------------------------------------------


def test_commands_and_events_cross_the_wire() -> None:
    """Commands decode from JSON by their type tag; events and the book round-trip."""
    body = b'{"type":"request_link","request_id":"r-1","creator":"c-1","with_access":false}'
    cmd = msgspec.json.decode(body, type=AnyAccessCommand)
    assert cmd == a.RequestLink(request_id="r-1", creator="c-1", with_access=False)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body.replace(b"r-1", b"r/1"), type=AnyAccessCommand)
    steps = [*GRANTED, extend(), accept("x1", at=T0 + 2 * DAY), revoke(at=T0 + 3 * DAY)]
    book = play(steps)
    assert msgspec.json.decode(msgspec.json.encode(book), type=AccessBook) == book


# --- properties -----------------------------------------------------------------

PAIRS = [(ag, cr) for ag in (AG, AG2) for cr in (CR, CR2)]
STAFF_OF = {AG: {STAFF.id, STAFF_B.id}, AG2: {OTHER_STAFF.id}}
ELAPSE = st.sampled_from([0, 0, HOUR, HOUR, HOUR, 6 * HOUR, DAY, 3 * DAY, 8 * DAY])
DAYS = st.integers(min_value=1, max_value=40)
SCOPES: st.SearchStrategy[list[Family] | None] = st.none() | st.lists(
    st.sampled_from(["bag", "live", "planning", "moderation"]), max_size=3)  # fmt: skip
SHARING: st.SearchStrategy[a.SharingKind] = st.sampled_from(["commission", "data"])
# Mostly the right party, so that sequences get far; sometimes a wrong one.
AS_STAFF = {
    ag: st.sampled_from([right] * 6 + [STAFF_B, OTHER_STAFF, LOOSE_STAFF, CREATOR])
    for ag, right in ((AG, STAFF), (AG2, OTHER_STAFF))
}
AS_CREATOR = {
    cr: st.sampled_from([Actor(role="creator", id=cr)] * 5 + [OTHER_CREATOR, STAFF])
    for cr in (CR, CR2)
}
AS_PLATFORM = st.sampled_from([None, None, None, STAFF, CREATOR])
Action = tuple[Actor | None, AnyAccessCommand]
EVENTS = msgspec.json.Decoder(list[AccessEvent])


def kinds_for(book: AccessBook, now: int) -> list[str]:
    """Which commands to draw from next: all of them, weighed toward those that can get
    through (answers while requests are open, requests on a link while there is one)."""
    kinds = ["link", "link", "access", "extension", "accept", "decline", "unlink", "revoke",
             "register", "sharing"]  # fmt: skip
    if any(pending_requests(book, cr, now) for cr in (CR, CR2)):
        kinds += ["accept"] * 4 + ["decline"]
    if book.links:
        kinds += ["access", "access", "extension", "extension", "revoke"]
    return kinds


def draw_action(data: st.DataObject, kind: str, now: int, fresh: str, book: AccessBook
                ) -> Action:  # fmt: skip
    """A command of ``kind`` and its sender, drawn against the book so far: mostly about a
    linked pair, a new request mostly with a fresh id, an answer mostly naming an open
    request and coming from its creator, end dates after ``now``, one in five open."""
    known = list(book.requests)
    if kind in {"accept", "decline"}:
        open_ids = [r.request_id for cr in (CR, CR2) for r in pending_requests(book, cr, now)]
        rid = data.draw(st.sampled_from([*open_ids * 4, *known, "nope"]), label="request")
        who = data.draw(AS_CREATOR[book.requests[rid].creator if rid in book.requests else CR])
        if kind == "decline":
            return who, a.DeclineRequest(request_id=rid)
        return who, a.AcceptRequest(request_id=rid, scopes=data.draw(SCOPES))
    linked = [(k.agency, k.creator) for k in book.links.values()]
    ag, cr = data.draw(st.sampled_from(linked * 6 + PAIRS), label="pair")
    if kind == "unlink":
        return data.draw(AS_STAFF[ag] | AS_CREATOR[cr]), a.Unlink(agency=ag, creator=cr)
    if kind == "revoke":
        return data.draw(AS_CREATOR[cr]), a.RevokeAccess(agency=ag)
    if kind == "register":
        flag = data.draw(st.booleans())
        return data.draw(AS_PLATFORM), a.RegisterAgency(agency=ag, cross_border=flag)
    if kind == "sharing":
        share = data.draw(SHARING)
        return data.draw(AS_PLATFORM), a.RecordSharing(agency=ag, creator=cr, kind=share)
    rid = data.draw(st.sampled_from([fresh] * 5 + known[-1:]), label="new request")
    who = data.draw(AS_STAFF[ag])
    if kind == "access":
        return who, a.RequestAccess(request_id=rid, creator=cr)
    days = data.draw(DAYS, label="days")
    if kind == "extension":
        return who, a.RequestExtension(request_id=rid, creator=cr, new_ends_at=now + days * DAY)
    ends = None if days % 5 == 4 else now + days * DAY
    return who, a.RequestLink(request_id=rid, creator=cr, with_access=data.draw(st.booleans()),
                              ends_at=ends)  # fmt: skip


class Model:
    """What the grant should be, from accepted commands only (not from events)."""

    def __init__(self) -> None:
        self.access: dict[tuple[str, str], bool] = {}
        self.ends: dict[tuple[str, str], int | None] = {}

    def granted(self, pair: tuple[str, str], now: int) -> bool:
        ends = self.ends.get(pair)
        return self.access.get(pair, False) and (ends is None or now < ends)

    def apply(self, book: AccessBook, who: Actor, cmd: AnyAccessCommand) -> None:
        match cmd:
            case a.AcceptRequest():
                request = book.requests[cmd.request_id]
                pair = (request.agency, request.creator)
                # R1: only the addressed creator accepts, a request the agency's staff sent
                assert who.role == "creator"
                assert who.id == request.creator
                assert request.sent_by in STAFF_OF[request.agency]
                if request.kind != "access":  # link kinds set the end date, extension moves it
                    self.ends[pair] = request.ends_at
                if request.kind != "extension":  # a (re)link starts without access
                    self.access[pair] = request.kind != "link"
            case a.Unlink() | a.RevokeAccess():
                creator = cmd.creator if isinstance(cmd, a.Unlink) else who.id
                self.access[(cmd.agency, creator)] = False
            case _:
                pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_sequences_keep_the_invariants(data: st.DataObject) -> None:
    """Any command sequence from any actor: grants match accepts, refusals change nothing,
    and folding the (serialised) events reproduces the book."""
    book, now, model = AccessBook(), T0, Model()
    log: list[AccessEvent] = []
    for step in range(data.draw(st.integers(min_value=8, max_value=30), label="length")):
        now += data.draw(ELAPSE, label="elapse")
        kind = data.draw(st.sampled_from(kinds_for(book, now)), label="kind")
        who, cmd = draw_action(data, kind, now, f"r{step}", book)
        before = msgspec.json.encode(book)
        decision = decide(book, who, cmd, now)
        if isinstance(decision, Refusal):
            assert msgspec.json.encode(book) == before  # a refusal changes nothing
            decision = []
        elif who is not None:
            model.apply(book, who, cmd)
        for event in decision:
            if isinstance(event, a.LinkCreated):  # never two live links for one pair
                old = book.links.get(pair_key(event.agency, event.creator))
                assert old is None or not old.active(now)
            if isinstance(event, a.AccessGranted):  # R1: access only through an accept
                assert isinstance(cmd, a.AcceptRequest)
            book = evolve_access(book, event)
        log.extend(decision)
        for ag, cr in PAIRS:  # R5, R6, R9: a grant exactly while the model says so
            grant = grant_for(book, ag, cr, now)
            assert (grant is not None) is model.granted((ag, cr), now), (ag, cr)
            if grant is not None:
                assert grant.scopes
                assert grant.scopes <= GRANTABLE
        assert all(r.status == "pending" for r in pending_requests(book, CR, now))
    replayed = AccessBook()
    for event in EVENTS.decode(msgspec.json.encode(log)):
        replayed = evolve_access(replayed, event)
    assert replayed == book
    assert msgspec.json.decode(msgspec.json.encode(book), type=AccessBook) == book
