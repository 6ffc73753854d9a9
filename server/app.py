"""The ASGI application: WebSocket ``/ws``, the HTTP API, health and metrics.

``create_app(settings)`` returns a Starlette app that owns its runtime through
its lifespan, so it can be served by uvicorn (``livepilot serve``) or mounted
in another ASGI app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from server.config import Settings
from server.runtime import Runtime, open_runtime, wall_clock
from server.ws import websocket_endpoint

__all__ = ["create_app"]


async def healthz(request: Request) -> Response:
    """Liveness: the process serves requests."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the runtime (storage, access) is open."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ready", "rooms": len(runtime.hub.rooms),
                         "connections": len(runtime.hub.sessions)})


async def metrics(request: Request) -> Response:
    """Prometheus metrics of this node."""
    runtime: Runtime = request.app.state.runtime
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, *, clock: Callable[[], int] = wall_clock) -> Starlette:
    """A livepilot app for ``settings``; its lifespan opens and closes the runtime."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings, clock=clock) as runtime:
            app.state.runtime = runtime
            yield
            app.state.runtime = None

    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", websocket_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    try:
        from server.api import api_routes
    except ImportError:  # pragma: no cover - the HTTP API lands separately
        pass
    else:
        routes += api_routes()
    return Starlette(routes=routes, lifespan=lifespan)
