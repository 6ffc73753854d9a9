"""Which error and close codes the suite makes the server produce.

The error table (docs/protocol/errors.md) must say what the wire does: a code no
test ever produces is a code that may no longer be sent at all. This plugin
(loaded by tests/conftest.py) records every code the server produces, where it
produces them:

- ``Session.send`` of an ``error`` or ``refused`` (WebSocket replies), and one
  sent before a session exists: straight through Starlette's ``WebSocket.send``
  (the ASGI path), or the error of a refused hello (``server.endpoint``'s
  ``hello_session``, livepilot's own connection),
- ``Session.close``, Starlette's ``WebSocket.close`` and
  ``server.wire.WebSocketConnection.close`` (close codes), and the refusals
  before accept, which go out as HTTP 403 (``WebSocket.close``, or
  ``server.endpoint``'s ``opening``),
- ``server.api_http._error_response`` (HTTP error bodies),
- the refusals the deciders return (``server.domain.room.decide`` and
  ``decide_enter``, ``server.domain.access.decide_access`` and
  ``decide_platform``), which the pure domain tests call directly,

Only the server's side counts: a fake server in a client test sending a code
proves nothing about the server. A test of a server in another process that
sees a code calls :func:`produced` itself. ``tests/test_error_codes.py`` then
fails, over a run of the whole suite only, when a code of the table was never
produced, or when one the table says is not sent was.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from protocol.errors import CloseCode, Code
from protocol.messages import Error, Refused

__all__ = ["PRODUCED", "full_run", "produced"]

TABLE: frozenset[int] = frozenset(int(code) for code in [*Code, *CloseCode])
PRODUCED: set[int] = set()
"""Every table code produced so far in this run."""

_TESTS = Path(__file__).parent
_run: dict[str, bool] = {"full": False, "deselected": False}


def produced(code: int) -> None:
    """Count ``code`` as produced (for codes seen from a server in another process)."""
    if code in TABLE:
        PRODUCED.add(code)


def full_run() -> bool:
    """Whether this run collected every test module, with nothing deselected."""
    return _run["full"] and not _run["deselected"]


def _code_of(value: object) -> None:
    if isinstance(value, Error | Refused):
        produced(value.code)


def _frame_sent(_ws: Any, message: Any) -> None:
    """An ASGI send: count an error or refused frame in it (JSON text or MessagePack)."""
    data = message.get("text") or message.get("bytes")
    try:
        value = msgspec.json.decode(data) if isinstance(data, str) else msgspec.msgpack.decode(data)
    except (msgspec.DecodeError, TypeError):
        return
    if isinstance(value, dict) and value.get("type") in ("error", "refused"):
        code = value.get("code")
        if isinstance(code, int):
            produced(code)


def _before(owner: Any, name: str, record: Callable[..., None]) -> None:
    """Call ``record(self, *args, **kwargs)`` before each call of ``owner.name``."""
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        async def wrapper_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            record(self, *args, **kwargs)
            return await original(self, *args, **kwargs)

        setattr(owner, name, functools.wraps(original)(wrapper_async))
        return

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        record(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    setattr(owner, name, functools.wraps(original)(wrapper))


def _refusals_of(module: Any, name: str) -> None:
    """Count the refusals a decider returns (pure tests call the deciders directly)."""
    from server.domain.refusal import Refusal

    decider = getattr(module, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        decision = decider(*args, **kwargs)
        if isinstance(decision, Refusal):
            produced(decision.code)
        return decision

    setattr(module, name, functools.wraps(decider)(recorded))


def _wrap_native(endpoint: Any) -> None:
    """Count what livepilot's own connection refuses with before a session exists: a
    handshake's refusal (HTTP 403), and the error sent before a refused hello's close."""
    from server.ws import Refusal

    opening = endpoint.opening
    hello_session = endpoint.hello_session

    def recorded_opening(*args: Any, **kwargs: Any) -> Any:
        opened = opening(*args, **kwargs)
        if isinstance(opened, CloseCode):
            produced(opened)
        return opened

    def recorded_hello_session(*args: Any, **kwargs: Any) -> Any:
        admitted = hello_session(*args, **kwargs)
        if isinstance(admitted, Refusal) and admitted.error is not None:
            produced(admitted.error.code)
        return admitted

    endpoint.opening = functools.wraps(opening)(recorded_opening)
    endpoint.hello_session = functools.wraps(hello_session)(recorded_hello_session)


def _install() -> None:
    # The deciders first: whatever imports them by name later gets the recording ones.
    from server.domain import access, room

    _refusals_of(room, "decide")
    _refusals_of(room, "decide_enter")
    _refusals_of(access, "decide_access")
    _refusals_of(access, "decide_platform")

    from starlette.websockets import WebSocket

    from server import api_http, endpoint
    from server.hub.session import Session
    from server.wire import WebSocketConnection

    def session_close(session: Session, code: int, reason: str = "") -> None:
        if not session.is_closed:  # the first close is the one sent
            produced(code)

    _before(Session, "send", lambda _session, message: _code_of(message))
    _before(Session, "close", session_close)
    _before(WebSocket, "close", lambda _ws, code=1000, reason=None: produced(code))
    _before(WebSocket, "send", _frame_sent)

    def conn_close(conn: WebSocketConnection, code: int, reason: str = "") -> None:
        if conn.is_open():  # the first close is the one sent
            produced(code)

    _before(WebSocketConnection, "close", conn_close)
    _wrap_native(endpoint)

    error_response = api_http._error_response

    def recorded_error_response(error: api_http.ApiError) -> Any:
        produced(error.code)
        return error_response(error)

    setattr(api_http, "_error_response", recorded_error_response)  # noqa: B010


def pytest_deselected(items: list[pytest.Item]) -> None:
    """A run with deselected tests is not the whole suite."""
    if items:
        _run["deselected"] = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The code check runs last, after every test that produces codes."""
    last = [item for item in items if item.path.name == "test_error_codes.py"]
    items[:] = [item for item in items if item not in last] + last


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note whether every test module was collected (after any deselection)."""
    modules = {Path(str(item.path)) for item in session.items}
    _run["full"] = set(_TESTS.rglob("test_*.py")) <= modules


_install()  # at import (tests/conftest.py, the first conftest loaded): before any test
# module or deeper conftest imports the deciders by name.
