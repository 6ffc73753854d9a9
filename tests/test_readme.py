"""The README's claims that code can check, and its snippets, each run twice in a row.

The snippets are read from README.md itself, so the README and these tests cannot
drift apart. The only edits are the ones any reader makes: ``.venv/bin/`` is the
environment running the tests, port 8080 is a free port, ``<staff token>`` a token.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from server.config import settings_table
from tests.e2e.conftest import free_port

README = Path(__file__).parent.parent / "README.md"
ROOT = README.parent
TIMEOUT = 30.0
BIN = f"{Path(sys.executable).parent}/"
SNIPPETS = re.findall(r"^```(\w+)\n(.*?)^```", README.read_text(), re.M | re.S)

# Each snippet is recognised by a marker only it contains, and run by a test below.
INSTALL, DEMO, TOKENS, SDK, HTTP = (
    "pip install", "livepilot demo", "livepilot token --dev --creator demo-creator",
    "from client import Client", "api/requests",
)


def snippet(marker: str) -> str:
    """The one README snippet containing ``marker``."""
    found: list[str] = [code for _, code in SNIPPETS if marker in code]
    assert len(found) == 1, f"{len(found)} README snippets contain {marker!r}"
    return found[0]


def for_this_run(code: str, port: int) -> str:
    """A snippet as a reader would run it here: this environment, a free port."""
    return code.replace(".venv/bin/", BIN).replace("localhost:8080", f"127.0.0.1:{port}") \
        .replace("127.0.0.1:8080", f"127.0.0.1:{port}")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any LIVEPILOT_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPILOT_")}
    return {**env, **extra}


def test_readme_configuration_table_is_current() -> None:
    """The README's configuration table is exactly what the settings declare."""
    assert settings_table().strip() in README.read_text()


def test_readme_starts_with_the_install_and_test_commands() -> None:
    """The README opens with the serve command and the test command, in that order."""
    text = README.read_text()
    serve = text.index("livepilot serve --dev")
    tests = text.index("python -m pytest")
    assert serve < tests < text.index("## A five-minute tour")


def test_every_readme_snippet_is_run_by_a_test() -> None:
    """Each README snippet is one these tests run (a new one needs a runner here)."""
    markers = (INSTALL, DEMO, TOKENS, SDK, HTTP)
    for lang, code in SNIPPETS:
        kinds = [marker for marker in markers if marker in code]
        assert len(kinds) == 1, f"README snippet not run by a test: {lang}\n{code}"
    # Not run: the install snippet builds a virtualenv from the network and its
    # `serve` runs until stopped; CI runs its test command on every change.
    assert {marker for marker in markers if any(marker in c for _, c in SNIPPETS)} == set(markers)


def test_readme_token_snippet_runs_twice(tmp_path: Path) -> None:
    """The token commands print a JWT each, without LIVEPILOT_JWT_SECRET, twice over."""
    for _ in range(2):
        command = ["bash", "-euo", "pipefail", "-c", for_this_run(snippet(TOKENS), 0)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                              cwd=tmp_path, env=clean_env(), check=False)
        assert done.returncode == 0, done.stderr
        assert [line.count(".") for line in done.stdout.splitlines()] == [2, 2]


@asynccontextmanager
async def readme_demo(cwd: Path, port: int) -> AsyncIterator[tuple[Process, str]]:
    """The README's demo command, run in ``cwd``; yields it and the banner it printed."""
    process = await anyio.open_process(
        ["bash", "-c", for_this_run(snippet(DEMO), port)], cwd=cwd,
        env=clean_env(LIVEPILOT_PORT=str(port)), start_new_session=True)
    try:
        assert process.stdout is not None
        banner = b""
        with anyio.fail_after(TIMEOUT):
            async for chunk in process.stdout:
                banner += chunk
                if b"Press Ctrl-C to stop." in banner:
                    break
        yield process, banner.decode()
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
        with anyio.fail_after(TIMEOUT):
            await process.wait()


async def run(command: list[str], cwd: Path, stdin: str | None = None) -> str:
    """Run ``command`` to its end (bounded); returns its stdout, asserting exit 0."""
    with anyio.fail_after(TIMEOUT):
        done = await anyio.run_process(command, input=stdin.encode() if stdin else None,
                                       cwd=cwd, env=clean_env(), check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    return stdout


async def stop(process: Process) -> None:
    """Ctrl-C, as the README says; the demo exits 0."""
    os.killpg(process.pid, signal.SIGINT)
    with anyio.fail_after(TIMEOUT):
        assert await process.wait() == 0


async def test_readme_demo_sdk_and_http_snippets_run_twice(tmp_path: Path) -> None:
    """Against the README's demo, the SDK and HTTP snippets each run twice to their end."""
    # R1 R5 R6 R13. After the demo's own console snippet pinned the dress, the SDK
    # snippet's pin is refused (and says so), twice; the HTTP one unlinks at its end.
    # The demo itself then starts a second time, stops on Ctrl-C (exit 0) and keeps
    # no file in its working directory.
    port = free_port()
    async with readme_demo(tmp_path, port) as (demo, banner):
        staff = re.search(r"staff token:\s+(\S+)", banner)
        assert staff is not None, banner
        console = textwrap.dedent(banner.partition("<<'PY'\n")[2].partition("\n  PY\n")[0])
        assert console.startswith("import asyncio"), banner
        await watch_until_first_event([sys.executable, "-c", console], tmp_path)
        sdk = for_this_run(snippet(SDK), port).replace("<staff token>", staff[1])
        for _ in range(2):
            out = await run([sys.executable, "-c", sdk], tmp_path)
            assert "UserMuted" in out.splitlines()[-1]  # it ended on its own mute
        if shutil.which("curl") is None:  # pragma: no cover - CI installs curl
            pytest.skip("curl is not installed")
        for _ in range(2):
            out = await run(["bash", "-euo", "pipefail", "-c", for_this_run(snippet(HTTP), port)],
                            tmp_path)
            assert '{"code":' not in out, out  # no error answer, the second time either
            assert '"link_removed"' in out.splitlines()[-1], out  # it ended with the unlink
        await stop(demo)
    async with readme_demo(tmp_path, free_port()) as (demo, _):
        await stop(demo)
    assert os.listdir(tmp_path) == []  # the demo keeps no file: not even ./livepilot.db


async def watch_until_first_event(command: list[str], cwd: Path) -> None:
    """Run the demo's console snippet (it watches forever) until it prints an event."""
    process = await anyio.open_process(command, cwd=cwd, env=clean_env())
    try:
        assert process.stdout is not None
        seen = b""
        with anyio.fail_after(TIMEOUT):
            async for chunk in process.stdout:
                seen += chunk
                if b"Event(" in seen:
                    break
        assert b"bag:" in seen
    finally:
        process.kill()
        with anyio.fail_after(TIMEOUT):
            await process.wait()
