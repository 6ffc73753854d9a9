"""What every system under test provides, and how its server process is run.

A :class:`System` is one server implementation (livepilot or a baseline) plus
the client side of its protocol: how a creator client and a console connect and
join a room, how a feed item or a staff command is sent, and what an incoming
frame is (:meth:`System.classify`). Scenarios are written once against this
interface, so every system gets the same clients, rates and message sizes.

Timed messages carry a stamp (:func:`loadtest.peer.stamp`): ``F`` feed items,
``C`` relayed staff commands, ``D`` durable commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from loadtest.env import Pinning
from loadtest.peer import Peer

__all__ = [
    "ACK",
    "EVENT",
    "OTHER",
    "Running",
    "Sizes",
    "System",
    "free_port",
    "launch",
]

OTHER: Final = 0
EVENT: Final = 1
"""A room delivery: a feed item or a staff command broadcast to the room."""
ACK: Final = 2
"""The confirmation of a command to the console that sent it."""

READY_TIMEOUT_S: Final = 60.0
SOURCE: Final = Path(__file__).resolve().parents[2]
"""This checkout: where every server runs from unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Sizes:
    """Bytes on the wire, the same for every system of a run (livepilot's sizes)."""

    feed: int
    """A feed item as delivered to consoles."""
    command: int
    """A staff command as delivered to the room."""


@dataclass(slots=True)
class Running:
    """A server process of one system."""

    system: System
    url: str
    http: str
    pid: int
    workdir: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
    secret: str = ""
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list, repr=False)
    """Called when the run ends (the system's clients of this server)."""


class System(ABC):
    """A server implementation and the client side of its protocol."""

    name: str = ""
    binary: bool = True
    source: Path = SOURCE
    """The checkout the server runs from (``python -m`` imports from its cwd)."""

    @abstractmethod
    def command_line(self, port: int, workdir: Path, durable: bool) -> list[str]:
        """The server command (without pinning) listening on 127.0.0.1:``port``."""

    def environment(self, port: int, workdir: Path, durable: bool) -> dict[str, str]:
        return {}

    def ready_path(self) -> str | None:
        """An HTTP path answering 200 once the server is ready; None: a TCP connect."""
        return None

    def sizes(self, payload: int) -> Sizes:
        """Wire sizes for a feed item whose text is ``payload`` bytes (livepilot's)."""
        return Sizes(feed=payload, command=payload)

    @abstractmethod
    async def prepare(self, run: Running, rooms: Sequence[str], agency: str) -> None:
        """Give ``agency`` access to every room (livepilot's grants; nothing for baselines)."""

    @abstractmethod
    async def creator(self, run: Running, room: str, sizes: Sizes) -> Peer:
        """A connected creator client in ``room``, the room ready (live, stocked)."""

    @abstractmethod
    async def console(self, run: Running, room: str, agency: str, staff: str, sizes: Sizes) -> Peer:
        """A connected console of ``staff`` (of ``agency``) joined to ``room``."""

    @abstractmethod
    def feed(self, peer: Peer, room: str, n: int, sizes: Sizes) -> None:
        """The creator client sends one feed item, stamped now."""

    @abstractmethod
    def command(self, peer: Peer, room: str, n: int, sizes: Sizes, durable: bool) -> None:
        """A console sends one staff command, stamped now (``D`` when durable)."""

    @abstractmethod
    def on_creator_frame(self, peer: Peer, data: bytes) -> None:
        """The creator client's reaction to a frame (baselines ack commands back)."""

    @abstractmethod
    def classify(self, data: bytes) -> int:
        """:data:`EVENT`, :data:`ACK` or :data:`OTHER`."""

    @abstractmethod
    async def revoke(self, run: Running, agency: str, room: str) -> None:
        """End ``agency``'s access to ``room``; its consoles there are to be cut off (closed,
        or told so: see each system)."""

    async def regrant(self, run: Running, rooms: Sequence[str], agency: str) -> None:
        """Give access back after a revoke (for another round)."""
        await self.prepare(run, rooms, agency)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _ready(host: str, port: int, path: str | None, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            if path is None:
                return
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            status = await reader.readline()
            if b" 200 " in status:
                return
        finally:
            writer.close()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"server on port {port} not ready after {READY_TIMEOUT_S} s")


def _spawn(
    cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    return proc, log


@contextlib.asynccontextmanager
async def launch(
    system: System,
    pin: Pinning,
    workdir: Path,
    *,
    durable: bool = False,
    profile: Path | None = None,
) -> AsyncIterator[Running]:
    """Run ``system``'s server (pinned) until the block ends; SIGTERM, then kill.

    With ``profile``, py-spy samples the server into that file while it runs."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **system.environment(port, workdir, durable)}
    cmd = [*pin.server_prefix, *system.command_line(port, workdir, durable)]
    proc, log = _spawn(cmd, env, workdir / f"{system.name}-server.log", system.source)
    spy: subprocess.Popen[bytes] | None = None
    try:
        await _ready("127.0.0.1", port, system.ready_path(), proc)
        if profile is not None:
            from loadtest.profile import attach

            spy = attach(proc.pid, profile, pin.loadgen_core)
        run = Running(
            system=system,
            url=f"ws://127.0.0.1:{port}",
            http=f"http://127.0.0.1:{port}",
            pid=proc.pid,
            workdir=workdir,
            proc=proc,
            secret=env.get("LIVEPILOT_JWT_SECRET", ""),
        )
        try:
            yield run
        finally:
            for close in run.cleanup:
                await close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        log.close()
        if spy is not None:
            try:
                await asyncio.to_thread(spy.wait, 20)
            except subprocess.TimeoutExpired:
                spy.kill()


PYTHON: Final = sys.executable
