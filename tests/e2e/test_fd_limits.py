"""``livepilot serve`` under a small descriptor limit (``prlimit``), flooded with slow
sockets: the node keeps answering, or refuses fast, and its stderr stays small."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process, SocketStream, TaskGroup
from websockets.exceptions import InvalidStatus

from protocol.messages import Join, Snapshot
from server.admission import LOG_INTERVAL_S
from server.auth import mint
from server.config import load_settings
from server.runtime import wall_clock
from tests.e2e.conftest import TIMEOUT, Server, free_port, raw_client

pytestmark = pytest.mark.skipif(
    shutil.which("prlimit") is None or not sys.platform.startswith("linux"),
    reason="needs Linux and util-linux prlimit",
)

SECRET = "fd-limits-test-secret-0123456789abcdef"
DEADLINE_S = 2.0
STDERR_BUDGET = 20_000
"""Bytes of stderr a flood may cost: a few log lines, never a traceback per accept."""
ASYNCIO = (
    "-c",
    "import sys; sys.modules['uvloop'] = None; from server.cli import main; "
    "sys.exit(main(sys.argv[1:]))",
)
"""Run the CLI on the asyncio loop, as the Docker image does (it has no uvloop)."""
UVLOOP = ("-m", "server.cli")


def loops() -> list[object]:
    params: list[object] = [pytest.param(ASYNCIO, id="asyncio")]
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop comes with the loadtest extra
        return params
    return [*params, pytest.param(UVLOOP, id="uvloop")]


@dataclass
class Node:
    """A ``livepilot serve`` child process and everything it wrote to stderr."""

    process: Process
    port: int
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def server(self) -> Server:
        settings = load_settings({"LIVEPILOT_JWT_SECRET": SECRET}, port=self.port)
        return Server(
            url=f"ws://127.0.0.1:{self.port}/ws",
            settings=settings,
            clock=wall_clock,  # type: ignore[arg-type]
            app=None,
        )

    def log_lines(self, msg: str) -> list[dict[str, object]]:
        lines = [
            json.loads(line) for line in self.stderr.decode().splitlines() if line.startswith("{")
        ]
        return [line for line in lines if line.get("msg") == msg]


@asynccontextmanager
async def serve(tmp: Path, nofile: str, entry: tuple[str, str], **env: str) -> AsyncIterator[Node]:
    """``livepilot serve`` under ``prlimit --nofile=nofile``; its stderr drained as it
    comes (a pipe left full would stall the server); stopped with SIGTERM."""
    port = free_port()
    environ = {
        **os.environ,
        "LIVEPILOT_JWT_SECRET": SECRET,
        "LIVEPILOT_LOG_LEVEL": "INFO",
        "LIVEPILOT_HANDSHAKE_TIMEOUT_S": str(DEADLINE_S),
        "LIVEPILOT_HELLO_TIMEOUT_S": str(DEADLINE_S),
        **env,
    }
    command = [
        "prlimit",
        f"--nofile={nofile}",
        sys.executable,
        *entry,
        "serve",
        "--port",
        str(port),
        "--data",
        str(tmp / "db.sqlite"),
    ]
    process = await anyio.open_process(command, env=environ, cwd=Path(__file__).parents[2])
    node = Node(process, port)
    listening = anyio.Event()

    async def drain() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            node.stderr += chunk
            if b"Uvicorn running on" in node.stderr:
                listening.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            with anyio.fail_after(TIMEOUT):
                await listening.wait()
            yield node
            process.terminate()
            with anyio.fail_after(TIMEOUT):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.fail_after(TIMEOUT):
                await process.wait()


async def slow_sockets(port: int, count: int, tg: TaskGroup) -> list[SocketStream]:
    """``count`` connections that send a request line and then one header byte every
    0.2 s, never finishing (those the kernel refuses are left out)."""
    socks: list[SocketStream] = []
    for _ in range(count):
        try:
            sock = await anyio.connect_tcp("127.0.0.1", port)
            await sock.send(b"GET /healthz HTTP/1.1\r\n")
        except OSError:
            continue
        socks.append(sock)

    async def trickle() -> None:
        while True:
            await anyio.sleep(0.2)
            for sock in socks:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    await sock.send(b"X")

    tg.start_soon(trickle)
    return socks


async def until_closed(sock: SocketStream) -> None:
    try:
        while True:
            await sock.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


async def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a one-shot GET, within TIMEOUT."""
    with anyio.fail_after(TIMEOUT):
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            try:
                while True:
                    data += await sock.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def fresh_client_joins(node: Node) -> bool:
    """A new WebSocket client says hello and joins; False if it was refused with a 503."""
    srv = node.server
    token = mint(srv.settings, creator="cr", ttl_s=600, now=wall_clock())
    try:
        async with raw_client(srv, token) as raw:
            await raw.send(Join(room="cr"))
            await raw.expect(Snapshot)
    except InvalidStatus as refused:
        status: int = refused.response.status_code
        if status != 503:
            raise
        return False
    return True


