"""The consoles' flows in a real browser (headless chromium) against a real hub."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from server.config import Settings
from tests.e2e.conftest import TIMEOUT, Server, run_server
from tests.web.pages import (
    AGENCY,
    CREATOR,
    FrameLog,
    add_product,
    bag_order,
    console_page,
    creator_page,
    enter_room,
    go_live,
    grant_access,
)

pytestmark = pytest.mark.browser


async def _room_ready(
    browser: Any, server: Server, frames: FrameLog | None = None, drop: tuple[str, ...] = ()
) -> tuple[Any, Any]:
    creator = await creator_page(browser, server)
    console = await console_page(browser, server, frames=frames)
    await go_live(creator)
    await grant_access(console, creator, drop=drop)
    await enter_room(console)
    return console, creator


async def _log_types(page: Any, var: str) -> list[tuple[int, str]]:
    log: list[list[Any]] = await page.evaluate(
        f"() => window.{var}.model.log.map(e => [e.seq, e.type])"
    )
    return [(seq, kind) for seq, kind in log]


async def test_request_accept_enter_then_bag_changes_reach_the_creator_in_order(
    browser: Any,
    server: Server,
) -> None:
    """Request on the console, accept with scopes on the creator page, enter, add, pin and
    reorder (by keyboard and by drag): the creator page shows each change, in order."""
    # R1 R5 R13 R15 H2
    frames = FrameLog()
    console, creator = await _room_ready(browser, server, frames, drop=("billboard",))
    grant = server.runtime.access.grant_for(AGENCY, CREATOR, server.clock())
    assert grant is not None
    assert "billboard" not in grant.scopes
    assert "bag" in grant.scopes
    for pid in ("sku-a", "sku-b", "sku-c"):
        await add_product(console, pid)
    await console.click("#bag li[data-product=sku-b] >> text=Pin")
    await console.wait_for_selector("#bag li[data-product=sku-b].pinned")
    # Keyboard: Alt+ArrowUp on sku-c's handle moves it up one place.
    await console.focus("[data-key=handle-sku-c]")
    await console.keyboard.press("Alt+ArrowUp")
    await console.wait_for_function(
        "() => [...document.querySelectorAll('#bag li')].map(e => e.dataset.product)"
        ".join() === 'sku-a,sku-c,sku-b'"
    )
    # Drag: sku-a dropped on the last item goes to the last place.
    await console.drag_and_drop("#bag li[data-product=sku-a]", "#bag li[data-product=sku-b]")
    await console.wait_for_function(
        "() => [...document.querySelectorAll('#bag li')].map(e => e.dataset.product)"
        ".join() === 'sku-c,sku-b,sku-a'"
    )
    await creator.wait_for_function(
        "() => [...document.querySelectorAll('#creator-bag li')].map(e => e.dataset.product)"
        ".join() === 'sku-c,sku-b,sku-a'"
    )
    assert await bag_order(creator, "#creator-bag li") == ["sku-c", "sku-b", "sku-a"]
    assert await creator.get_attribute("#creator-bag li[data-product=sku-b]", "class") == "pinned"
    seen = await _log_types(creator, "lpCreator")
    seqs = [seq for seq, _ in seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gap-free, in order (H2)
    changes = [kind for _, kind in seen if kind.startswith("product_")]
    assert changes == ["product_added"] * 3 + ["product_pinned"] + ["product_moved"] * 2
    mine = await _log_types(console, "lpConsole")
    assert mine == [s for s in seen if s[0] >= mine[0][0]]  # the same events, same order
    # A command outside the granted scopes is refused with the table's words.
    await console.fill("#billboard-text", "Summer sale")
    await console.click("text=Deploy billboard")
    await console.wait_for_selector(
        "#status[data-kind=error] >> text=The grant does not cover this command family"
    )
    assert frames.sent
    assert frames.invalid == []
    assert console.errors == []
    assert creator.errors == []


async def test_flash_sale_stock_falls_with_simulated_orders_never_below_zero(
    browser: Any,
    server: Server,
) -> None:
    """A deployed flash sale's stock left falls with each simulated order and stops at 0:
    the order past it is refused (R13: a flash sale cannot oversell)."""
    # R13
    console, creator = await _room_ready(browser, server)
    await add_product(console, "sku-serum", stock=50)
    await console.fill("#fs-product", "sku-serum")
    await console.fill("#fs-stock", "3")
    await console.click("#flash-sale-setup button[type=submit]")
    sale = console.locator("#flash-sales li").first
    await sale.get_by_role("button", name="Deploy flash sale").click()
    await console.wait_for_selector("#flash-sales .countdown")
    sale_id = await sale.get_attribute("data-sale")
    left = console.locator(f"#sale-left-{sale_id}")
    assert await left.get_attribute("data-left") == "3"
    await creator.fill("#sim-product", "sku-serum")
    await creator.fill("#sim-sale", str(sale_id))
    for expected in ("2", "1", "0"):
        await creator.click("#sim-order")
        await console.wait_for_selector(f"#sale-left-{sale_id}[data-left='{expected}']")
    await creator.click("#sim-order")  # one more than the stock
    # Sold out ends the sale, so the order is refused SOLD_OUT or SALE_NOT_ACTIVE.
    await creator.wait_for_selector(
        "#status[data-kind=error] >> text=/not enough stock left|flash sale is not running/"
    )
    assert await left.get_attribute("data-left") == "0"
    state = (await server.runtime.hub.room(CREATOR)).state
    assert state.flash_sales[str(sale_id)].sold == 3


async def test_muting_an_account_hides_its_comments(browser: Any, server: Server) -> None:
    """Mute a viewer from the comment stream: their next comment shows as hidden (R13)."""
    # R13
    console, creator = await _room_ready(browser, server)
    await creator.select_option("#sim-user", "fan_leo")
    await creator.fill("#sim-text", "first!")
    await creator.click("#sim-comment")
    comment = console.locator("#comments li[data-user=fan_leo]").first
    await comment.wait_for()
    assert await comment.get_attribute("data-hidden") == ""
    await console.select_option("#mod-duration", "3600")
    await comment.get_by_role("button", name="Mute Leo").click()
    await console.wait_for_selector("#moderated >> text=fan_leo muted")
    await creator.fill("#sim-text", "spam spam")
    await creator.click("#sim-comment")
    await console.wait_for_selector(
        "#comments li[data-user=fan_leo][data-hidden=muted] >> text=spam spam"
    )
    until = (await server.runtime.hub.room(CREATOR)).state.muted["fan_leo"]
    assert until - server.clock() > 3000 * 1000  # the chosen hour, not the 5-minute default


async def test_a_forged_start_live_from_the_console_is_refused(
    browser: Any,
    server: Server,
) -> None:
    """The console has no start/end control; a start_live frame forged from its page is
    refused CREATOR_ONLY and changes nothing (R10)."""
    # R10
    console, _ = await _room_ready(browser, server)
    assert await console.locator("button", has_text="LIVE").count() == 0
    assert await console.locator("#go-live, #end-live").count() == 0
    seq = (await server.runtime.hub.room(CREATOR)).state.seq
    code = await console.evaluate(
        """room => window.lpConsole.client.command("start_live", {room, title: "hijack"})
             .then(() => "applied", e => e.code)""",
        CREATOR,
    )
    assert code == 201
    ended = await console.evaluate(
        """room => window.lpConsole.client.command("end_live", {room})
             .then(() => "applied", e => e.code)""",
        CREATOR,
    )
    assert ended == 201
    state = (await server.runtime.hub.room(CREATOR)).state
    assert state.status == "live"
    assert state.seq == seq


async def test_revoke_on_the_creator_page_ends_the_console_room_within_a_second(
    browser: Any,
    server: Server,
) -> None:
    """Revoking on the creator page: the console says "access ended" within 1 s and no
    longer shows the room (R6, R9)."""
    # R6 R9
    console, creator = await _room_ready(browser, server)
    await creator.fill("#end-agency", AGENCY)
    started = time.monotonic()
    await creator.click("#end-access button[type=submit]")
    await console.wait_for_selector("#access-ended", timeout=5000)
    assert time.monotonic() - started < 1.0
    assert await console.locator("#panel-bag, #bag, #comments").count() == 0
    assert "Access ended" in await console.inner_text("#access-ended")


async def test_the_console_resumes_after_a_server_restart_without_reload(
    browser: Any,
    make_settings: Callable[..., Settings],
) -> None:
    """The hub restarts: the console reconnects and resumes by itself, without a page
    reload, and has every event since, gap-free (H2, H3)."""
    # H2 H3
    settings = make_settings()
    frames = FrameLog()
    async with run_server(settings) as first:
        console, creator = await _room_ready(browser, first, frames)
        await add_product(console, "sku-one")
        await console.evaluate("() => { window.notReloaded = true; }")
        await creator.close()
    await console.wait_for_selector("#conn[data-state=reconnecting]")
    async with run_server(settings) as second:
        # While the console is still away, the creator's own client adds events.
        from protocol.commands import FeedComment, FeedViewers
        from protocol.messages import Ack
        from protocol.model import Viewer
        from tests.e2e.conftest import raw_client

        async with raw_client(second, second.token(creator=CREATOR)) as raw:
            for i in range(3):
                await raw.send(
                    FeedComment(
                        command_id=f"r-{i}",
                        room=CREATOR,
                        comment_id=f"rc-{i}",
                        user=Viewer(unique_id="fan_ana"),
                        content=f"back {i}",
                    )
                )
                await raw.expect(Ack)
            await raw.send(FeedViewers(command_id="r-v", room=CREATOR, total=77))
            await raw.expect(Ack)
        with anyio.fail_after(TIMEOUT):
            await console.wait_for_selector("#conn[data-state=open]")
            await console.wait_for_selector("#fig-viewers >> text=77")
        assert await console.evaluate("() => window.notReloaded === true")
        log = await _log_types(console, "lpConsole")
        seqs = [seq for seq, _ in log]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        last = (await second.runtime.hub.room(CREATOR)).state.seq
        assert seqs[-1] == last
        assert [k for _, k in log].count("comment_posted") >= 3
        sent = [f["type"] for f in frames.sent if f["type"] in ("join", "resume")]
        assert sent[0] == "join"
        assert "resume" in sent[1:]
        assert "join" not in sent[1:]
        assert frames.invalid == []
        await console.close()
