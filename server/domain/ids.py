"""Ids the server makes out of other ids: unique, and within the protocol's ``Id``.

A made id must not be cut to fit: ``f"n-{room}-{seq}"[:128]`` lost the seq for a
room id of 124 characters or more, so every notification of such a room had the
same id and its inbox kept one. Here an id that another id of any valid length
goes into carries a fixed-length digest of it instead, so the made id's length
is bounded by construction: one bound (``Id``'s 128) for each quantity.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["DIGEST_CHARS", "access_notification_id", "digest", "room_notification_id"]

DIGEST_CHARS: Final = 24
"""Hex characters of :func:`digest` (96 bits: no collision among real ids)."""


def digest(text: str) -> str:
    """A fixed-length stand-in for an id of any length."""
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_CHARS // 2).hexdigest()


def room_notification_id(room: str, seq: int) -> str:
    """The id of the notification a room's event number ``seq`` carries (R14, R15).

    Unique per room and seq - one event, one notification - for every valid room
    id, and at most 46 characters (``n-``, the digest, ``-``, a 19-digit seq).
    """
    return f"n-{digest(room)}-{seq}"


def access_notification_id(at: int, kind: str, agency: str) -> str:
    """The id of the notification an access event of ``kind`` carries (R14):
    at most 7 + 19 + 1 + len(kind) + 1 + 24 characters, whatever the agency id."""
    return f"access-{at}-{kind}-{digest(agency)}"
