"""The pre- and after-LIVE reads a creator and their staff share
(server/api_creator.py): post-LIVE figures and account health, the pre-LIVE plan
(R12), on a real app with a fake clock (tests/api_env.py)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.commands import (
    CampaignSave,
    EndLive,
    FeedOrder,
    FeedViewers,
    FeedViolation,
    FlashSaleSetUp,
    GiveawaySetUp,
    LiveEventCancel,
    LiveEventSchedule,
    ProductSetSave,
    RoomCommand,
    ShowcaseUpdate,
    StartLive,
)
from protocol.errors import Code
from protocol.model import Campaign, FlashSale, Giveaway, LiveEvent, ProductSet, Viewer, Violation
from server.hub.session import Session
from tests.actors import AGENCY, ANN, CREATOR, CREATOR_ID, OTHER_AGENCY, OTHER_CREATOR_ID
from tests.api_env import DAY, T0, Env, env_opener, expect_error, running_env

_ = (env_opener, running_env)  # the fixtures, used by name


# --- post-LIVE figures and account health (R12) -------------------------------------------


async def run_a_live(env: Env) -> Session:
    """The creator goes live, sees viewers and orders, a violation, and ends."""
    me = env.session(CREATOR)
    buyer = Viewer(unique_id="v1")
    assert (await env.command(me, StartLive(command_id="s", room=CREATOR_ID, title="Hi")))[
        "type"
    ] == "ack"
    env.clock.advance(60_000)
    for cmd in (
        FeedViewers(command_id="f1", room=CREATOR_ID, total=40),
        FeedOrder(
            command_id="f2",
            room=CREATOR_ID,
            order_id="o1",
            user=buyer,
            product_id="p1",
            quantity=2,
            amount_cents=3000,
        ),
        FeedViolation(
            command_id="f3",
            room=CREATOR_ID,
            violation=Violation(
                violation_id="v-1", policy="Prohibited product", severity="medium", at=env.clock()
            ),
        ),
    ):
        assert (await env.command(me, cmd))["type"] == "ack"
    return me


async def test_lives_current_then_ended(env: Env) -> None:
    """R12: the running LIVE's figures, then post-LIVE figures once it ends."""
    me = await run_a_live(env)
    during = (await env.client.get("/api/lives", headers=env.creator())).json()
    assert during["status"] == "live"
    assert (during["current"]["orders"], during["current"]["gmv_cents"]) == (1, 3000)
    assert during["lives"] == []
    env.clock.advance(60_000)
    assert (await env.command(me, EndLive(command_id="e", room=CREATOR_ID)))["type"] == "ack"
    after = (await env.client.get("/api/lives", headers=env.creator())).json()
    assert (after["status"], after["current"]) == ("offline", None)
    [live] = after["lives"]
    assert (live["orders"], live["units"], live["gmv_cents"], live["peak_viewers"]) == (
        1,
        2,
        3000,
        40,
    )
    assert live["violations"] == 1
    assert live["conversion"] == pytest.approx(1 / 40)
    assert live["ended_at"] == T0 + 120_000


async def test_account_health(env: Env) -> None:
    """R12: account health lists every reported violation."""
    await run_a_live(env)
    health = await env.client.get("/api/health", headers=env.creator())
    assert health.status_code == 200, health.text
    assert [(v["violation_id"], v["severity"]) for v in health.json()["violations"]] == [
        ("v-1", "medium")
    ]


async def test_staff_read_figures_only_with_access(env: Env) -> None:
    """R12: staff read a creator's figures and health with access, not without."""
    await run_a_live(env)
    expect_error(
        await env.client.get(f"/api/health?creator={CREATOR_ID}", headers=env.staff()),
        403,
        Code.NO_ACCESS,
    )
    await env.link()
    health = await env.client.get(f"/api/health?creator={CREATOR_ID}", headers=env.staff())
    assert [v["violation_id"] for v in health.json()["violations"]] == ["v-1"]
    lives = await env.client.get(f"/api/lives?creator={CREATOR_ID}", headers=env.staff())
    assert lives.json()["status"] == "live"
    expect_error(
        await env.client.get("/api/lives", headers=env.staff()), 400, Code.INVALID_ARGUMENT
    )
    stranger = await env.client.get(f"/api/lives?creator={OTHER_CREATOR_ID}", headers=env.creator())
    expect_error(stranger, 403, Code.FORBIDDEN)


# --- R12: the pre-LIVE plan ---------------------------------------------------------------


