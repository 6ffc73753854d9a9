"""Real Redis servers for the tests, on loopback ports: one plain server and one
three-master cluster per test session (shared; each test uses its own key prefix,
:func:`unique_prefix`), and a durable server (AOF, ``appendfsync always``) per test
that asks for one, which the test may kill -9 and restart.

Without a ``redis-server`` binary the tests that need one are skipped - except in
CI (``CI=true``), where they fail: CI installs Redis, so a skip there would hide a
broken setup.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
START_TIMEOUT_S = 20.0

# The durable settings H4 needs (decision 0024), and the fast ones of the shared servers.
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
FAST = ("--save", "", "--appendonly", "no")


def need_redis() -> tuple[str, str]:
    """The redis-server and redis-cli paths; skip the test without them (fail in CI)."""
    if REDIS_SERVER is None or REDIS_CLI is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server and redis-cli are required in CI")
        pytest.skip("redis-server is not installed")
    return REDIS_SERVER, REDIS_CLI


def unique_prefix() -> str:
    """A key prefix no other test uses: tests share the session's servers."""
    return f"t{uuid.uuid4().hex[:12]}"


def free_port(*, bus: bool = False) -> int:
    """A free loopback port (and, with ``bus``, port + 10000 free too: a cluster
    node's bus port)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """One ``redis-server`` on 127.0.0.1; :meth:`kill` and :meth:`start` again keep its
    port and data directory (a crash and restart)."""

    def __init__(
        self, directory: Path, *settings: str, port: int | None = None, bus: bool = False
    ) -> None:
        self.directory = directory
        self.settings = settings
        self.port = port if port is not None else free_port(bus=bus)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING (bounded)."""
        server, _ = need_redis()
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--logfile",
                str(log),
                *self.settings,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ping(self.port):  # polls a condition, bounded: no sleep-and-hope
            if self.process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server on {self.port} did not start:\n{text}")
            time.sleep(0.02)

    def kill(self) -> None:
        """kill -9: whatever Redis had not written to disk is lost."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """Terminate the server (idempotent)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def start_cluster(directory: Path, masters: int = 3) -> list[RedisProcess]:
    """``masters`` cluster-enabled servers joined with ``redis-cli --cluster create``,
    returned once every node reports ``cluster_state:ok``."""
    _, cli = need_redis()
    nodes = [
        RedisProcess(
            directory / f"node{i}",
            *FAST,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(directory / f"node{i}.conf"),
            "--cluster-node-timeout",
            "5000",
            bus=True,
        )
        for i in range(masters)
    ]
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in nodes:
            while (
                b"cluster_state:ok"
                not in subprocess.run(
                    [cli, "-p", str(node.port), "cluster", "info"],
                    capture_output=True,
                    check=True,
                    timeout=START_TIMEOUT_S,
                ).stdout
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster on {node.port} never became ok")
                time.sleep(0.05)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain Redis (no persistence: fast) for the whole session."""
    need_redis()
    server = RedisProcess(tmp_path_factory.mktemp("redis"), *FAST)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local three-master Redis Cluster for the whole session (the URL of one node)."""
    need_redis()
    nodes = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield nodes[0].url
    for node in nodes:
        node.stop()


@pytest.fixture
def redis_durable(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis with the settings H4 needs (AOF, fsync at every write), for this test."""
    need_redis()
    server = RedisProcess(tmp_path / "redis-durable", *DURABLE)
    server.start()
    yield server
    server.stop()
