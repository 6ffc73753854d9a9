"""Imports point down the layers of docs/architecture.md, never up: a module that
imports against that direction fails here (the import graph, read with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent

LAYERS: list[tuple[str, ...]] = [
    ("protocol",),  # the wire contract: pure, imports nothing of livepilot
    ("server.domain",),  # the pure rules
    (  # storage, and the node's small leaf services
        "server.log",
        "server.journal",
        "server.store",
        "server.redis_store",
        "server.access_store",
        "server.bus",
        "server.metrics",
        "server.config",
        "server.config_parsers",
        "server.auth",
        "server.logs",
        "server.framing",
    ),
    ("server.hub", "server.access_service"),  # rooms, sessions, fan-out; access effects
    ("server.cluster", "server.runtime"),  # storage + access + hub, wired
    (  # the edge: transport, /ws, HTTP API, pages, app
        "server.wire",
        "server.ws",
        "server.endpoint",
        "server.admission",
        "server.api",
        "server.api_http",
        "server.api_agency",
        "server.api_creator",
        "server.api_platform",
        "server.web",
        "server.app",
    ),
    ("server.serve", "server.startup", "server.gctune", "server.cli", "server.demo"),  # process
]
"""Each row may import its own row and the rows above it."""

CLIENT = ("client",)
"""The SDK: imports protocol and itself only; the server never imports it..."""
SERVER_USES_CLIENT = {"server.demo"}
"""...except the demo, a client of the server that still lives in it (issue 13 moves it)."""


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching prefix, row)
    for row, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), row)
    return None if best is None else best[1]


def _imports() -> list[tuple[str, str]]:
    """(importer, imported) for every first-party import in protocol, server, client."""
    pairs: list[tuple[str, str]] = []
    for package in ("protocol", "server", "client"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(
                ".__init__"
            )
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                pairs += [
                    (module, name)
                    for name in names
                    if name.split(".")[0] in {"protocol", "server", "client", "loadtest"}
                ]
    return pairs


def test_every_server_module_has_a_layer() -> None:
    """A new module under server/ is placed in a row (else its imports go unchecked)."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "server").rglob("*.py")
    }
    unplaced = sorted(m for m in modules - {"server"} if _layer(m) is None)
    assert not unplaced, f"add these to a row of LAYERS: {unplaced}"


def test_imports_point_down_the_layers() -> None:
    """No module imports a module of a row below its own (nearer the edge or the process)."""
    upward = []
    for importer, imported in _imports():
        if imported.split(".")[0] == "loadtest":
            upward.append((importer, imported))
        elif importer.startswith("client"):
            if imported.split(".")[0] not in {"client", "protocol"}:
                upward.append((importer, imported))
        elif imported.startswith(CLIENT):
            if importer not in SERVER_USES_CLIENT:
                upward.append((importer, imported))
        elif imported != "server":
            mine, theirs = _layer(importer), _layer(imported)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append((importer, imported))
    assert not upward, f"imports against the layers: {sorted(set(upward))}"


def test_the_check_catches_an_upward_import() -> None:
    """The direction check itself: the hub importing the edge would be reported."""
    hub, edge = _layer("server.hub.hub"), _layer("server.ws")
    assert hub is not None
    assert edge is not None
    assert edge > hub
    assert _layer("protocol.messages") == 0
