"""Read-side views of the access book at a time ``now``: what the HTTP API lists.

A request's status is read against ``now`` (:func:`request_status`), so an
unanswered request past its 7 days reads as ``expired`` (R2). Re-exported by
:mod:`server.domain.access`.
"""

from __future__ import annotations

from msgspec.structs import replace

from protocol import access as a
from protocol.access import AccessRequest
from protocol.model import Actor
from server.domain.access_book import AccessBook, current_link, pair_key, request_status

__all__ = ["creators_of", "grants_of", "pending_requests", "related", "request_view"]


def request_view(book: AccessBook, request_id: str, now: int) -> AccessRequest | None:
    """A request with its status as of ``now`` (so ``expired`` is readable, R2)."""
    request = book.requests.get(request_id)
    return None if request is None else replace(request, status=request_status(book, request, now))


def pending_requests(
    book: AccessBook, creator: str, now: int, *, include_expired: bool = False
) -> list[AccessRequest]:
    """Unanswered requests addressed to a creator, oldest first.

    Expired ones are left out, or with ``include_expired`` listed with status
    ``expired``; answered and cancelled ones are never listed.
    """
    viewed = [
        replace(r, status=request_status(book, r, now))
        for r in book.requests.values()
        if r.creator == creator and r.status == "pending"
    ]
    return [r for r in viewed if include_expired or r.status == "pending"]


def grants_of(book: AccessBook, creator: str, now: int) -> list[a.GrantInForce]:
    """The LIVE Manager access a creator has given and not taken back, as of ``now``,
    by agency: links in force that carry access (R5; what the creator may revoke, R9)."""
    return sorted((
        a.GrantInForce(
            agency=link.agency, scopes=link.access.scopes, granted_at=link.access.granted_at,
            ends_at=link.ends_at, link_id=link.link_id, request_id=link.access.request_id,
        )
        for link in book.links.values()
        if link.creator == creator and link.access is not None and link.active(now)
    ), key=lambda g: g.agency)  # fmt: skip


def creators_of(book: AccessBook, agency: str, now: int) -> list[a.CreatorStatus]:
    """Every creator an agency has linked or asked, with status at ``now``, by id."""
    creators = {link.creator for link in book.links.values() if link.agency == agency}
    creators |= {r.creator for r in book.requests.values() if r.agency == agency}
    return [_creator_status(book, agency, creator, now) for creator in sorted(creators)]


def _creator_status(book: AccessBook, agency: str, creator: str, now: int) -> a.CreatorStatus:
    asked = [
        replace(r, status=request_status(book, r, now))
        for r in book.requests.values()
        if r.agency == agency and r.creator == creator
    ]
    waiting = [r for r in asked if r.status == "pending"]
    link = book.links.get(pair_key(agency, creator))
    if link is not None and link.active(now):
        access = link.access
        return a.CreatorStatus(
            creator=creator,
            status="access_granted" if access is not None
            else "revoked" if link.revoked_at is not None else "linked",
            ends_at=link.ends_at, scopes=[] if access is None else access.scopes,
            requests=waiting,
        )  # fmt: skip
    if waiting:
        return a.CreatorStatus(creator=creator, status="pending", requests=waiting)
    if link is not None:
        return a.CreatorStatus(creator=creator, status="ended", ends_at=link.ends_at)
    expired = bool(asked) and asked[-1].status == "expired"
    return a.CreatorStatus(creator=creator, status="expired" if expired else "none")


def related(book: AccessBook, who: Actor, creator: str, now: int) -> bool:
    """Whether ``who`` has a relation to ``creator`` at ``now``: is that creator, or
    is staff of an agency linked to them (a link in force, with or without access).

    Only a related caller's *refused* attempts are written to the creator's audit
    trail (R16): anyone else's would let any token holder fill another creator's
    trail. A stranger's attempt reaches the creator only when it is applied (a
    request lands in their inbox anyway, R14).
    """
    if who.role == "creator":
        return who.id == creator
    return who.agency is not None and current_link(book, who.agency, creator, now) is not None
