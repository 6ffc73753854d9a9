"""One client connection of the load generator: a picows listener.

picows parses frames in C and calls :meth:`Peer.on_ws_frame` once per frame, so
a connection costs the load generator about a microsecond per frame. Frames go
to ``peer.on_data`` (set by the scenario); during a handshake :meth:`expect`
waits for the first frame matching a predicate. ``closed_ns`` is the monotonic
time the server's close frame (or the end of the TCP connection) arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

__all__ = ["Peer", "connect", "connect_many", "gather_limited", "stamp", "unstamp"]

T = TypeVar("T")
STAMP_DIGITS = 19


def stamp(letter: bytes, now_ns: int | None = None) -> bytes:
    """``@@`` + a letter + the monotonic clock in ns: what every timed message carries.

    The load generator's processes share CLOCK_MONOTONIC, so a stamp read back
    anywhere in the load generator gives the message's age."""
    ns = time.monotonic_ns() if now_ns is None else now_ns
    return b"@@" + letter + b"%019d" % ns


def unstamp(data: bytes) -> tuple[int, int]:
    """``(letter, ns)`` of the stamp in a frame, or ``(0, 0)`` when it has none."""
    i = data.find(b"@@")
    if i < 0 or len(data) < i + 3 + STAMP_DIGITS:
        return 0, 0
    try:
        return data[i + 2], int(data[i + 3 : i + 3 + STAMP_DIGITS])
    except ValueError:
        return 0, 0


def _close_code(code: object) -> int:
    if isinstance(code, WSCloseCode):
        return int(code.value)
    return code if isinstance(code, int) else 0


class Peer(WSListener):
    """A connected client: send frames, receive them through ``on_data``."""

    def __init__(self, binary: bool) -> None:
        super().__init__()
        self.binary = binary
        self.msg_type = WSMsgType.BINARY if binary else WSMsgType.TEXT
        self.transport: WSTransport | None = None
        self.backlog: list[bytes] = []
        """Frames nobody waited for, until the scenario sets ``on_data``."""
        self.on_data: Callable[[bytes], None] = self.backlog.append
        self.hook: Callable[[Peer, bytes], bool] | None = None
        """Sees every frame first; returns True to consume it (protocol pings)."""
        self._waiters: list[tuple[Callable[[bytes], bool], asyncio.Future[bytes]]] = []
        self.closed_ns: int | None = None
        self.close_code: int | None = None
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.label = ""

    # --- picows callbacks --------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
            data: bytes = frame.get_payload_as_bytes()
            if self.hook is not None and self.hook(self, data):
                return
            if self._waiters:
                for item in self._waiters:
                    pred, fut = item
                    if not fut.done() and pred(data):
                        fut.set_result(data)
                        self._waiters.remove(item)
                        return
            self.on_data(data)
        elif kind is WSMsgType.CLOSE:
            if self.closed_ns is None:
                self.closed_ns = time.monotonic_ns()
                code: object = frame.get_close_code()
                self.close_code = _close_code(code)
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.closed_ns is None:
            self.closed_ns = time.monotonic_ns()
        if not self.gone.done():
            self.gone.set_result(None)
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(ConnectionError(f"{self.label}: closed ({self.close_code})"))
        self._waiters.clear()

    # --- use ---------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport is not None and self.closed_ns is None:
            self.transport.send(self.msg_type, data)

    async def expect(self, pred: Callable[[bytes], bool], within: float = 30.0) -> bytes:
        """The first frame matching ``pred``, from the backlog or still to come."""
        if self.closed_ns is not None:
            raise ConnectionError(f"{self.label}: closed ({self.close_code})")
        for i, data in enumerate(self.backlog):
            if pred(data):
                del self.backlog[i]
                return data
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, within)

    def ended(self, code: int) -> None:
        """The app protocol said the session is over (a Socket.IO disconnect packet)."""
        if self.closed_ns is None:
            self.closed_ns = time.monotonic_ns()
            self.close_code = code
        if self.transport is not None:
            self.transport.send_close()
            self.transport.disconnect()

    def close(self) -> None:
        if self.transport is not None and self.closed_ns is None:
            self.transport.send_close()
            self.transport.disconnect()

    @property
    def open(self) -> bool:
        return self.closed_ns is None


async def connect(
    url: str, *, binary: bool, headers: Mapping[str, str] | None = None, label: str = ""
) -> Peer:
    """Open a WebSocket connection to ``url`` (no handshake of the app protocol)."""
    _, peer = await ws_connect(
        lambda: Peer(binary),
        url,
        extra_headers=headers,
        websocket_handshake_timeout=60,
        enable_auto_pong=True,
    )
    assert isinstance(peer, Peer)
    peer.label = label
    return peer


async def gather_limited(jobs: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the jobs with at most ``limit`` at once; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def connect_many(
    jobs: Sequence[Callable[[], Awaitable[Peer]]], limit: int = 100
) -> list[Peer]:
    """Open many connections, ``limit`` handshakes at a time."""
    return await gather_limited(jobs, limit)
