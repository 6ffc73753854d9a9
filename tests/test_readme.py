"""The README's claims that code can check."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from server.config import settings_table

README = Path(__file__).parent.parent / "README.md"


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

ROOT = README.parent
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
    run = script.index("$test_command\"")
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
    missing = {module for module in _imported_modules()
               if not {_normalize(d) for d in providers.get(module, [module])} & installed}
    assert not missing, f"imported by the suite, not installed by .[test]: {sorted(missing)}"