PLAN_COMMANDS: list[RoomCommand] = [
    LiveEventSchedule(
        command_id="p1",
        room=CREATOR_ID,
        event=LiveEvent(event_id="late", title="Encore", starts_at=T0 + 2 * DAY),
    ),
    LiveEventSchedule(
        command_id="p2",
        room=CREATOR_ID,
        event=LiveEvent(event_id="soon", title="Launch", starts_at=T0 + DAY),
    ),
    LiveEventCancel(command_id="p3", room=CREATOR_ID, event_id="late"),
    ProductSetSave(
        command_id="p4",
        room=CREATOR_ID,
        product_set=ProductSet(set_id="summer", name="Summer", product_ids=["sku-1", "sku-2"]),
    ),
    CampaignSave(
        command_id="p5",
        room=CREATOR_ID,
        campaign=Campaign(campaign_id="mega", name="Mega sale", discount_pct=20),
    ),
    ShowcaseUpdate(command_id="p6", room=CREATOR_ID, product_ids=["sku-2", "sku-1"]),
    GiveawaySetUp(
        command_id="p7",
        room=CREATOR_ID,
        giveaway=Giveaway(giveaway_id="g1", product_id="sku-1", winners=3),
    ),
    FlashSaleSetUp(
        command_id="p8",
        room=CREATOR_ID,
        sale=FlashSale(sale_id="fs1", product_id="sku-2", price_cents=990, stock=50),
    ),
]


async def plan(env: Env, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    """``GET /api/plan``, which must answer 200."""
    answer = await env.client.get(f"/api/plan{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_staff_with_access_list_the_pre_live_plan(env: Env) -> None:
    """R12: staff with access list what they set up without a live stream - LIVE
    events (by start time, the cancelled flagged), product sets, campaigns, showcase,
    giveaways and flash sales - and the creator lists the same."""
    await env.link(scopes=["planning", "promotion"])
    ann = env.session(ANN)
    for command in PLAN_COMMANDS:
        assert (await env.command(ann, command))["type"] == "ack"
    listed = await plan(env, env.staff(), f"?creator={CREATOR_ID}")
    assert listed["creator"] == CREATOR_ID
    assert [(e["event_id"], e["cancelled"]) for e in listed["live_events"]] == [
        ("soon", False),
        ("late", True),
    ]
    assert [(s["set_id"], s["product_ids"]) for s in listed["product_sets"]] == [
        ("summer", ["sku-1", "sku-2"])
    ]
    assert [(c["campaign_id"], c["discount_pct"]) for c in listed["campaigns"]] == [("mega", 20)]
    assert listed["showcase"] == ["sku-2", "sku-1"]
    assert [(g["giveaway_id"], g["winners"], g["deployed_at"]) for g in listed["giveaways"]] == [
        ("g1", 3, None)
    ]
    assert [(f["sale_id"], f["stock"], f["starts_at"]) for f in listed["flash_sales"]] == [
        ("fs1", 50, None)
    ]
    assert await plan(env, env.creator()) == listed


async def test_the_plan_shows_staff_only_what_their_scopes_cover(env: Env) -> None:
    """R12: a grant for planning alone shows no giveaways or flash sales (null), as
    their commands would be refused; a grant covering neither family is refused."""
    await env.link(scopes=["planning"])
    await env.link(agency=OTHER_AGENCY, scopes=["bag", "moderation"])
    me = env.session(CREATOR)
    for command in PLAN_COMMANDS:
        assert (await env.command(me, command))["type"] == "ack"
    scoped = await plan(env, env.staff(), f"?creator={CREATOR_ID}")
    assert (scoped["giveaways"], scoped["flash_sales"]) == (None, None)
    assert [e["event_id"] for e in scoped["live_events"]] == ["soon", "late"]
    outside = await env.client.get(
        f"/api/plan?creator={CREATOR_ID}", headers=env.staff("eve", OTHER_AGENCY)
    )
    expect_error(outside, 403, Code.OUT_OF_SCOPE)


async def test_the_plan_is_refused_without_access(env: Env) -> None:
    """R12: staff with no access (never linked, or revoked) are refused, staff must
    name the creator, and a creator reads only their own plan."""
    url = f"/api/plan?creator={CREATOR_ID}"
    expect_error(await env.client.get(url, headers=env.staff()), 403, Code.NO_ACCESS)
    await env.link()
    assert (await plan(env, env.staff(), f"?creator={CREATOR_ID}"))["live_events"] == []
    revoked = await env.client.post("/api/revoke", json={"agency": AGENCY}, headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    expect_error(await env.client.get(url, headers=env.staff()), 403, Code.NO_ACCESS)
    expect_error(await env.client.get("/api/plan", headers=env.staff()), 400, Code.INVALID_ARGUMENT)
    stranger = await env.client.get(f"/api/plan?creator={OTHER_CREATOR_ID}", headers=env.creator())
    expect_error(stranger, 403, Code.FORBIDDEN)
