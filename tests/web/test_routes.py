"""The consoles are served by the hub with a strict CSP, and may open its socket."""

from __future__ import annotations

import httpx
from websockets.asyncio.client import connect

from protocol.messages import SUBPROTOCOL_JSON
from tests.e2e.conftest import Server
from tests.e2e.test_handshake import handshake_status


async def test_pages_and_modules_are_served_with_a_strict_csp(server: Server) -> None:
    """/console, /creator and /static/* answer with a CSP allowing only the hub's own
    scripts (no inline script) and sockets; a missing file is 404."""
    base = server.url.replace("ws://", "http://").removesuffix("/ws")
    async with httpx.AsyncClient(base_url=base) as http:
        for path, kind in (
            ("/console", "text/html"),
            ("/creator", "text/html"),
            ("/static/livepilot.js", "javascript"),
            ("/static/protocol.js", "javascript"),
            ("/static/style.css", "text/css"),
        ):
            response = await http.get(path)
            assert response.status_code == 200, path
            assert kind in response.headers["content-type"]
            csp = response.headers["content-security-policy"]
            assert "script-src 'self';" in csp
            assert "default-src 'self'" in csp
            assert "connect-src 'self' ws: wss:" in csp
            assert "unsafe-inline" not in csp
            assert "unsafe-eval" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
        assert (await http.get("/static/nope.js")).status_code == 404
        assert (await http.get("/", follow_redirects=False)).headers["location"] == "/console"


async def test_the_hubs_own_origin_may_open_the_socket(server: Server) -> None:
    """With the default (empty) allowlist, a page of the hub itself connects; a page of
    any other origin is still refused before accept."""
    host = server.url.removeprefix("ws://").removesuffix("/ws")
    sub = [SUBPROTOCOL_JSON]
    assert await handshake_status(server, subprotocols=sub, origin=f"http://{host}") is None
    assert await handshake_status(server, subprotocols=sub, origin="http://evil.example") == 403
    assert (
        await handshake_status(server, subprotocols=sub, origin=f"http://{host}.evil.example")
        == 403
    )
    async with connect(server.url, subprotocols=sub, origin=f"http://{host}"):  # type: ignore[arg-type]
        pass
