"""Helpers of the browser tests: open the two pages signed in, read their state, check frames."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from protocol.schema import json_schema
from tests.e2e.conftest import Server

TIMEOUT_MS = 10_000
CREATOR = "cr-mia"
AGENCY = "ag-north"
STAFF = "st-lee"

_schema = json_schema()
_client_frames = Draft202012Validator({**_schema, "$ref": "#/$defs/ClientMessage"})


def http_base(server: Server) -> str:
    return server.url.replace("ws://", "http://").removesuffix("/ws")


class FrameLog:
    """Every frame a page sends on its socket, each checked against the JSON Schema."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.invalid: list[str] = []

    def watch(self, page: Any) -> None:
        def on_socket(ws: Any) -> None:
            ws.on("framesent", self._sent)

        page.on("websocket", on_socket)

    def _sent(self, payload: str | bytes) -> None:
        frame = json.loads(payload)
        self.sent.append(frame)
        errors = [e.message for e in _client_frames.iter_errors(frame)]
        if errors:
            self.invalid.append(f"{frame.get('type')}: {errors[0]}")


async def open_page(
    browser: Any,
    server: Server,
    path: str,
    token: str,
    *,
    width: int = 1280,
    height: int = 800,
    frames: FrameLog | None = None,
) -> Any:
    """A new page at ``path`` signed in with ``token`` (passed in the fragment), connected."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    if frames is not None:
        frames.watch(page)
    await page.goto(f"{http_base(server)}{path}#token={token}")
    await page.wait_for_selector("#conn[data-state=open]")
    return page


async def creator_page(browser: Any, server: Server, **kw: Any) -> Any:
    return await open_page(browser, server, "/creator", server.token(creator=CREATOR), **kw)


async def console_page(browser: Any, server: Server, **kw: Any) -> Any:
    return await open_page(
        browser, server, "/console", server.token(agency=AGENCY, staff=STAFF), **kw
    )


async def go_live(creator: Any) -> None:
    await creator.click("#go-live")
    await creator.wait_for_selector("#my-status.s-live")


async def grant_access(console: Any, creator: Any, *, drop: tuple[str, ...] = ()) -> None:
    """Request link + access on the console; accept on the creator page, unticking ``drop``."""
    await console.fill("#new-creator", CREATOR)
    await console.click("#add-creator button[type=submit]")
    await console.wait_for_selector(f"#creators tr[data-creator={CREATOR}][data-status=requested]")
    request = creator.locator("#requests li").first
    await request.wait_for()
    for scope in drop:
        await request.locator(f"input[value={scope}]").uncheck()
    await request.get_by_role("button", name="Accept").click()
    await creator.wait_for_selector("#requests-list >> text=No request waiting.")


async def enter_room(console: Any) -> None:
    await console.get_by_role("button", name="Refresh").click()
    await console.click(f"#creators tr[data-creator={CREATOR}] >> text=Enter Live Manager")
    await console.wait_for_selector("#live-status.s-live")


async def add_product(
    console: Any, pid: str, *, stock: int = 10, category: str = "apparel", price: str = "12.50"
) -> None:
    await console.fill("#add-pid", pid)
    await console.fill("#add-title", f"Product {pid}")
    await console.fill("#add-category", category)
    await console.fill("#add-price", price)
    await console.fill("#add-stock", str(stock))
    await console.click("#bag-add button[type=submit]")
    await console.wait_for_selector(f"#bag li[data-product={pid}]")


async def bag_order(page: Any, selector: str = "#bag li") -> list[str]:
    order: list[str] = await page.eval_on_selector_all(
        selector, "els => els.map(e => e.dataset.product)"
    )
    return order
