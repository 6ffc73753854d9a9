"""livepilot under test: ``livepilot serve`` in its own process, the v1 protocol on picows.

The server runs as shipped (embedded SQLite store, ``synchronous=FULL``) with two
settings changed for the benchmark, both recorded in the results: the
per-connection rate limit is lifted (the feed runs far above 50 messages/s) and
the idle timeout is an hour (idle connections send nothing). Access is granted
through the HTTP API (``POST /api/requests`` then ``/accept``) and revoked with
``POST /api/unlink``, as an agency and a creator would. An unlink takes the
console out of the room with ``access_changed`` and leaves its socket open
(decision 0015): a console counts as cut off, and closes itself, when that
message arrives.

Feed items are ``FeedComment`` commands whose text carries the stamp; staff
commands are ``Mute`` (always accepted, one event) whose command id carries it,
so the console's ``Ack`` and the room's ``Event`` both do.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import httpx

from loadtest.peer import Peer, connect, stamp
from loadtest.systems.base import ACK, EVENT, OTHER, PYTHON, Running, Sizes, System
from protocol import messages as m
from protocol.codec import Codec
from protocol.model import Actor, Viewer
from server.auth import mint
from server.config import Settings
from server.domain.room import new_room

__all__ = ["BENCH_SETTINGS", "LivepilotSystem"]

BENCH_SETTINGS: Final = {
    "LIVEPILOT_RATE_PER_S": "1000000",
    "LIVEPILOT_RATE_BURST": "1000000",
    "LIVEPILOT_ACTOR_RATE_PER_S": "1000000",
    "LIVEPILOT_ACTOR_RATE_BURST": "1000000",
    "LIVEPILOT_MAX_CONNECTIONS_PER_ACTOR": "1000000",
    "LIVEPILOT_API_RATE_PER_S": "1000000",  # set-up links every room with one staff token
    "LIVEPILOT_API_RATE_BURST": "1000000",
    "LIVEPILOT_IDLE_TIMEOUT_S": "3600",
    "LIVEPILOT_LOG_LEVEL": "WARNING",
}
"""Settings changed from the defaults for every benchmark run."""
VIEWER: Final = Viewer(unique_id="v1", nickname="viewer")
PRODUCTS: Final = 2


def _tag_prefix(codec: Codec, message: m.Message) -> bytes:
    """The encoded bytes up to and including the message's ``type`` tag."""
    data = codec.encode(message)
    tag = str(type(message).__struct_config__.tag).encode()
    return data[: data.index(tag) + len(tag)]


