"""``connect(url, token)``: a new :class:`~client.client.Client`, connected in one call.

Await it (``client = await connect(url, token)``, then close the client) or use
it as an async context manager (``async with connect(url, token) as client:``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Generator, Mapping
from types import TracebackType
from typing import Any

from client.backoff import Backoff
from client.client import Client
from client.options import (
    DEFAULT_CLIENT_NAME,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_TIMEOUT,
    Sleep,
    TokenSource,
)
from protocol.codec import Format

__all__ = ["Connecting", "connect"]


class Connecting:
    """What :func:`connect` returns: await it, or use it as an async context manager."""

    def __init__(self, client: Client, url: str, token: TokenSource, options: dict[str, Any]):
        self._client = client
        self._url = url
        self._token = token
        self._options = options

    async def _connect(self) -> Client:
        await self._client.connect(self._url, self._token, **self._options)
        return self._client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._connect().__await__()

    async def __aenter__(self) -> Client:
        return await self._connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()


def connect(
    url: str,
    token: TokenSource,
    *,
    format: Format = "json",
    reconnect: bool = True,
    backoff: Backoff | None = None,
    client_name: str = DEFAULT_CLIENT_NAME,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    request_timeout: float | None = DEFAULT_TIMEOUT,
    heartbeat: bool = True,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    connect_options: Mapping[str, Any] | None = None,
) -> Connecting:
    """Connect a new :class:`Client`: ``async with connect(url, token) as client: ...``.

    Or ``client = await connect(url, token)`` (then close it). The arguments are
    those of :class:`Client` and :meth:`Client.connect`.
    """
    client = Client(
        client_name=client_name,
        sleep=sleep,
        rand=rand,
        open_timeout=open_timeout,
        request_timeout=request_timeout,
        heartbeat=heartbeat,
        max_frame_bytes=max_frame_bytes,
        connect_options=connect_options,
    )
    options: dict[str, Any] = {"format": format, "reconnect": reconnect, "backoff": backoff}
    return Connecting(client, url, token, options)
