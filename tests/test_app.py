"""The ASGI app: ``/ws`` goes straight to its endpoint, everything else to Starlette."""

from __future__ import annotations

from typing import Any

import pytest

import server.app
from server.app import create_app
from server.config import load_settings


def app_with_recorder(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str]]:
    seen: list[str] = []

    async def endpoint(websocket: Any) -> None:
        seen.append(websocket.url.path)

    monkeypatch.setattr(server.app, "websocket_endpoint", endpoint)
    return create_app(load_settings({}, data_path=":memory:")), seen


async def call_ws(app: Any, path: str, root_path: str = "") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": root_path + path,
        "root_path": root_path,
        "raw_path": (root_path + path).encode(),
        "query_string": b"",
        "headers": [],
        "subprotocols": [],
        "scheme": "ws",
        "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2),
        "extensions": {},
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("root_path", ["", "/live"])
async def test_ws_goes_straight_to_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, root_path: str
) -> None:
    """A WebSocket to /ws (under any root path) is handed to the endpoint directly,
    past Starlette's middleware and router (which a long-lived connection would keep)."""
    app, seen = app_with_recorder(monkeypatch)
    await call_ws(app, "/ws", root_path)
    assert seen == [root_path + "/ws"]
    assert app.middleware_stack is None  # built on the first call that goes through it


async def test_other_websocket_paths_go_to_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    """A WebSocket elsewhere is not the endpoint's: Starlette's router refuses it."""
    app, seen = app_with_recorder(monkeypatch)
    sent = await call_ws(app, "/wss")
    assert seen == []
    assert sent[0]["type"] == "websocket.close"
    assert app.middleware_stack is not None
