"""The ASGI application: WebSocket ``/ws``, the HTTP API, the browser consoles,
health and metrics.

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
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from server.config import Settings
from server.metrics import Metrics
from server.runtime import Runtime, open_runtime, wall_clock
from server.ws import websocket_endpoint

__all__ = ["LivepilotApp", "create_app"]

WS_PATH = "/ws"


class LivepilotApp(Starlette):
    """Starlette, with ``/ws`` connections handed straight to their endpoint.

    A WebSocket connection lives as long as its client: every coroutine frame
    between the server and the endpoint (middleware, router, route) stays in
    memory all that time. Skipping them saves every idle connection several KB
    (docs/benchmarks.md, idle); the route is declared all the same.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _route_path(scope) == WS_PATH:
            scope["app"] = self
            await websocket_endpoint(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def healthz(request: Request) -> Response:
    """Liveness: the process serves requests."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the runtime (storage, access) is open, Redis answers (many nodes),
    and every room it loaded could be read (a stored record that does not decode
    answers 503 until it does)."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    if runtime.bus is not None and not await runtime.bus.ping():
        # Many nodes: without Redis no command can be stored (clients retry elsewhere).
        return JSONResponse({"status": "redis unreachable"}, status_code=503)
    unreadable = runtime.hub.unreadable
    if unreadable:
        return JSONResponse(
            {"status": "degraded", "unreadable_rooms": sorted(unreadable)[:100]}, status_code=503
        )
    return JSONResponse(
        {
            "status": "ready",
            "rooms": len(runtime.hub.rooms),
            "connections": len(runtime.hub.sessions),
        }
    )


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics of this node."""
    runtime: Runtime = request.app.state.runtime
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: Settings, *, clock: Callable[[], int] = wall_clock, metrics: Metrics | None = None
) -> LivepilotApp:
    """A livepilot app for ``settings``; its lifespan opens and closes the runtime
    (counting in ``metrics``, a new registry by default)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings, clock=clock, metrics=metrics) as runtime:
            app.state.runtime = runtime
            yield
            app.state.runtime = None

    routes: list[BaseRoute] = [
        WebSocketRoute(WS_PATH, websocket_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    try:
        from server.api import api_routes
    except ImportError:  # pragma: no cover - the HTTP API lands separately
        pass
    else:
        routes += api_routes()
    from server.web.routes import web_routes

    routes += web_routes()
    return LivepilotApp(routes=routes, lifespan=lifespan)
