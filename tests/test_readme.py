"""The README's claims that code can check, and its snippets, each run twice in a row.

The snippets are read from README.md itself, so the README and these tests cannot
drift apart. The only edits are the ones any reader makes: ``.venv/bin/`` is the
environment running the tests, port 8080 is a free port, ``<staff token>`` a token.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from packaging.requirements import Requirement

from server.config import settings_table
from tests.e2e.conftest import free_port

README = Path(__file__).parent.parent / "README.md"
ROOT = README.parent
TIMEOUT = 30.0
BIN = f"{Path(sys.executable).parent}/"
SNIPPETS = re.findall(r"^```(\w+)\n(.*?)^```", README.read_text(), re.M | re.S)

# Each snippet is recognised by a marker only it contains, and run by a test below.
INSTALL, DEMO, TOKENS, SDK, HTTP, NODES = (
    "pip install",
    "livepilot demo",
    "livepilot token --dev --creator demo-creator",
    "from client import Client",
    "api/requests",
    "LIVEPILOT_REDIS_URL=",
)


def snippet(marker: str) -> str:
    """The one README snippet containing ``marker``."""
    found: list[str] = [code for _, code in SNIPPETS if marker in code]
    assert len(found) == 1, f"{len(found)} README snippets contain {marker!r}"
    return found[0]


def for_this_run(code: str, port: int) -> str:
    """A snippet as a reader would run it here: this environment, a free port."""
    return (
        code.replace(".venv/bin/", BIN)
        .replace("localhost:8080", f"127.0.0.1:{port}")
        .replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    )


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


# --- the README's test command, and what CI makes of it --------------------------------

CI_RUN = ROOT / ".ci" / "run"
FIRST_PARTY = {"client", "loadtest", "protocol", "server", "tests"}


def _readme_test_command() -> str:
    """The line `.ci/run` runs: the first README line that runs pytest (its own rule)."""
    return next(line for line in README.read_text().splitlines() if " -m pytest" in line)


def test_readme_test_command_installs_the_test_extra_and_runs_everything() -> None:
    """The README's test command makes a venv, installs `.[test]` and runs the whole suite."""
    command = _readme_test_command()
    opening = README.read_text().split("```")[1]  # the opening sh block
    assert command in opening.splitlines()
    assert command.startswith("python3 -m venv .venv && ")
    assert " install -e '.[test]' && " in command
    assert command.endswith(".venv/bin/python -m pytest")  # no selection: every test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """`.ci/run` reads the test command from the README (same rule) and runs it as is."""
    script = CI_RUN.read_text()
    assert "test_command=$(grep -m 1 -e ' -m pytest' README.md)" in script
    assert 'bash -c "set -e; $test_command"' in script
    run = script.index('$test_command"')
    assert script.index("apt-get install -y redis-server") < run  # the Redis tests' binary
    assert run < script.index("ruff check .")
    assert run < script.index(".venv/bin/mypy")
    assert "-m pytest" not in script.replace("' -m pytest'", "")  # no second, other run


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements_of_test_extra() -> set[str]:
    """Every distribution `pip install -e '.[test]'` installs (pyproject, then metadata)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    todo = [Requirement(spec) for spec in [*project["dependencies"], *extras["test"]]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = _normalize(req.name)
        if name == project["name"]:  # a self-reference: livepilot[loadtest]
            todo += [Requirement(spec) for extra in req.extras for spec in extras[extra]]
            continue
        key = name + str(sorted(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            specs = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in specs:
            dep = Requirement(spec)
            wanted = req.extras or {""}
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(dep)
    return {key.split("[")[0] for key in seen}


def _imported_modules() -> set[str]:
    """Top-level third-party modules imported anywhere the suite can reach."""
    names: set[str] = set()
    for package in FIRST_PARTY:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - FIRST_PARTY - set(sys.stdlib_module_names)


def test_test_extra_installs_every_module_the_suite_imports() -> None:
    """Every third-party module under tests/ (and the code they import) comes with `.[test]`."""
    installed = _requirements_of_test_extra()
    providers = metadata.packages_distributions()
    missing = {
        module
        for module in _imported_modules()
        if not {_normalize(d) for d in providers.get(module, [module])} & installed
    }
    assert not missing, f"imported by the suite, not installed by .[test]: {sorted(missing)}"


def test_every_readme_snippet_is_run_by_a_test() -> None:
    """Each README snippet is one these tests run (a new one needs a runner here)."""
    markers = (INSTALL, DEMO, TOKENS, SDK, HTTP, NODES)
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
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=tmp_path,
            env=clean_env(),
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert [line.count(".") for line in done.stdout.splitlines()] == [2, 2]


@asynccontextmanager
async def readme_demo(cwd: Path, port: int) -> AsyncIterator[tuple[Process, str]]:
    """The README's demo command, run in ``cwd``; yields it and the banner it printed."""
    process = await anyio.open_process(
        ["bash", "-c", for_this_run(snippet(DEMO), port)],
        cwd=cwd,
        env=clean_env(LIVEPILOT_PORT=str(port)),
        start_new_session=True,
    )
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
        done = await anyio.run_process(
            command, input=stdin.encode() if stdin else None, cwd=cwd, env=clean_env(), check=False
        )
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
            out = await run(
                ["bash", "-euo", "pipefail", "-c", for_this_run(snippet(HTTP), port)], tmp_path
            )
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


def test_readme_two_node_snippet_serves_on_both_nodes(tmp_path: Path) -> None:
    """The README's many-nodes commands, as written (free ports, this environment):
    Redis and two nodes start, and both nodes answer /readyz 200."""
    # H4 (the Redis settings the README gives) R5 (either node serves)
    from tests.redis_fixtures import free_port, need_redis

    need_redis()
    redis, a, b = free_port(), free_port(), free_port()
    code = (
        snippet(NODES)
        .replace("6379", str(redis))
        .replace("8081", str(a))
        .replace("8082", str(b))
        .replace("livepilot serve", f"{BIN}livepilot serve")
    )
    # Afterwards: each node's /readyz once more, then stop what the snippet started.
    script = (
        f"{code}\ncurl -sf 127.0.0.1:{a}/readyz > a.json; "
        f"curl -sf 127.0.0.1:{b}/readyz > b.json\nkill $(jobs -p)\nwait\n"
    )
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT * 2)
    finally:  # on a timeout too: Redis and both nodes go with the snippet's process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for node in ("a.json", "b.json"):
        assert (tmp_path / node).read_text(), output
