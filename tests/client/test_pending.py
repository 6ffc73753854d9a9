"""Pending commands and pings: one entry per command_id, answered once, sent once a connection."""

from __future__ import annotations

import pytest

from client import ClientClosed, CommandRefused, make_command
from client.pending import PendingCommands, Pings
from protocol.commands import BagPin
from protocol.errors import Code
from protocol.messages import Ack, Pong
from tests.client.fakehub import ROOM


async def test_same_command_id_shares_one_entry() -> None:
    """Tracking the same command twice gives one entry with two waiters; another command
    under an id in flight is refused."""
    pending = PendingCommands()
    pin = make_command(BagPin, room=ROOM, product_id="p1")
    first = pending.track(pin)
    assert pending.track(pin) is first
    assert first.waiters == 2
    with pytest.raises(ValueError, match="in flight"):
        pending.track(make_command(BagPin, command_id=pin.command_id, room=ROOM, product_id="p2"))
    pending.release(first)
    assert len(pending) == 1
    pending.release(first)
    assert len(pending) == 0  # no waiter left and no answer: forgotten
    assert first.future.cancelled()


async def test_claim_once_per_connection_until_answered() -> None:
    """A command is sent at most once per connection, and not at all once answered (H1)."""
    pending = PendingCommands()
    entry = pending.track(make_command(BagPin, room=ROOM, product_id="p1"))
    assert entry.claim(1)
    assert not entry.claim(1)
    assert entry.claim(2)
    pending.settle(entry.command.command_id, Ack(command_id=entry.command.command_id, seq=1))
    assert not entry.claim(3)


async def test_settle_answers_once() -> None:
    """The first answer settles a command; a duplicate answer (after a resend) is ignored."""
    pending = PendingCommands()
    entry = pending.track(make_command(BagPin, room=ROOM, product_id="p1"))
    command_id = entry.command.command_id
    pending.settle(command_id, CommandRefused(command_id, Code.NOT_FOUND))
    pending.settle(command_id, Ack(command_id=command_id, seq=1))
    assert isinstance(entry.future.exception(), CommandRefused)


async def test_fail_fails_commands_and_pings() -> None:
    """When the client ends, every command and ping still waiting fails with the reason."""
    pending, pings = PendingCommands(), Pings()
    entry = pending.track(make_command(BagPin, room=ROOM, product_id="p1"))
    nonce, pong = pings.add()
    reason = ClientClosed(1006, "lost")
    pending.fail(reason)
    pings.fail(reason)
    pings.answer(Pong(nonce=nonce))  # too late: ignored
    assert entry.future.exception() is reason
    assert pong.exception() is reason
    assert len(pending) == 0
