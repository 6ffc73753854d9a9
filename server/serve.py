"""Serve the app with uvicorn, with livepilot's graceful shutdown.

On SIGTERM (or SIGINT) the server stops accepting, closes every session with
the retryable "going away" code (so clients reconnect elsewhere or later and
resume), waits for them to finish (bounded), then lets uvicorn finish and the
app's lifespan flush the store. The process then exits 0.

Connections pass :class:`~server.admission.Admission` first: at most
``max_connections`` open (HTTP 503 past it), each request or WebSocket handshake
within ``handshake_timeout_s`` (decision 0022).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator

import anyio
import uvicorn
from starlette.applications import Starlette

from protocol.errors import CloseCode
from server.admission import Admission, default_max_connections, fd_limit
from server.app import create_app
from server.config import Settings
from server.endpoint import LivepilotWebSocketProtocol
from server.metrics import Metrics
from server.runtime import Runtime, wall_clock

__all__ = ["DRAIN_TIMEOUT_S", "LivepilotServer", "build_server", "uvicorn_config"]

DRAIN_TIMEOUT_S = 5.0
logger = logging.getLogger("livepilot")


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration the settings call for."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        # livepilot's own connection (decision 0023), configured from the settings
        # (server.endpoint.options_for); the ws_* settings below are for an ASGI
        # fallback protocol (tests/e2e/test_asgi_fallback.py) and mean the same.
        ws=LivepilotWebSocketProtocol,
        ws_max_size=settings.max_message_bytes * 4,
        ws_per_message_deflate=settings.permessage_deflate,
        ws_ping_interval=settings.heartbeat_s or None,
        ws_ping_timeout=settings.heartbeat_s or None,
        log_config=None,  # livepilot sets up (JSON) logging itself
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(DRAIN_TIMEOUT_S) + 1,
    )


class LivepilotServer(uvicorn.Server):
    """uvicorn's server, closing sessions with "going away" before it shuts down."""

    def __init__(
        self, config: uvicorn.Config, app: Starlette, admission: Admission | None = None
    ) -> None:
        super().__init__(config)
        self.app = app
        self.admission = admission
        """What lets connections in (None: uvicorn's own accept, unbounded)."""
        self.ready = anyio.Event()
        """Set once the app's runtime is open and the socket listens."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if self.admission is not None:
            self._admit_through(self.admission)
        await super().startup(sockets)
        if self.started:
            if sockets is not None:  # uvicorn only says where it listens when it binds
                self._log_started_message(sockets)
            self.ready.set()

    def _admit_through(self, admission: Admission) -> None:
        # uvicorn builds each connection's protocol with config.http_protocol_class (set
        # by Config.load, which uvicorn ran before startup): the gate goes in front of it.
        config = self.config
        if not config.loaded:
            config.load()
        config.http_protocol_class = admission.protocol_factory(  # type: ignore[assignment]
            config.http_protocol_class
        )
        admission.watch(asyncio.get_running_loop())
        limit = fd_limit()
        logger.info(
            "admitting connections",
            extra={
                "max_connections": admission.max_connections,
                "fd_limit": limit,
                "handshake_timeout_s": admission.handshake_timeout_s,
            },
        )
        if admission.max_connections > default_max_connections(limit):
            logger.warning(
                "max_connections leaves too few file descriptors: accepting may run out of them",
                extra={"max_connections": admission.max_connections, "fd_limit": limit},
            )

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's signal capture, without re-raising the signal afterwards.

        uvicorn re-raises SIGTERM once it has shut down, so the process dies of
        the signal (exit -15); a graceful stop of livepilot exits 0 instead.
        """
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting first
        runtime: Runtime | None = getattr(self.app.state, "runtime", None)
        if runtime is not None:
            hub = runtime.hub
            hub.close_all(CloseCode.GOING_AWAY, "server shutting down")
            with anyio.move_on_after(DRAIN_TIMEOUT_S):
                await hub.drained()
            logger.info("sessions drained", extra={"left": len(hub.sessions)})
        await super().shutdown(sockets)
        if self.admission is not None:
            self.admission.unwatch(asyncio.get_running_loop())


def build_server(settings: Settings, *, clock: Callable[[], int] = wall_clock) -> LivepilotServer:
    """A ready-to-run server for ``settings`` (call ``.serve()`` or ``.run()``).

    ``max_connections`` 0 is derived from the descriptor limit the process has now:
    ``serve`` raises it first (:func:`server.admission.raise_fd_limit`).
    """
    metrics = Metrics()
    app = create_app(settings, clock=clock, metrics=metrics)
    admission = Admission(
        settings.max_connections or default_max_connections(fd_limit()),
        settings.handshake_timeout_s,
        metrics,
        websocket=LivepilotWebSocketProtocol,
    )
    return LivepilotServer(uvicorn_config(app, settings), app, admission)
