"""Room commands on the client: each carries a ``command_id`` so a resend is safe.

The server applies a command at most once per ``command_id`` (H1), which is
what lets the client resend unanswered commands after a reconnect.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import msgspec

from protocol.commands import Command

__all__ = ["make_command", "new_command_id", "with_command_id"]

C = TypeVar("C", bound=Command)


def new_command_id() -> str:
    """A fresh command id: a uuid4 in hex."""
    return uuid.uuid4().hex


def make_command(kind: type[C], /, **fields: Any) -> C:
    """Build a room command, with a fresh ``command_id`` unless one is given.

    ``make_command(BagPin, room="r1", product_id="p1")``.
    """
    if not fields.get("command_id"):
        fields["command_id"] = new_command_id()
    return kind(**fields)


def with_command_id(command: C) -> C:
    """``command`` itself if it has a ``command_id``, else a copy with a fresh one."""
    if command.command_id:
        return command
    return msgspec.structs.replace(command, command_id=new_command_id())
