"""WebSocket frames built once, outside any connection: the hub's fan-out frames
each event once per format here, and every member's connection writes those
bytes as they are (decision 0023). Pure: no I/O, no connection state."""

from __future__ import annotations

import struct
from typing import Final

from websockets.frames import Opcode

__all__ = ["frame_header", "framed"]

_FIN: Final = 0x80


def frame_header(opcode: Opcode, length: int) -> bytes:
    """The header of one unmasked, unfragmented, uncompressed frame (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((_FIN | opcode, length))
    if length < 1 << 16:
        return struct.pack("!BBH", _FIN | opcode, 126, length)
    return struct.pack("!BBQ", _FIN | opcode, 127, length)


def framed(payload: bytes, binary: bool) -> bytes:
    """``payload`` as one whole frame on the wire (binary, or text), uncompressed: what
    the hub's fan-out builds once per event and format for every member."""
    return frame_header(Opcode.BINARY if binary else Opcode.TEXT, len(payload)) + payload
