"""Partnership and LIVE Manager access, pure (DOMAIN.md R1-R9): the decider.

``decide_access(book, who, command, now)`` turns a party's command into events
or a :class:`Refusal`; ``decide_platform`` records platform facts (R8);
``evolve_access(book, event)`` folds an event into the :class:`AccessBook`;
``grant_for`` gives the room decider the one value it needs, a :class:`Grant`.
No I/O, no clock: ``now`` is milliseconds since the epoch.

The book and how it reads at ``now`` (expiry, R2; end dates, R5) are in
:mod:`server.domain.access_book`; the read-side views in
:mod:`server.domain.access_views`. Both are re-exported here.
"""

from __future__ import annotations

from typing import Final, assert_never

from msgspec.structs import replace

from protocol import access as a
from protocol.access import AccessEvent, AccessRequest, RequestKind, RequestStatus
from protocol.errors import Code
from protocol.model import FAMILIES, GRANTABLE, Actor, Family
from server.domain.access_book import (
    ACCESS_KINDS,
    LINK_KINDS,
    Access,
    AccessBook,
    Link,
    current_link,
    lapsed,
    pair_key,
    request_status,
)
from server.domain.access_views import creators_of, pending_requests, request_view
from server.domain.caps import MAX_PENDING_REQUESTS
from server.domain.grants import Grant
from server.domain.refusal import Refusal

__all__ = [
    "REQUEST_TTL_MS", "Access", "AccessBook", "Decision", "Link", "creators_of",
    "decide_access", "decide_platform", "evolve_access", "grant_for", "pair_key",
    "pending_requests", "request_view",
]  # fmt: skip

REQUEST_TTL_MS: Final = 7 * 24 * 3600 * 1000
"""R2: a request expires 7 days after it is sent."""

Decision = list[AccessEvent] | Refusal

_NO_SHARING = "a cross-border agency needs a commission- or data-sharing relationship"


# --- reading the book at a time `now` -----------------------------------------


def _pending(
    book: AccessBook, agency: str, creator: str, kinds: frozenset[RequestKind], now: int
) -> bool:
    return any(
        r.agency == agency and r.creator == creator and r.kind in kinds
        and request_status(book, r, now) == "pending"
        for r in book.requests.values()
    )  # fmt: skip


def _cross_border_blocked(book: AccessBook, agency: str, creator: str) -> bool:
    """R8: a cross-border agency needs a commission- or data-sharing relationship."""
    shares = bool(book.sharing.get(pair_key(agency, creator)))
    return book.cross_border.get(agency, False) and not shares


def grant_for(book: AccessBook, agency: str, creator: str, now: int) -> Grant | None:
    """The agency's access to the creator at ``now``, or None (R5, R6, R9).

    None when there is no link, the link has reached its end date, or the link
    carries no access (never granted, or revoked).
    """
    link = current_link(book, agency, creator, now)
    if link is None or link.access is None:
        return None
    return Grant(
        agency=agency, creator=creator, scopes=frozenset(link.access.scopes),
        granted_at=link.access.granted_at, ends_at=link.ends_at,
    )  # fmt: skip


# --- deciding -------------------------------------------------------------------


def decide_access(book: AccessBook, who: Actor, command: a.AnyAccessCommand, now: int) -> Decision:
    """Decide a party's command: the events to record, or a refusal (nothing changes).

    Only agency staff send requests; only the addressed creator answers or
    revokes; either party unlinks. Platform facts are refused here (FORBIDDEN):
    no party may vouch for its own cross-border status (R8).
    """
    match command:
        case a.RequestLink():
            return _request_link(book, who, command, now)
        case a.RequestAccess():
            return _request_access(book, who, command, now)
        case a.RequestExtension():
            return _request_extension(book, who, command, now)
        case a.AcceptRequest():
            return _accept(book, who, command, now)
        case a.DeclineRequest():
            return _decline(book, who, command, now)
        case a.Unlink():
            return _unlink(book, who, command, now)
        case a.RevokeAccess():
            return _revoke(book, who, command, now)
        case a.RegisterAgency() | a.RecordSharing():
            return Refusal(Code.FORBIDDEN, "platform facts are recorded by the platform")
        case _ as unreachable:
            assert_never(unreachable)


