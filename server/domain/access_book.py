"""The access book and how to read it at a time ``now`` (DOMAIN.md R2, R5).

:class:`AccessBook` holds every link, request and platform fact. Expiry (R2)
and link end dates (R5) are not events: they are read against ``now`` here, so
nothing has to wake up to expire a request or refuse a command after a link's
end. Open sessions do have to be told when access ends (R6): the access service
keeps one timer for :func:`next_access_end` and, when it fires, ends access for
:func:`access_ended_between` its last check and now. Shared by the
decider (:mod:`server.domain.access`) and the read-side views
(:mod:`server.domain.access_views`).
"""

from __future__ import annotations

from typing import Final

from msgspec import Struct

from protocol import access as a
from protocol.access import AccessRequest, RequestKind, RequestStatus
from protocol.model import Family

__all__ = [
    "ACCESS_KINDS", "LINK_KINDS", "Access", "AccessBook", "Link", "access_ended_between",
    "current_link", "lapsed", "next_access_end", "pair_key", "request_status",
]  # fmt: skip

ACCESS_KINDS: Final[frozenset[RequestKind]] = frozenset({"link_and_access", "access"})
"""Request kinds that grant LIVE Manager access when accepted."""
LINK_KINDS: Final[frozenset[RequestKind]] = frozenset({"link", "link_and_access"})
"""Request kinds that create a link when accepted."""


class Access(Struct, frozen=True, kw_only=True):
    """LIVE Manager access on a link: what the creator accepted, and when."""

    request_id: str
    scopes: list[Family]
    granted_at: int


class Link(Struct, frozen=True, kw_only=True):
    """A partnership between an agency and a creator, with access or without."""

    agency: str
    creator: str
    link_id: str
    """The id of the request that created it: tells a link from a later relink."""
    linked_at: int
    ends_at: int | None = None
    access: Access | None = None
    revoked_at: int | None = None
    """When the creator last revoked access on this link (None since a grant)."""

    def active(self, now: int) -> bool:
        """Whether the link still holds at ``now`` (R5: until its end date)."""
        return self.ends_at is None or now < self.ends_at


class AccessBook(Struct, frozen=True, kw_only=True):
    """Every link, request and platform fact; pairs are keyed by :func:`pair_key`.

    Treat it as immutable: ``evolve_access`` copies only the dict it changes.
    Answered requests are kept, so a late answer gets a clear code.
    """

    cross_border: dict[str, bool] = {}
    """Agency -> cross-border (R8); an agency not in here is domestic."""
    sharing: dict[str, list[a.SharingKind]] = {}
    links: dict[str, Link] = {}
    """An unlinked pair is deleted; a link past its end date stays until a relink."""
    requests: dict[str, AccessRequest] = {}
    """By request id, in the order they were sent."""


def pair_key(agency: str, creator: str) -> str:
    """The dict key of an agency/creator pair ("/" cannot occur in an id)."""
    return f"{agency}/{creator}"


def current_link(book: AccessBook, agency: str, creator: str, now: int) -> Link | None:
    """The pair's link if it still holds at ``now``, else None."""
    link = book.links.get(pair_key(agency, creator))
    return link if link is not None and link.active(now) else None


def lapsed(book: AccessBook, request: AccessRequest, now: int) -> bool:
    """Whether the link a request proposes, or is about, has ended (R5)."""
    if request.kind in LINK_KINDS:
        return request.ends_at is not None and now >= request.ends_at
    link = current_link(book, request.agency, request.creator, now)
    # A relink after an end date is a new link: requests about the old one lapse.
    return link is None or link.link_id != request.link_id


def request_status(book: AccessBook, request: AccessRequest, now: int) -> RequestStatus:
    """A request's status as of ``now``.

    A pending request that can no longer be answered reads as ``expired`` (R2, R5).
    """
    if request.status != "pending":
        return request.status
    if now >= request.expires_at or lapsed(book, request, now):
        return "expired"
    return "pending"


def _access_ends(book: AccessBook) -> list[tuple[int, str, str]]:
    """``(end, agency, creator)`` of every link with access and an end date (R5)."""
    return [
        (link.ends_at, link.agency, link.creator)
        for link in book.links.values()
        if link.access is not None and link.ends_at is not None
    ]


def next_access_end(book: AccessBook, after: int) -> int | None:
    """The soonest end date later than ``after`` among the grants in force, if any."""
    return min((end for end, _, _ in _access_ends(book) if end > after), default=None)


def access_ended_between(book: AccessBook, since: int, until: int) -> list[tuple[str, str]]:
    """The ``(agency, creator)`` pairs whose access ended in ``(since, until]`` by its
    end date, soonest first (R5): each end is in exactly one such window."""
    return [
        (agency, creator)
        for end, agency, creator in sorted(_access_ends(book))
        if since < end <= until
    ]
