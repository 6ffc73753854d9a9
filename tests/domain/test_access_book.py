"""The access book's end dates, read at a time: what the deadline timer is armed for."""

from __future__ import annotations

from server.domain.access_book import (
    Access,
    AccessBook,
    Link,
    access_ended_between,
    next_access_end,
    pair_key,
)

T0 = 1_700_000_000_000


def book(*links: Link) -> AccessBook:
    return AccessBook(links={pair_key(link.agency, link.creator): link for link in links})


def link(creator: str, ends_at: int | None, *, access: bool = True, agency: str = "ag") -> Link:
    granted = Access(request_id=f"r-{creator}", scopes=["bag"], granted_at=T0) if access else None
    return Link(
        agency=agency,
        creator=creator,
        link_id=f"l-{creator}",
        linked_at=T0,
        ends_at=ends_at,
        access=granted,
    )


def test_next_end_is_the_soonest_among_grants_in_force() -> None:
    """The soonest end date after a time, among links that carry access (R5)."""
    b = book(
        link("a", T0 + 300), link("b", T0 + 100, access=False), link("c", None), link("d", T0 + 200)
    )
    assert next_access_end(b, T0) == T0 + 200  # b has no access; c never ends
    assert next_access_end(b, T0 + 200) == T0 + 300
    assert next_access_end(b, T0 + 300) is None
    assert next_access_end(AccessBook(), T0) is None


def test_each_end_falls_in_exactly_one_window() -> None:
    """Checks at successive times report each pair whose access ended once, soonest first."""
    # R5 (access ends with the link's end date) R6 (every session is told once)
    b = book(
        link("a", T0 + 300), link("b", T0 + 100), link("c", T0 + 100, access=False), link("d", None)
    )
    assert access_ended_between(b, T0, T0 + 99) == []
    assert access_ended_between(b, T0 + 99, T0 + 100) == [("ag", "b")]
    assert access_ended_between(b, T0 + 100, T0 + 299) == []
    assert access_ended_between(b, T0, T0 + 300) == [("ag", "b"), ("ag", "a")]