def metric(body: str, name: str) -> float:
    return next(float(line.split()[1]) for line in body.splitlines() if line.startswith(name + " "))


@pytest.mark.parametrize("entry", loops())
async def test_more_slow_sockets_than_descriptors_do_not_starve_the_node(
    tmp_path: Path,
    entry: tuple[str, str],
) -> None:
    """Under a 256-descriptor limit, 300 slow sockets get /healthz and a fresh client
    an answer or a fast 503 at once; the deadline closes them all; then both succeed,
    /metrics counts the refusals, and stderr stays a few lines."""
    # H6
    async with serve(tmp_path, "256:256", entry) as node, anyio.create_task_group() as tg:
        socks = await slow_sockets(node.port, 300, tg)
        start = time.monotonic()
        status, _ = await get(node.port, "/healthz")
        assert status in (200, 503)
        await fresh_client_joins(node)  # joins, or is refused with a 503
        assert time.monotonic() - start < TIMEOUT
        with anyio.fail_after(DEADLINE_S * 3 + TIMEOUT):  # each slow socket is cut
            for sock in socks:
                await until_closed(sock)
        tg.cancel_scope.cancel()
        for sock in socks:
            await sock.aclose()
        assert (await get(node.port, "/healthz"))[0] == 200
        assert await fresh_client_joins(node)
        status, metrics = await get(node.port, "/metrics")
        assert metric(metrics, "livepilot_connections_refused_total") > 0
        assert metric(metrics, "livepilot_handshake_timeouts_total") > 0
    assert len(node.stderr) < STDERR_BUDGET, node.stderr[-2000:]
    assert b"Traceback" not in node.stderr


async def test_running_out_of_descriptors_is_one_line_per_interval(tmp_path: Path) -> None:
    """With max_connections set above what 128 descriptors allow, accepting runs out of
    them: /metrics counts it, stderr has one line for it per 10 s, never a traceback per
    accept."""
    # H6
    start = time.monotonic()
    async with (
        serve(tmp_path, "128:128", ASYNCIO, LIVEPILOT_MAX_CONNECTIONS="100000") as node,
        anyio.create_task_group() as tg,
    ):
        socks = await slow_sockets(node.port, 200, tg)
        with anyio.fail_after(DEADLINE_S * 3 + TIMEOUT):
            for sock in socks:
                await until_closed(sock)
        tg.cancel_scope.cancel()
        for sock in socks:
            await sock.aclose()
        status, metrics = await get(node.port, "/metrics")
        assert status == 200
        assert metric(metrics, "livepilot_accept_errors_total") > 0
    intervals = 1 + int((time.monotonic() - start) // LOG_INTERVAL_S)
    lines = node.log_lines("out of file descriptors or memory: accepting paused")
    assert 1 <= len(lines) <= intervals
    assert node.log_lines(
        "max_connections leaves too few file descriptors: accepting may run out of them"
    )
    assert len(node.stderr) < STDERR_BUDGET, node.stderr[-2000:]
    assert b"Traceback" not in node.stderr


async def test_serve_raises_its_soft_descriptor_limit(tmp_path: Path) -> None:
    """Started with a soft limit of 128 under a hard one of 256, serve runs at 256 and
    derives max_connections from it."""
    async with serve(tmp_path, "128:256", UVLOOP) as node:
        pass
    [started] = node.log_lines("admitting connections")
    assert (started["fd_limit"], started["max_connections"]) == (256, 172)
