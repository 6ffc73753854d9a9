"""The consoles' routes: ``/console``, ``/creator`` and their ``/static`` files.

Plain files from ``static/`` (committed; no build step at install), each answer
with a strict Content-Security-Policy: scripts only from the hub's own origin
(no inline script, no ``eval``), sockets only to it, no framing. The pages are
harmless without a token: every action they take is authorized by the bearer
token the user pastes, never by a cookie.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

__all__ = ["CSP", "SECURITY_HEADERS", "STATIC_DIR", "web_routes"]

STATIC_DIR: Final = Path(__file__).parent / "static"

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""``ws: wss:`` because CSP 'self' did not cover WebSocket URLs in every browser."""
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _SecuredStatic(StaticFiles):
    """Starlette's static files with the consoles' security headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)  # type: ignore[arg-type]


def _page(name: str) -> Route:
    path = STATIC_DIR / f"{name}.html"

    async def page(request: Request) -> Response:
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    return Route(f"/{name}", page, methods=["GET", "HEAD"], name=f"{name}_page")


async def _home(request: Request) -> Response:
    return RedirectResponse("/console")


def web_routes() -> list[BaseRoute]:
    """``/`` (to the console), ``/console``, ``/creator`` and ``/static/*``."""
    return [
        Route("/", _home, methods=["GET", "HEAD"]),
        _page("console"),
        _page("creator"),
        Mount("/static", app=_SecuredStatic(directory=STATIC_DIR), name="static"),
    ]
