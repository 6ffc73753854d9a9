"""The bus on a real Redis: wake-ups, presence with expiry, notices, reconnects."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from protocol.access import AgencyRegistered
from protocol.model import Actor
from server.bus.base import AccessNotice
from server.bus.redis import RedisBus
from server.log.redis_conn import connect
from server.log.redis_scripts import DEFAULT_PREFIX
from server.redis_store import RedisAccessEventStore
from tests.tcp_proxy import TcpProxy

TIMEOUT = 10.0
STAFF = Actor(role="staff", id="st", agency="ag")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A throw-away redis-server on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    directory: Path = tmp_path_factory.mktemp("redis-bus")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:  # bounded poll of a condition: the server answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.02)
    yield port
    process.terminate()
    process.wait(timeout=10)


class Heard:
    """A listener that records what it hears and wakes a waiter."""

    def __init__(self) -> None:
        self.got: list[tuple[str, object]] = []
        self._changed = anyio.Event()

    def _add(self, item: tuple[str, object]) -> None:
        self.got.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    def on_wake(self, room: str, seq: int | None, epoch: str | None = None) -> None:
        self._add(("wake", (room, seq)))

    def on_presence(self, room: str) -> None:
        self._add(("presence", room))

    def on_access(self, notice: AccessNotice) -> None:
        self._add(("access", notice))

    async def until(self, item: tuple[str, object]) -> None:
        with anyio.fail_after(TIMEOUT):
            while item not in self.got:
                await self._changed.wait()


Pair = tuple[RedisBus, Heard, RedisBus, Heard, TcpProxy]


@asynccontextmanager
async def pair(redis_port: int) -> AsyncIterator[Pair]:
    """Two nodes' buses; node b reaches Redis through a proxy the test can cut."""
    proxy = TcpProxy(redis_port)
    await proxy.start()
    prefix = f"t{time.monotonic_ns()}:"
    async with anyio.create_task_group() as tasks:
        a, ha = RedisBus(f"redis://127.0.0.1:{redis_port}/0", "a", prefix=prefix), Heard()
        b, hb = RedisBus(f"redis://127.0.0.1:{proxy.port}/0", "b", prefix=prefix), Heard()
        for bus, heard in ((a, ha), (b, hb)):
            bus.listen(heard)
            tasks.start_soon(bus.run)
        yield a, ha, b, hb, proxy
        await a.close()
        await b.close()
        tasks.cancel_scope.cancel()
    await proxy.close()


async def test_wakeups_reach_subscribers_and_a_reconnect_rereads(redis_port: int) -> None:
    """A subscription in force, and every reconnect after a cut, make the node read
    the room (wake with no seq); wake-ups carry the room's last seq."""
    # H2 H3 (multi-node: pub/sub is only a wake-up)
    async with pair(redis_port) as (a, _ha, b, hb, proxy):
        b.subscribe("cr")
        await hb.until(("wake", ("cr", None)))
        await a.wake("cr", 7)
        await hb.until(("wake", ("cr", 7)))
        hb.got.clear()
        proxy.cut()
        await hb.until(("wake", ("cr", None)))  # reconnected, resubscribed: read the gap
        await a.wake("cr", 8)
        await hb.until(("wake", ("cr", 8)))


async def test_presence_merges_nodes_and_lapses(redis_port: int) -> None:
    """Each node's members of a room are merged; a node's entry lapses with its ttl."""
    # R15 (multi-node presence)
    async with pair(redis_port) as (a, ha, b, _hb, _proxy):
        creator = Actor(role="creator", id="cr")
        a.subscribe("cr")
        await ha.until(("wake", ("cr", None)))
        await a.put_presence("cr", [creator], 60_000)
        await b.put_presence("cr", [STAFF], 200)
        await ha.until(("presence", "cr"))
        assert set(await a.read_presence("cr")) == {creator, STAFF}
        with anyio.fail_after(TIMEOUT):
            while STAFF in await a.read_presence("cr"):  # bounded: the ttl passes  # noqa: ASYNC110 - a key expiry has no event
                await anyio.sleep(0.05)
        await a.put_presence("cr", [], 60_000)
        assert await a.read_presence("cr") == []


async def test_access_notices_reach_every_node(redis_port: int) -> None:
    """An access notice is heard by every node, the sender included."""
    # R6 (every server node)
    async with pair(redis_port) as (a, ha, _b, hb, _proxy):
        notice = AccessNotice(kind="ended", agency="ag", creator="cr", status="revoked", origin="a")
        with anyio.fail_after(TIMEOUT):
            while not (a.connected and _b.connected):  # noqa: ASYNC110 - polls a flag, bounded
                await anyio.sleep(0.01)
        await a.announce(notice)
        await hb.until(("access", notice))
        await ha.until(("access", notice))


async def test_ping_reports_reachability(redis_port: int) -> None:
    """ping() is True with Redis up and False, within its bound, when unreachable."""
    up = RedisBus(f"redis://127.0.0.1:{redis_port}/0", "x")
    down = RedisBus(f"redis://127.0.0.1:{_free_port()}/0", "y")
    with anyio.fail_after(3):
        assert await up.ping()
        assert not await down.ping()
    await up.close()
    await down.close()


async def test_an_access_append_is_not_heard_as_a_garbled_notice(
    redis_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The access store's wake-up and the bus's notices use their own channels with the
    default prefixes: an access append logs no "did not decode" on any node."""
    # R6 (every node hears access changes; nothing it hears is noise)
    url = f"redis://127.0.0.1:{redis_port}/0"
    bus, heard = RedisBus(url, "a"), Heard()  # the default prefixes, as nodes run them
    client = await connect(url)
    store = RedisAccessEventStore(client, prefix=DEFAULT_PREFIX)
    async with anyio.create_task_group() as tasks:
        bus.listen(heard)
        tasks.start_soon(bus.run)
        with anyio.fail_after(TIMEOUT):
            while not bus.connected:  # noqa: ASYNC110 - polls a flag, bounded
                await anyio.sleep(0.01)
        await store.append_access_events([AgencyRegistered(at=1, agency="ag", cross_border=False)])
        marker = AccessNotice(kind="changed", origin="marker")
        await bus.announce(marker)  # after the append's publish, on the same server
        await heard.until(("access", marker))  # so anything the append sent came first
        await bus.close()
        tasks.cancel_scope.cancel()
    await client.aclose()
    assert [item for item in heard.got if item[0] == "access"] == [("access", marker)]
    assert not [r for r in caplog.records if "did not decode" in r.getMessage()]
