"""Command ids: make_command and with_command_id."""

from __future__ import annotations

from client import make_command, with_command_id
from protocol.commands import BagPin
from tests.client.fakehub import ROOM


def test_command_helpers_set_ids() -> None:
    """make_command and with_command_id give fresh ids and keep given ones."""
    pin = make_command(BagPin, room=ROOM, product_id="p1")
    other = make_command(BagPin, room=ROOM, product_id="p1")
    assert pin.command_id != other.command_id
    assert make_command(BagPin, command_id="mine", room=ROOM, product_id="p1").command_id == "mine"
    assert with_command_id(pin) is pin
    filled = with_command_id(BagPin(command_id="", room=ROOM, product_id="p1"))
    assert len(filled.command_id) == 32
    assert int(filled.command_id, 16) >= 0
