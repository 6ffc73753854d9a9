"""A real server on a free loopback port (uvicorn in this event loop) and raw clients."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any

import anyio
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.codec import Codec
from protocol.messages import Event, Hello, Message, ServerMessage, Welcome
from server.auth import mint
from server.config import Settings, load_settings
from server.runtime import Runtime
from server.serve import LivepilotServer, build_server

TIMEOUT = 10.0


class Clock:
    """A wall clock tests can push forward."""

    def __init__(self) -> None:
        from server.runtime import wall_clock

        self._base = wall_clock
        self.offset = 0

    def __call__(self) -> int:
        return self._base() + self.offset


@dataclass
class Server:
    """A running server: its URL, settings, clock and runtime."""

    url: str
    settings: Settings
    clock: Clock
    app: Any

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def token(
        self,
        *,
        creator: str | None = None,
        agency: str | None = None,
        staff: str | None = None,
        ttl_s: int = 3600,
    ) -> str:
        return mint(
            self.settings,
            creator=creator,
            agency=agency,
            staff=staff,
            ttl_s=ttl_s,
            now=self.clock(),
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_server(settings: Settings, clock: Clock) -> tuple[LivepilotServer, Any]:
    server = build_server(settings, clock=clock)
    return server, server.app


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {"port": free_port(), "data_path": str(tmp_path / "db.sqlite")}
        base.update(overrides)
        return load_settings({}, log_level="WARNING", **base)

    return make


@pytest.fixture
async def server(make_settings: Callable[..., Settings]) -> AsyncIterator[Server]:
    """A server with default settings on a free port; stops by itself."""
    async with run_server(make_settings()) as srv:
        yield srv


from contextlib import asynccontextmanager  # noqa: E402


@asynccontextmanager
async def run_server(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Server]:
    clock = clock or Clock()
    uv, app = await start_server(settings, clock)
    # A plain task, not a task group: pytest-asyncio may finalize the fixture in
    # another task than the one that set it up.
    task = asyncio.ensure_future(uv.serve())
    try:
        with anyio.fail_after(TIMEOUT):
            await uv.ready.wait()
        yield Server(
            url=f"ws://127.0.0.1:{settings.port}/ws", settings=settings, clock=clock, app=app
        )
    finally:
        uv.should_exit = True
        with anyio.fail_after(TIMEOUT):
            await task


class Raw:
    """A raw websockets client speaking protocol v1 by hand."""

    def __init__(self, ws: ClientConnection, codec: Codec) -> None:
        self.ws = ws
        self.codec = codec
        self.events: list[Event] = []
        """Every room event received so far, in arrival order."""

    async def send(self, message: Message) -> None:
        data = self.codec.encode(message)
        await self.ws.send(data if self.codec.binary else data.decode())

    async def recv(self) -> ServerMessage:
        with anyio.fail_after(TIMEOUT):
            frame = await self.ws.recv()
        message = self.codec.decode_server(frame)
        if isinstance(message, Event):
            self.events.append(message)
        return message

    async def events_until(self, seq: int) -> list[Event]:
        """Every room event received up to ``seq`` (waiting for the rest)."""
        while not self.events or self.events[-1].seq < seq:
            await self.recv()
        return [e for e in self.events if e.seq <= seq]

    async def until_closed(self) -> tuple[list[ServerMessage], int | None]:
        """Every message until the server closes; and the close code it sent."""
        messages: list[ServerMessage] = []
        try:
            while True:
                messages.append(await self.recv())
        except ConnectionClosed as closed:
            return messages, closed.rcvd.code if closed.rcvd is not None else None

    async def expect(self, kind: type[Message] | UnionType) -> Any:
        """Receive until a message of ``kind`` arrives (others are skipped)."""
        while True:
            message = await self.recv()
            if isinstance(message, kind):
                return message


@asynccontextmanager
async def raw_client(srv: Server, token: str | None, fmt: str = "json") -> AsyncIterator[Raw]:
    codec = Codec("json" if fmt == "json" else "msgpack")
    async with connect(
        srv.url,
        subprotocols=[codec.subprotocol],  # type: ignore[list-item]
        open_timeout=TIMEOUT,
        max_size=None,
    ) as ws:
        raw = Raw(ws, codec)
        if token is not None:
            await raw.send(Hello(token=token))
            welcome = await raw.recv()
            assert isinstance(welcome, Welcome), welcome
        yield raw


_ = msgspec
