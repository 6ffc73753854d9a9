"""A refusal: the decision not to apply a command, as a value with a code.

Deciders return it instead of raising, so the edge answers with the code and
nothing else changes (errors as values; codes from :mod:`protocol.errors`).
"""

from __future__ import annotations

from msgspec import Struct

from protocol.errors import Code

__all__ = ["NOT_FOUND", "Refusal"]


class Refusal(Struct, frozen=True):
    """Why a command was not applied; ``code`` says what the client should do."""

    code: Code
    message: str = ""


NOT_FOUND = Refusal(Code.NOT_FOUND, "no such item")
"""The refusal for a command naming an item the room does not have."""
