"""Everything a :class:`~client.client.Client` is configured with, in one frozen value.

:class:`ClientOptions` is built once by :class:`~client.client.Client` (its
keyword arguments) and completed by :meth:`~client.client.Client.connect` (the
url, the format, whether and how to reconnect); the client's state and its
connection driver read it and never change it. The token is not an option: a
token source gives a fresh one on every connect, and ``refresh`` replaces it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from client.backoff import Backoff
from protocol.codec import Format

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_TIMEOUT",
    "ClientOptions",
    "Sleep",
    "TokenSource",
]

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a request (join, send, list_bag, ping) waits for its answer by default."""
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
"""Largest server frame accepted: snapshots of big rooms exceed the client limit."""
DEFAULT_OPEN_TIMEOUT: Final = 10.0
"""Seconds opening a connection and waiting for ``welcome`` may take by default."""
DEFAULT_CLIENT_NAME: Final = "livepilot-python"
"""What ``hello`` says the client is, by default."""

TokenSource = str | Callable[[], Awaitable[str]]
"""A token, or an async callable returning a fresh one (called on every connect)."""
Sleep = Callable[[float], Awaitable[None]]
"""How the client waits between reconnect attempts (``asyncio.sleep`` by default)."""


def _no_options() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """How a client connects, waits and reconnects; see :class:`~client.client.Client`.

    ``client_name`` goes in ``hello``. ``sleep`` and ``rand`` drive the
    reconnect backoff (inject them to test it); ``open_timeout`` bounds opening
    a connection and waiting for ``welcome``; ``request_timeout`` bounds how
    long ``join``, ``send``, ``list_bag`` and ``ping`` wait for their answer
    (None: no bound; wrap a call in ``asyncio.timeout()`` for a tighter one);
    ``heartbeat`` sends a ``ping`` twice per ``limits.heartbeat_s`` so the
    server never sees an idle connection; ``max_frame_bytes`` bounds incoming
    frames; ``connect_options`` are passed on to
    :func:`websockets.asyncio.client.connect` (e.g. ``proxy``, ``ssl``).

    ``url``, ``format`` (``json`` or ``msgpack``), ``reconnect`` and ``backoff``
    are set by :meth:`~client.client.Client.connect`.
    """

    client_name: str = DEFAULT_CLIENT_NAME
    sleep: Sleep = asyncio.sleep
    rand: Callable[[], float] = random.random
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT
    request_timeout: float | None = DEFAULT_TIMEOUT
    heartbeat: bool = True
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    connect_options: Mapping[str, Any] = field(default_factory=_no_options)
    url: str = ""
    format: Format = "json"
    reconnect: bool = True
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        # A read-only copy: the caller's dict may change, these options may not.
        object.__setattr__(self, "connect_options", MappingProxyType(dict(self.connect_options)))
