"""Baseline 2: python-socketio ``AsyncServer`` rooms doing livepilot's job.

    python -m loadtest.baselines.sio_server --port P [--durable FILE]

Served by uvicorn (the same ASGI server and WebSocket implementation livepilot
uses), WebSocket transport only. Events, all with one string argument:

* ``join`` ``{"room", "role", "name", "agency"}`` -> ``joined``.
* ``f``: a feed item, emitted to the room (sender included).
* ``c`` ``"<name>|..."``: a staff command, emitted to the room; the creator
  client emits ``a`` ``"<name>|<stamp>"``, which goes to the console ``name``.
* ``d``: a durable command: appended (group commit, fsync), emitted to the
  room, then ``a`` to the sender.
* ``r`` ``{"agency", "room"}``: that agency's sessions in the room get ``x`` and
  are disconnected; the sender gets ``revoked``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import socketio  # type: ignore[import-untyped]
import uvicorn

from loadtest.baselines.store import GroupCommitStore

__all__ = ["build", "main"]


def build(durable: str | None) -> tuple[Any, GroupCommitStore | None]:
    """The ASGI app and the store (to start on the server's loop)."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=[],
        ping_interval=20,
        ping_timeout=20,
        transports=["websocket"],
    )
    members: dict[str, tuple[str, str, str]] = {}  # sid -> room, name, agency
    names: dict[str, str] = {}  # name -> sid
    store = GroupCommitStore(durable) if durable else None

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, info: dict[str, str]) -> None:
        members[sid] = (info["room"], info["name"], info.get("agency", ""))
        names[info["name"]] = sid
        await sio.enter_room(sid, info["room"])
        await sio.emit("joined", "", to=sid)

    @sio.on("f")  # type: ignore[untyped-decorator]
    async def feed(sid: str, data: str) -> None:
        await sio.emit("f", data, room=members[sid][0])

    @sio.on("c")  # type: ignore[untyped-decorator]
    async def command(sid: str, data: str) -> None:
        await sio.emit("c", data, room=members[sid][0])

    @sio.on("a")  # type: ignore[untyped-decorator]
    async def ack(sid: str, data: str) -> None:
        target = names.get(data[: data.index("|")])
        if target is not None:
            await sio.emit("a", data, to=target)

    @sio.on("d")  # type: ignore[untyped-decorator]
    async def durable_command(sid: str, data: str) -> None:
        if store is None:
            return
        await store.append(data.encode())
        await sio.emit("d", data, room=members[sid][0])
        end = data.find("@@") + 22
        await sio.emit("a", data[:end], to=sid)

    @sio.on("r")  # type: ignore[untyped-decorator]
    async def revoke(sid: str, info: dict[str, str]) -> None:
        gone = [
            s
            for s, (room, _, agency) in members.items()
            if room == info["room"] and agency == info["agency"]
        ]
        for s in gone:
            await sio.emit("x", "", to=s)
        await asyncio.gather(*(sio.disconnect(s) for s in gone))
        await sio.emit("revoked", str(len(gone)), to=sid)

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, *args: object) -> None:
        _room, name, _ = members.pop(sid, ("", "", ""))
        if names.get(name) == sid:
            del names[name]

    return socketio.ASGIApp(sio), store


async def serve_forever(port: int, durable: str | None) -> None:
    app, store = build(durable)
    if store is not None:
        store.start()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    await uvicorn.Server(config).serve()
    if store is not None:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--durable", default=None, help="SQLite file for d commands")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the loadtest extra
        asyncio.run(serve_forever(args.port, args.durable))
    else:
        uvloop.run(serve_forever(args.port, args.durable))


if __name__ == "__main__":
    main()