def decide_platform(book: AccessBook, command: a.PlatformCommand, now: int) -> list[AccessEvent]:
    """Record a platform fact (R8): never refused; a fact already known gives no event.

    The server calls this for an operator or a platform feed, never for a party.
    """
    match command:
        case a.RegisterAgency(agency=agency, cross_border=flag):
            if book.cross_border.get(agency) == flag:
                return []
            return [a.AgencyRegistered(at=now, agency=agency, cross_border=flag)]
        case a.RecordSharing(agency=agency, creator=creator, kind=kind):
            if kind in book.sharing.get(pair_key(agency, creator), []):
                return []
            return [a.SharingRecorded(at=now, agency=agency, creator=creator, kind=kind)]
        case _ as unreachable:
            assert_never(unreachable)


def _sender(book: AccessBook, who: Actor, request_id: str, now: int) -> str | Refusal:
    """The agency sending a new request, or why it may not."""
    if who.role != "staff" or who.agency is None:
        return Refusal(Code.FORBIDDEN, "only agency staff send requests")
    if request_id in book.requests:
        return Refusal(Code.ALREADY_EXISTS, f"request {request_id} already exists")
    agency = who.agency
    # Every request lands in a creator's inbox: one agency may not flood them (cap,
    # decision 0018). Expired and answered requests do not count.
    pending = sum(
        1
        for r in book.requests.values()
        if r.agency == agency and request_status(book, r, now) == "pending"
    )
    if pending >= MAX_PENDING_REQUESTS:
        return Refusal(
            Code.TOO_MANY_PENDING,
            f"at most {MAX_PENDING_REQUESTS:,} requests pending per agency (a documented cap)",
        )
    return agency


def _linked(book: AccessBook, agency: str, creator: str, now: int) -> Link | Refusal:
    link = book.links.get(pair_key(agency, creator))
    if link is None:
        return Refusal(Code.NOT_LINKED, f"{agency} and {creator} are not linked")
    if not link.active(now):
        return Refusal(Code.LINK_ENDED, f"the link ended at {link.ends_at}")  # R5
    return link


def _sent(
    who: Actor, now: int, *, agency: str, request_id: str, creator: str, kind: RequestKind,
    ends_at: int | None = None, link_id: str | None = None,
) -> list[AccessEvent]:  # fmt: skip
    request = AccessRequest(
        request_id=request_id, kind=kind, agency=agency, creator=creator, sent_by=who.id,
        sent_at=now, expires_at=now + REQUEST_TTL_MS, ends_at=ends_at, link_id=link_id,
    )  # fmt: skip
    return [a.RequestSent(at=now, request=request)]


def _request_link(book: AccessBook, who: Actor, cmd: a.RequestLink, now: int) -> Decision:
    agency = _sender(book, who, cmd.request_id, now)
    if isinstance(agency, Refusal):
        return agency
    if cmd.ends_at is not None and cmd.ends_at <= now:
        return Refusal(Code.INVALID_ARGUMENT, "the link's end date must be in the future")
    if current_link(book, agency, cmd.creator, now) is not None:
        return Refusal(Code.ALREADY_LINKED, "already linked: request access instead")
    if _pending(book, agency, cmd.creator, LINK_KINDS, now):
        return Refusal(Code.REQUEST_PENDING, "a link request is already pending")
    if cmd.with_access and _cross_border_blocked(book, agency, cmd.creator):
        return Refusal(Code.CROSS_BORDER_NOT_ALLOWED, _NO_SHARING)  # R8
    return _sent(
        who, now, agency=agency, request_id=cmd.request_id, creator=cmd.creator,
        kind="link_and_access" if cmd.with_access else "link", ends_at=cmd.ends_at,
    )  # fmt: skip


def _request_access(book: AccessBook, who: Actor, cmd: a.RequestAccess, now: int) -> Decision:
    agency = _sender(book, who, cmd.request_id, now)
    if isinstance(agency, Refusal):
        return agency
    link = _linked(book, agency, cmd.creator, now)
    if isinstance(link, Refusal):
        return link
    if link.access is not None:
        return Refusal(Code.ALREADY_GRANTED, "access is already granted")
    if _pending(book, agency, cmd.creator, frozenset({"extension"}), now):
        return Refusal(Code.EXTENSION_PENDING, "a link extension request is pending")  # R7
    if _pending(book, agency, cmd.creator, frozenset({"access"}), now):
        return Refusal(Code.REQUEST_PENDING, "an access request is already pending")
    if _cross_border_blocked(book, agency, cmd.creator):
        return Refusal(Code.CROSS_BORDER_NOT_ALLOWED, _NO_SHARING)  # R8
    return _sent(
        who, now, agency=agency, request_id=cmd.request_id, creator=cmd.creator, kind="access",
        link_id=link.link_id,
    )  # fmt: skip


