"""The client side of the two baselines (servers in :mod:`loadtest.baselines`).

Frames are padded to livepilot's wire sizes (:class:`~loadtest.systems.base.Sizes`),
so every system moves the same bytes per delivery. Both baselines have the
creator client answer each staff command it receives (``A``/``a``), which the
server relays to the console: the console's ack has gone through the creator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from loadtest.peer import Peer, connect, stamp
from loadtest.systems.base import ACK, EVENT, OTHER, PYTHON, Running, Sizes, System

__all__ = ["RawSystem", "SioSystem"]

STAMP_LEN: Final = 22


def _pad(head: bytes, size: int) -> bytes:
    return head + b"x" * max(0, size - len(head))


class RawSystem(System):
    """A raw ``websockets`` broadcast relay."""

    name = "raw"
    binary = True

    def __init__(self) -> None:
        self._control: dict[str, Peer] = {}

    def command_line(self, port: int, workdir: Path, durable: bool) -> list[str]:
        cmd = [PYTHON, "-m", "loadtest.baselines.raw_server", "--port", str(port)]
        if durable:
            path = workdir / "raw.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            cmd += ["--durable", str(path)]
        return cmd

    async def _member(
        self, run: Running, room: str, role: str, name: str, agency: str = ""
    ) -> Peer:
        peer = await connect(f"{run.url}/", binary=True, label=name)
        body = json.dumps({"room": room, "role": role, "name": name, "agency": agency})
        peer.send(b"J" + body.encode())
        await peer.expect(lambda d: d == b"K")
        return peer

    async def creator(self, run: Running, room: str, sizes: Sizes) -> Peer:
        return await self._member(run, room, "creator", f"creator-{room}")

    async def console(self, run: Running, room: str, agency: str, staff: str, sizes: Sizes) -> Peer:
        return await self._member(run, room, "staff", staff, agency)

    def feed(self, peer: Peer, room: str, n: int, sizes: Sizes) -> None:
        peer.send(_pad(b"F" + stamp(b"F"), sizes.feed))

    def command(self, peer: Peer, room: str, n: int, sizes: Sizes, durable: bool) -> None:
        head = (b"D" if durable else b"C") + peer.label.encode() + b"|"
        peer.send(_pad(head + stamp(b"D" if durable else b"C") + b"-%d" % n, sizes.command))

    def on_creator_frame(self, peer: Peer, data: bytes) -> None:
        if data[:1] == b"C":
            end = data.find(b"@@") + STAMP_LEN
            peer.send(b"A" + data[1:end])

    def classify(self, data: bytes) -> int:
        kind = data[:1]
        if kind in (b"F", b"C", b"D"):
            return EVENT
        if kind == b"A":
            return ACK
        return OTHER

    async def revoke(self, run: Running, agency: str, room: str) -> None:
        control = self._control.get(run.url)
        if control is None or not control.open:
            control = await self._member(run, "control", "control", f"control-{id(run)}")
            self._control[run.url] = control
        control.send(b"R" + json.dumps({"agency": agency, "room": room}).encode())
        await control.expect(lambda d: d.startswith(b"r"))

    async def prepare(self, run: Running, rooms: Sequence[str], agency: str) -> None:
        """Nothing to grant: the relay has no access control."""


class SioSystem(System):
    """python-socketio ``AsyncServer`` rooms (Engine.IO 4 / Socket.IO 5 over WebSocket)."""

    name = "sio"
    binary = False

    def __init__(self) -> None:
        self._control: dict[str, Peer] = {}

    def command_line(self, port: int, workdir: Path, durable: bool) -> list[str]:
        cmd = [PYTHON, "-m", "loadtest.baselines.sio_server", "--port", str(port)]
        if durable:
            path = workdir / "sio.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            cmd += ["--durable", str(path)]
        return cmd

    async def prepare(self, run: Running, rooms: Sequence[str], agency: str) -> None:
        """Nothing to grant: the server has no access control."""

    @staticmethod
    def _ping(peer: Peer, data: bytes) -> bool:
        if data == b"2":  # Engine.IO ping: answer pong
            peer.send(b"3")
            return True
        if data.startswith(b"41"):  # Socket.IO disconnect: the session is over
            peer.ended(4403)
            return True
        return False

    async def _member(
        self, run: Running, room: str, role: str, name: str, agency: str = ""
    ) -> Peer:
        url = f"{run.url}/socket.io/?EIO=4&transport=websocket"
        peer = await connect(url, binary=False, label=name)
        peer.hook = self._ping
        await peer.expect(lambda d: d.startswith(b"0{"))
        peer.send(b"40")
        await peer.expect(lambda d: d.startswith(b"40"))
        body = json.dumps(["join", {"room": room, "role": role, "name": name, "agency": agency}])
        peer.send(b"42" + body.encode())
        await peer.expect(lambda d: d.startswith(b'42["joined"'))
        return peer

    async def creator(self, run: Running, room: str, sizes: Sizes) -> Peer:
        return await self._member(run, room, "creator", f"creator-{room}")

    async def console(self, run: Running, room: str, agency: str, staff: str, sizes: Sizes) -> Peer:
        return await self._member(run, room, "staff", staff, agency)

    def feed(self, peer: Peer, room: str, n: int, sizes: Sizes) -> None:
        peer.send(_pad(b'42["f","' + stamp(b"F"), sizes.feed - 2) + b'"]')

    def command(self, peer: Peer, room: str, n: int, sizes: Sizes, durable: bool) -> None:
        letter = b"d" if durable else b"c"
        head = b'42["' + letter + b'","' + peer.label.encode() + b"|"
        body = head + stamp(letter.upper()) + b"-%d" % n
        peer.send(_pad(body, sizes.command - 2) + b'"]')

    def on_creator_frame(self, peer: Peer, data: bytes) -> None:
        if data.startswith(b'42["c","'):
            end = data.find(b"@@") + STAMP_LEN
            peer.send(b'42["a","' + data[8:end] + b'"]')

    def classify(self, data: bytes) -> int:
        if data.startswith(b'42["'):
            kind = data[4:5]
            if kind in (b"f", b"c", b"d"):
                return EVENT
            if kind == b"a":
                return ACK
        return OTHER

    async def revoke(self, run: Running, agency: str, room: str) -> None:
        control = self._control.get(run.url)
        if control is None or not control.open:
            control = await self._member(run, "control", "control", f"control-{id(run)}")
            self._control[run.url] = control
        control.send(b"42" + json.dumps(["r", {"agency": agency, "room": room}]).encode())
        await control.expect(lambda d: d.startswith(b'42["revoked"'))
