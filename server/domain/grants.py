"""What the room decider needs to know about access: a grant, and who is calling.

Kept apart from :mod:`server.domain.access` (the workflow that produces grants)
so the room decider depends on a small value, not on the whole workflow.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from protocol.model import GRANTABLE, Actor, Family

__all__ = ["AccessEnd", "Caller", "Grant"]

AccessEnd = Literal["revoked", "unlinked", "expired"]
"""Why an agency's access to a creator ended (R6, R9)."""


class Grant(Struct, frozen=True, kw_only=True):
    """LIVE Manager access of an agency to a creator (R5), possibly scoped."""

    agency: str
    creator: str
    scopes: frozenset[Family] = GRANTABLE
    granted_at: int = 0
    ends_at: int | None = None
    """The link's end date (R5); None when the link is open-ended."""

    def active(self, now: int) -> bool:
        """Whether the grant still holds at ``now`` (the link has not ended)."""
        return self.ends_at is None or now < self.ends_at

    def covers(self, family: Family) -> bool:
        """Whether the grant's scopes include a command family."""
        return family in self.scopes


class Caller(Struct, frozen=True, kw_only=True):
    """Who sends a room command: the actor, and for staff the grant looked up now.

    The hub looks the grant up for every command (not only at join), so an
    unlink or revoke takes effect on the very next command (R6).
    """

    actor: Actor
    grant: Grant | None = None