def _request_extension(book: AccessBook, who: Actor, cmd: a.RequestExtension, now: int) -> Decision:
    agency = _sender(book, who, cmd.request_id, now)
    if isinstance(agency, Refusal):
        return agency
    link = _linked(book, agency, cmd.creator, now)
    if isinstance(link, Refusal):
        return link
    if link.ends_at is None or cmd.new_ends_at <= link.ends_at:
        return Refusal(Code.INVALID_ARGUMENT, "an extension must move a set end date later")
    if _pending(book, agency, cmd.creator, frozenset({"access"}), now):
        return Refusal(Code.ACCESS_PENDING, "a LIVE access request is pending")  # R7
    if _pending(book, agency, cmd.creator, frozenset({"extension"}), now):
        return Refusal(Code.REQUEST_PENDING, "an extension request is already pending")
    return _sent(
        who, now, agency=agency, request_id=cmd.request_id, creator=cmd.creator,
        kind="extension", ends_at=cmd.new_ends_at, link_id=link.link_id,
    )  # fmt: skip


def _answerable(book: AccessBook, who: Actor, request_id: str, now: int) -> AccessRequest | Refusal:
    """The request the creator answers, or why it cannot be answered."""
    request = book.requests.get(request_id)
    if who.role != "creator" or (request is not None and request.creator != who.id):
        return Refusal(Code.FORBIDDEN, "only the addressed creator answers a request")
    if request is None:
        return Refusal(Code.UNKNOWN_REQUEST, f"no request {request_id}")
    if request.status != "pending":
        return Refusal(Code.REQUEST_CLOSED, f"the request was {request.status}")
    if now >= request.expires_at:
        return Refusal(Code.REQUEST_EXPIRED, "the request expired after 7 days")  # R2
    if lapsed(book, request, now):
        return Refusal(Code.LINK_ENDED, "the link this request is about has ended")  # R5
    return request


def _scopes(request: AccessRequest, asked: list[Family] | None) -> list[Family] | Refusal:
    if request.kind not in ACCESS_KINDS:
        if asked is not None:
            return Refusal(Code.INVALID_ARGUMENT, "scopes apply only to access requests")
        return []
    chosen = GRANTABLE if asked is None else frozenset(asked)
    if not chosen or not chosen <= GRANTABLE:
        return Refusal(Code.INVALID_ARGUMENT, f"scopes: a non-empty subset of {sorted(GRANTABLE)}")
    return [f for f in FAMILIES if f in chosen]  # canonical order: equal grants compare equal


def _accept(book: AccessBook, who: Actor, cmd: a.AcceptRequest, now: int) -> Decision:
    request = _answerable(book, who, cmd.request_id, now)
    if isinstance(request, Refusal):
        return request
    scopes = _scopes(request, cmd.scopes)
    if isinstance(scopes, Refusal):
        return scopes
    agency, creator, kind = request.agency, request.creator, request.kind
    # Checked again on accept: the platform may have registered the agency since.
    if kind in ACCESS_KINDS and _cross_border_blocked(book, agency, creator):
        return Refusal(Code.CROSS_BORDER_NOT_ALLOWED, _NO_SHARING)  # R8
    rid = request.request_id
    events: list[AccessEvent] = [
        a.RequestAccepted(at=now, request_id=rid, agency=agency, creator=creator, kind=kind)
    ]
    # A link request is the link's id. No active link can exist here: link requests
    # are refused while linked, and only one per pair is pending at a time.
    link_id = rid if kind in LINK_KINDS else request.link_id
    assert link_id is not None  # access and extension requests name their link
    if kind in LINK_KINDS:
        events.append(a.LinkCreated(
            at=now, agency=agency, creator=creator, link_id=link_id, ends_at=request.ends_at
        ))  # fmt: skip
    if kind in ACCESS_KINDS:
        events.append(a.AccessGranted(
            at=now, agency=agency, creator=creator, link_id=link_id, request_id=rid,
            scopes=scopes,
        ))  # fmt: skip
    if kind == "extension":
        assert request.ends_at is not None  # an extension carries its new end date
        events.append(a.LinkExtended(
            at=now, agency=agency, creator=creator, link_id=link_id, ends_at=request.ends_at
        ))  # fmt: skip
    return events


