"""The server as a process: kill -9 after an ack, SIGTERM, restart and resume."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import Process

from client import Backoff, Client
from protocol import commands as c
from protocol.errors import CloseCode
from protocol.messages import Ack, Event, Join, Resume, Resumed, Snapshot
from protocol.model import BagItem
from server.auth import mint
from server.config import load_settings
from server.runtime import wall_clock
from tests.e2e.conftest import TIMEOUT, Server, free_port, raw_client

SECRET = "lifecycle-test-secret-0123456789abcdef"


@asynccontextmanager
async def serve_process(data: Path, port: int) -> AsyncIterator[Process]:
    """``livepilot serve`` in a child process; yields once it listens."""
    env = {**os.environ, "LIVEPILOT_JWT_SECRET": SECRET, "LIVEPILOT_LOG_LEVEL": "INFO"}
    command = [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--port",
        str(port),
        "--data",
        str(data),
    ]
    process = await anyio.open_process(command, env=env)
    try:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(TIMEOUT):
            async for chunk in process.stderr:  # uvicorn logs once it listens
                seen += chunk
                if b"Uvicorn running on" in seen:
                    break
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.fail_after(TIMEOUT):
            await process.wait()


def server_for(port: int) -> Server:
    settings = load_settings({"LIVEPILOT_JWT_SECRET": SECRET}, port=port)
    return Server(
        url=f"ws://127.0.0.1:{port}/ws",
        settings=settings,
        clock=wall_clock,  # type: ignore[arg-type]
        app=None,
    )


async def test_kill_9_right_after_an_ack_loses_nothing(tmp_path: Path) -> None:
    """An acked command survives kill -9 of the server; a client resumes after restart."""
    # H4 H3
    port, data = free_port(), tmp_path / "live.db"
    srv = server_for(port)
    async with (
        serve_process(data, port) as process,
        raw_client(srv, srv.token(creator="cr")) as raw,
    ):
        await raw.send(Join(room="cr"))
        await raw.expect(Snapshot)
        await raw.send(c.StartLive(command_id="go", room="cr"))
        await raw.expect(Ack)
        await raw.send(c.BagAdd(command_id="add", room="cr", item=BagItem(product_id="p1")))
        ack: Ack = await raw.expect(Ack)
        process.send_signal(signal.SIGKILL)  # right after the ack, no shutdown at all
        await process.wait()
    async with serve_process(data, port), raw_client(srv, srv.token(creator="cr")) as raw:
        await raw.send(Resume(room="cr", last_seq=0))
        resumed: Resumed = await raw.expect(Resumed)
        events = [e for e in raw.events if isinstance(e, Event)]
        assert resumed.seq == ack.seq
        assert [e.command_id for e in events] == ["go", "add"]
        await raw.send(Join(room="cr"))
        snapshot: Snapshot = await raw.expect(Snapshot)
        assert [i.product_id for i in snapshot.state.bag] == ["p1"]


async def test_sigterm_says_going_away_and_a_restarted_server_resumes(tmp_path: Path) -> None:
    """SIGTERM closes every session with going-away, exits 0; the SDK resumes on restart."""
    # H3 H4
    port, data = free_port(), tmp_path / "term.db"
    url = f"ws://127.0.0.1:{port}/ws"
    settings = load_settings({"LIVEPILOT_JWT_SECRET": SECRET})

    def token() -> str:
        return mint(settings, creator="cr", now=wall_clock())

    srv = server_for(port)
    restarted = anyio.Event()
    delays: list[float] = []

    async def wait_for_restart(delay: float) -> None:
        # The SDK's backoff sleeps here: reconnect only once the new server listens.
        delays.append(delay)
        await restarted.wait()

    async with Client(sleep=wait_for_restart) as sdk:
        async with serve_process(data, port) as process:
            await sdk.connect(url, token(), backoff=Backoff(initial=0.01, max_attempts=3))
            await sdk.join("cr")
            await sdk.send(sdk.command(c.StartLive, room="cr"))
            async with raw_client(srv, token()) as raw:
                await raw.send(Join(room="cr"))
                await raw.expect(Snapshot)
                process.send_signal(signal.SIGTERM)
                _, close_code = await raw.until_closed()
                assert close_code == CloseCode.GOING_AWAY
            with anyio.fail_after(TIMEOUT):
                assert await process.wait() == 0
        async with serve_process(data, port):
            restarted.set()
            ack = await sdk.send(sdk.command(c.BagAdd, room="cr", item=BagItem(product_id="p9")))
            assert ack.seq == 2
            assert sdk.last_seq("cr") == 2
            assert delays  # it did reconnect
            assert sdk.connected


async def test_a_second_server_on_the_same_data_path_refuses_to_start(tmp_path: Path) -> None:
    """A second `serve` on a held data path exits 2 with one line naming the holder's pid."""
    # H2 H4: one writer per room log; a second process would ack appends nobody sees.
    # Once the first stops, the data path is free again.
    data = tmp_path / "one.db"  # pytest resolves it: the path the lock names
    async with serve_process(data, free_port()) as first:
        env = {**os.environ, "LIVEPILOT_JWT_SECRET": SECRET}
        second = [
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--port",
            str(free_port()),
            "--data",
            str(data),
        ]
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process(second, env=env, check=False)
        assert done.returncode == 2
        assert done.stderr.decode() == (
            f"livepilot: data path {data} is in use by process {first.pid} (lock {data}.lock)\n"
        )
        first.send_signal(signal.SIGTERM)
        with anyio.fail_after(TIMEOUT):
            assert await first.wait() == 0
    async with serve_process(data, free_port()):  # the lock went with its process
        pass
