"""Baseline 1: a raw ``websockets`` broadcast relay, the floor of what Python can do.

    python -m loadtest.baselines.raw_server --port P [--durable FILE]

No authentication, no authorization, no ordering or durability guarantees beyond
TCP's (except ``D`` commands with ``--durable``): it does the job livepilot's hub
does with nothing around it. Binary frames, the first byte says what they are:

* ``J{json}``: join ``{"room", "role", "name", "agency"}``; answered with ``K``.
* ``F...``: a feed item, broadcast as is to the room (sender included, as
  livepilot echoes every event to the creator client).
* ``C<name>|...``: a staff command, broadcast as is to the room; the creator
  client answers ``A<name>|<stamp>``, which goes to the console ``name``.
* ``D<name>|...``: a durable command: appended (group commit, fsync), broadcast,
  then ``A`` sent back to the sender by the server.
* ``R{json}``: revoke ``{"agency", "room"}``: that agency's consoles in the room
  are sent ``X`` and closed with 4403; the sender gets ``r<count>``.

Fan-out is ``websockets.broadcast``: the frame is encoded once and written to
each connection without waiting (a connection past its write limit is skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from loadtest.baselines.store import GroupCommitStore

__all__ = ["main"]


@dataclass(slots=True)
class Member:
    room: str
    role: str
    name: str
    agency: str


class Relay:
    """Rooms of connections and the names consoles are reached by."""

    def __init__(self, store: GroupCommitStore | None) -> None:
        self.rooms: dict[str, dict[ServerConnection, Member]] = {}
        self.names: dict[bytes, ServerConnection] = {}
        self.store = store
        self.closing: set[asyncio.Task[None]] = set()

    async def handler(self, ws: ServerConnection) -> None:
        try:
            first = await ws.recv(decode=False)
        except ConnectionClosed:
            return
        if not first.startswith(b"J"):
            await ws.close(4400, "join first")
            return
        info = json.loads(first[1:])
        me = Member(info["room"], info["role"], info["name"], info.get("agency", ""))
        room = self.rooms.setdefault(me.room, {})
        room[ws] = me
        name = me.name.encode()
        self.names[name] = ws
        await ws.send(b"K")
        try:
            await self._serve(ws, room)
        except ConnectionClosed:
            pass
        finally:
            room.pop(ws, None)
            if self.names.get(name) is ws:
                del self.names[name]

    async def _serve(self, ws: ServerConnection, room: dict[ServerConnection, Member]) -> None:
        async for message in ws:
            data = message if isinstance(message, bytes) else message.encode()
            kind = data[:1]
            if kind in (b"F", b"C"):
                broadcast(room, data)
            elif kind == b"A":
                target = self.names.get(data[1 : data.index(b"|")])
                if target is not None:
                    broadcast((target,), data)
            elif kind == b"D" and self.store is not None:
                await self.store.append(data)
                broadcast(room, data)
                end = data.find(b"@@") + 22
                broadcast((ws,), b"A" + data[1:end])
            elif kind == b"R":
                info = json.loads(data[1:])
                victims = self.rooms.get(info["room"], {})
                gone = [c for c, m in victims.items() if m.agency == info["agency"]]
                broadcast(gone, b"X")
                for conn in gone:
                    task = asyncio.create_task(conn.close(4403, "access ended"))
                    self.closing.add(task)
                    task.add_done_callback(self.closing.discard)
                await ws.send(b"r%d" % len(gone))


async def serve_forever(port: int, durable: str | None) -> None:
    store = GroupCommitStore(durable) if durable else None
    if store is not None:
        store.start()
    relay = Relay(store)
    stop = asyncio.get_running_loop().create_future()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        relay.handler,
        "127.0.0.1",
        port,
        compression=None,
        open_timeout=120,
        max_size=1 << 20,
        ping_interval=20,
        ping_timeout=20,
    ):
        await stop
    if store is not None:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--durable", default=None, help="SQLite file for D commands")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the loadtest extra
        asyncio.run(serve_forever(args.port, args.durable))
    else:
        uvloop.run(serve_forever(args.port, args.durable))


if __name__ == "__main__":
    main()