def _decline(book: AccessBook, who: Actor, cmd: a.DeclineRequest, now: int) -> Decision:
    request = _answerable(book, who, cmd.request_id, now)
    if isinstance(request, Refusal):
        return request
    # R3/R4: a link only comes into being on accept, so declining a bundled request
    # leaves no link, and declining an access request leaves the link as it was.
    return [
        a.RequestDeclined(
            at=now, request_id=request.request_id, agency=request.agency,
            creator=request.creator, kind=request.kind,
        )
    ]  # fmt: skip


def _unlink(book: AccessBook, who: Actor, cmd: a.Unlink, now: int) -> Decision:
    creator_side = who.role == "creator" and who.id == cmd.creator
    if not (creator_side or (who.role == "staff" and who.agency == cmd.agency)):
        return Refusal(Code.FORBIDDEN, "only the linked creator or agency unlinks")
    link = _linked(book, cmd.agency, cmd.creator, now)
    if isinstance(link, Refusal):
        return link
    # Requests about this link die with it: the creator is not left to answer them.
    events: list[AccessEvent] = [
        a.RequestCancelled(
            at=now, request_id=r.request_id, agency=r.agency, creator=r.creator, kind=r.kind
        )
        for r in book.requests.values()
        if r.link_id == link.link_id and r.agency == link.agency and r.creator == link.creator
        and request_status(book, r, now) == "pending"
    ]  # fmt: skip
    events.append(
        a.LinkRemoved(at=now, agency=link.agency, creator=link.creator, link_id=link.link_id,
                      by=who.role)
    )  # fmt: skip
    return events


def _revoke(book: AccessBook, who: Actor, cmd: a.RevokeAccess, now: int) -> Decision:
    if who.role != "creator":
        return Refusal(Code.FORBIDDEN, "only the creator revokes access")
    link = _linked(book, cmd.agency, who.id, now)
    if isinstance(link, Refusal):
        return link
    if link.access is None:
        return Refusal(Code.NO_ACCESS, "the agency has no access to revoke")
    return [a.AccessRevoked(at=now, agency=cmd.agency, creator=who.id, link_id=link.link_id)]


# --- evolving -------------------------------------------------------------------


def evolve_access(book: AccessBook, event: AccessEvent) -> AccessBook:
    """Fold one event into the book: pure and total over what the deciders produce."""
    match event:
        case a.RequestSent(request=request):
            return replace(book, requests={**book.requests, request.request_id: request})
        case a.RequestAccepted():
            return _close(book, event.request_id, "accepted", event.at)
        case a.RequestDeclined():
            return _close(book, event.request_id, "declined", event.at)
        case a.RequestCancelled():
            return _close(book, event.request_id, "cancelled", event.at)
        case a.LinkCreated():
            return _put_link(book, Link(
                agency=event.agency, creator=event.creator, link_id=event.link_id,
                linked_at=event.at, ends_at=event.ends_at,
            ))  # fmt: skip
        case a.LinkExtended():
            return _put_link(book, replace(_link(book, event), ends_at=event.ends_at))
        case a.LinkRemoved():
            key = pair_key(event.agency, event.creator)
            return replace(book, links={k: v for k, v in book.links.items() if k != key})
        case a.AccessGranted():
            access = Access(request_id=event.request_id, scopes=event.scopes, granted_at=event.at)
            return _put_link(book, replace(_link(book, event), access=access, revoked_at=None))
        case a.AccessRevoked():
            return _put_link(book, replace(_link(book, event), access=None, revoked_at=event.at))
        case a.AgencyRegistered():
            flags = {**book.cross_border, event.agency: event.cross_border}
            return replace(book, cross_border=flags)
        case a.SharingRecorded():
            key = pair_key(event.agency, event.creator)
            kinds = [*book.sharing.get(key, []), event.kind]
            return replace(book, sharing={**book.sharing, key: kinds})
        case _ as unreachable:
            assert_never(unreachable)


def _link(book: AccessBook, event: a.LinkExtended | a.AccessGranted | a.AccessRevoked) -> Link:
    return book.links[pair_key(event.agency, event.creator)]


def _close(book: AccessBook, request_id: str, status: RequestStatus, at: int) -> AccessBook:
    request = replace(book.requests[request_id], status=status, answered_at=at)
    return replace(book, requests={**book.requests, request_id: request})


def _put_link(book: AccessBook, link: Link) -> AccessBook:
    return replace(book, links={**book.links, pair_key(link.agency, link.creator): link})
