"""What an idempotency key remembers of its command, and when a resend matches it.

A ``command_id`` names one command by one actor (H1, decision 0016). The room log
keeps, with each key, a digest of who sent the command and what it says. A
command arriving with a known id is the first one again - acked with the first
ack - only if its digest is the same; otherwise the id was reused (by another
actor, or for another command) and the command is refused
``COMMAND_ID_REUSED``, never falsely acked.

The digest is 128-bit BLAKE2b over msgspec's MessagePack encoding, with
unordered collections sorted (``order="deterministic"``), of the actor's role,
id and agency and of the decoded command minus its ``expected_version``: what
the client sent, independent of the wire format and of field order in the
frame. ``expected_version`` is left out because it is a precondition on the
room, not part of what the command does (H5): a client may refresh it when it
resends after a reconnect, and the first application was checked against its own.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from protocol.commands import Command
from protocol.model import Actor
from server.log.base import CommandRecord

__all__ = ["DIGEST_BYTES", "command_digest", "same_command"]

DIGEST_BYTES: Final = 16
"""128 bits: a forged collision would take ~2**64 attempts against one key."""

_encode = msgspec.msgpack.Encoder(order="deterministic").encode
_blake2b = hashlib.blake2b


def command_digest(actor: Actor, command: Command) -> bytes:
    """The digest kept with ``command``'s idempotency key: who sent it and what it
    says, minus ``expected_version`` (computed once per command, by the hub)."""
    if command.expected_version is not None:
        command = msgspec.structs.replace(command, expected_version=None)
    data = _encode((actor.role, actor.id, actor.agency, command))
    return _blake2b(data, digest_size=DIGEST_BYTES).digest()


def same_command(
    digest: bytes | None,
    record: CommandRecord | None,
    stored_digest: bytes | None,
    stored_by: Actor | None,
    stored_action: str | None,
) -> bool:
    """Whether a command (``digest``, ``record``) arriving with a stored key's id is
    that key's command again.

    A caller that gives no ``digest`` asks for no check: the id alone matches, as
    before digests existed (the hub always gives one). Otherwise a key stored with
    a digest matches only the same digest. A key stored without one (before schema
    5, or by a caller giving none) is compared on what it has: its recorded actor
    and action when it has a record; a key with neither (a feed item or a command
    stored before schema 4, both trimmed with their events) matches on the id.
    """
    if digest is None:
        return True
    if stored_digest is not None:
        return digest == stored_digest
    if stored_by is None:
        return True
    return record is not None and record.by == stored_by and record.action == stored_action
