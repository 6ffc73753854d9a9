"""Caps: how much a room, or an agency, may hold at once (decision 0018).

Each cap is a value a real shop never meets; it is there so that no client,
however buggy or hostile, can grow a room's state (and so every snapshot, and
every join's answer) or a creator's inbox without end. A command that would
pass a room cap is refused with ``LIMIT_REACHED`` (308), one that would pass the
agency's pending requests with ``TOO_MANY_PENDING`` (218); both messages name
the cap. Caps are rules of the deciders, not bounds of the stored types: a cap
can be changed without making a stored state unreadable.
"""

from __future__ import annotations

from typing import Final

from protocol.errors import Code
from server.domain.refusal import Refusal

__all__ = [
    "MAX_BAG_ITEMS", "MAX_BLOCKED", "MAX_FLASH_SALES", "MAX_GIVEAWAYS", "MAX_MUTED",
    "MAX_PENDING_REQUESTS", "MAX_PLANNED", "MAX_SET_PRODUCTS", "cap_reached", "in_force",
]  # fmt: skip

MAX_BAG_ITEMS: Final = 500
"""Products in the LIVE shopping bag."""
MAX_SET_PRODUCTS: Final = 500
"""Products in one product set, campaign or the showcase: also the bound of the
list's type (``ProductIds``), so the edge refuses a longer list before a decider."""
MAX_PLANNED: Final = 200
"""LIVE events, product sets and campaigns, each, per room."""
MAX_MUTED: Final = 10_000
"""Accounts muted at once in a room (ended mutes do not count)."""
MAX_BLOCKED: Final = 10_000
"""Accounts blocked at once in a room (ended blocks do not count)."""
MAX_GIVEAWAYS: Final = 1_000
"""Giveaways per LIVE: set up and not yet deployed, or deployed during this LIVE
(those of an earlier LIVE leave the room when the next one starts)."""
MAX_FLASH_SALES: Final = 1_000
"""Flash sales per LIVE, counted as giveaways are."""
MAX_PENDING_REQUESTS: Final = 1_000
"""Requests of one agency pending at once, over all creators (each one lands in a
creator's inbox)."""


def cap_reached(what: str, cap: int) -> Refusal:
    """The refusal of a command that would pass a room cap."""
    return Refusal(Code.LIMIT_REACHED, f"at most {cap:,} {what} (a documented cap)")


def in_force(entries: dict[str, int], now: int) -> int:
    """How many mutes or blocks have not ended at ``now`` (a state may still list
    ended ones: they leave with the next event, see ``evolve``)."""
    return sum(1 for until in entries.values() if until > now)