class LivepilotSystem(System):
    """livepilot's server and protocol (MessagePack by default)."""

    name = "livepilot"
    payload = 150
    """The feed item's text length in bytes (the scenario sets it)."""

    def __init__(self, fmt: str = "msgpack", data: str = "sqlite") -> None:
        self.codec = Codec("json" if fmt == "json" else "msgpack")
        self.binary = self.codec.binary
        self.data = data
        self.secret = secrets.token_hex(24)
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.settings = Settings(jwt_secret=self.secret)
        by = Actor(role="creator", id="r")
        self._event = _tag_prefix(
            self.codec,
            m.Event(room="r", seq=1, at=0, actor="r", by=by, body=m.LiveStarted(live_id="x")),
        )
        self._ack = _tag_prefix(self.codec, m.Ack(command_id="x", seq=1))
        self._welcome = _tag_prefix(
            self.codec,
            m.Welcome(
                session_id="x",
                actor=by,
                limits=m.Limits(max_message_bytes=1, rate_per_s=1, burst=1, heartbeat_s=1),
            ),
        )
        self._snapshot = _tag_prefix(
            self.codec, m.Snapshot(room="r", seq=0, state=new_room("r", "r"))
        )
        self._error = _tag_prefix(self.codec, m.Error(code=1))
        self._access_changed = _tag_prefix(
            self.codec, m.AccessChanged(creator="r", agency="a", status="revoked")
        )

    # --- server --------------------------------------------------------------------

    def command_line(self, port: int, workdir: Path, durable: bool) -> list[str]:
        return [PYTHON, "-m", "server.cli", "serve"]

    def environment(self, port: int, workdir: Path, durable: bool) -> dict[str, str]:
        workdir.mkdir(parents=True, exist_ok=True)
        path = ":memory:" if self.data == "memory" else str(workdir / "livepilot.db")
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
        return {
            **BENCH_SETTINGS,
            "LIVEPILOT_HOST": "127.0.0.1",
            "LIVEPILOT_PORT": str(port),
            "LIVEPILOT_DATA_PATH": path,
            "LIVEPILOT_JWT_SECRET": self.secret,
        }

    def ready_path(self) -> str | None:
        return "/readyz"

    def sizes(self, payload: int) -> Sizes:
        self.payload = payload
        by = Actor(role="creator", id="room-0")
        feed = m.Event(
            room="room-0",
            seq=10**4,
            at=time.time_ns() // 10**6,
            actor="room-0",
            by=by,
            command_id="f10000",
            body=m.CommentPosted(comment_id="c10000", user=VIEWER, content="x" * payload),
        )
        staff = Actor(role="staff", id="s-0", agency="agency")
        command = m.Event(
            room="room-0",
            seq=10**4,
            at=time.time_ns() // 10**6,
            actor="room-0",
            by=staff,
            command_id=stamp(b"C").decode() + "-100",
            body=m.UserMuted(user_id="u-s-0", until=time.time_ns() // 10**6),
        )
        return Sizes(feed=len(self.codec.encode(feed)), command=len(self.codec.encode(command)))

    def token(
        self, *, creator: str | None = None, agency: str | None = None, staff: str | None = None
    ) -> str:
        return str(
            mint(
                self.settings,
                creator=creator,
                agency=agency,
                staff=staff,
                ttl_s=6 * 3600,
                now=time.time_ns() // 10**6,
            )
        )

    def _http(self, run: Running) -> httpx.AsyncClient:
        """One HTTP client per server, kept open: making one costs tens of ms."""
        client = self._clients.get(run.http)
        if client is None:
            client = httpx.AsyncClient(base_url=run.http, timeout=30)
            self._clients[run.http] = client
            run.cleanup.append(client.aclose)
        return client

    async def _post(self, run: Running, path: str, token: str, body: object) -> object:
        http = self._http(run)
        r = await http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
        return r.json()

    async def prepare(self, run: Running, rooms: Sequence[str], agency: str) -> None:
        staff = self.token(agency=agency, staff="setup")
        for room in rooms:
            created = await self._post(
                run,
                "/api/requests",
                staff,
                {"type": "request_link", "creator": room, "with_access": True},
            )
            assert isinstance(created, dict)
            request_id = created["request"]["request_id"]
            await self._post(
                run, f"/api/requests/{request_id}/accept", self.token(creator=room), None
            )

    async def revoke(self, run: Running, agency: str, room: str) -> None:
        await self._post(run, "/api/unlink", self.token(creator=room), {"agency": agency})

    # --- clients -------------------------------------------------------------------

    async def _session(self, run: Running, token: str, label: str) -> Peer:
        sub = self.codec.subprotocol
        peer = await connect(
            f"{run.url}/ws",
            binary=self.binary,
            label=label,
            headers={"Sec-WebSocket-Protocol": sub},
        )
        peer.send(self.codec.encode(m.Hello(token=token, client="loadtest")))
        await peer.expect(lambda d: d.startswith(self._welcome))
        return peer

    async def _join(self, peer: Peer, room: str) -> m.Snapshot:
        data = await peer.expect(lambda d: d.startswith((self._snapshot, self._error)))
        message = self.codec.decode_server(data)
        if not isinstance(message, m.Snapshot):
            raise RuntimeError(f"{peer.label}: join {room} refused: {message}")
        return message

    async def _call(self, peer: Peer, command: m.Command) -> None:
        peer.send(self.codec.encode(command))
        cid = command.command_id.encode()
        data = await peer.expect(lambda d: cid in d and not d.startswith(self._event))
        if not data.startswith(self._ack):
            raise RuntimeError(f"{peer.label}: {command} refused: {self.codec.decode_server(data)}")

    async def creator(self, run: Running, room: str, sizes: Sizes) -> Peer:
        peer = await self._session(run, self.token(creator=room), f"creator {room}")
        joined = self._join(peer, room)
        peer.send(self.codec.encode(m.Join(room=room)))
        snapshot = await joined
        if snapshot.state.status != "live":
            await self._call(peer, m.StartLive(command_id=f"start-{time.time_ns()}", room=room))
        return peer

    async def console(self, run: Running, room: str, agency: str, staff: str, sizes: Sizes) -> Peer:
        peer = await self._session(run, self.token(agency=agency, staff=staff), staff)
        joined = self._join(peer, room)
        peer.send(self.codec.encode(m.Join(room=room)))
        await joined
        peer.hook = self._cut_off
        return peer

    def _cut_off(self, peer: Peer, data: bytes) -> bool:
        """``access_changed``: the console is out of the room (the revoke scenario's
        end point); it closes itself, as the baselines' servers close theirs."""
        if not data.startswith(self._access_changed):
            return False
        peer.ended(4501)
        return True

    def feed(self, peer: Peer, room: str, n: int, sizes: Sizes) -> None:
        # The text alone is sized: the envelope around it is the protocol's own.
        text = stamp(b"F").decode()
        text += "x" * max(0, self.payload - len(text))
        peer.send(
            self.codec.encode(
                m.FeedComment(
                    command_id=f"f{n}", room=room, comment_id=f"c{n}", user=VIEWER, content=text
                )
            )
        )

    def command(self, peer: Peer, room: str, n: int, sizes: Sizes, durable: bool) -> None:
        cid = stamp(b"D" if durable else b"C").decode() + f"-{n}"
        peer.send(self.codec.encode(m.Mute(command_id=cid, room=room, user_id=f"u-{peer.label}")))

    def on_creator_frame(self, peer: Peer, data: bytes) -> None:
        """Nothing: the hub acks staff commands itself."""

    def classify(self, data: bytes) -> int:
        if data.startswith(self._event):
            return EVENT
        if data.startswith(self._ack):
            return ACK
        return OTHER
