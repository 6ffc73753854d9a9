"""The HTTP API end to end, for a console: whose refusals reach a creator's audit
trail (R16), the grants in force a creator can revoke (R5, R9) and the pre-LIVE
plan staff list (R12). A real app on a fake clock, as in :mod:`tests.test_api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from protocol.commands import (
    BagPin,
    CampaignSave,
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
from protocol.model import Actor, Campaign, FlashSale, Giveaway, LiveEvent, ProductSet
from server.app import create_app
from server.config import load_settings
from tests.lifespan import lifespan_running
from tests.test_api import AGENCY, CREATOR, DAY, OTHER_AGENCY, T0, Clock, Env, expect_error


@pytest.fixture(name="env")
async def running_env(tmp_path: Path) -> AsyncIterator[Env]:
    """A running app on a fresh data file (as :mod:`tests.test_api`'s ``env``)."""
    settings = load_settings({}, data_path=str(tmp_path / "db.sqlite"))
    clock = Clock()
    app = create_app(settings, clock=clock)
    async with lifespan_running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            yield Env(app, client, clock, settings)


async def trail(env: Env, creator: str = CREATOR) -> list[tuple[str, str, int | None]]:
    """The creator's audit trail as (actor id, action, code), newest first."""
    answer = await env.client.get("/api/audit", headers=env.creator(creator))
    assert answer.status_code == 200, answer.text
    return [(e["actor"]["id"], e["action"], e["code"]) for e in answer.json()["entries"]]


def unaudited(env: Env, source: str, code: Code) -> float:
    """How many refusals of strangers the metrics counted (source: room or access)."""
    value = env.runtime.metrics.registry.get_sample_value(
        "livepilot_unaudited_refusals_total", {"source": source, "code": code.name})
    return value or 0.0


def schedule(cid: str) -> LiveEventSchedule:
    """A pre-LIVE command to the creator's room."""
    return LiveEventSchedule(command_id=cid, room=CREATOR, event=LiveEvent(
        event_id=cid, title="Launch", starts_at=T0 + DAY))


# --- R16: whose refusals reach a creator's trail ----------------------------------------


async def test_a_strangers_refused_room_command_is_counted_not_audited(env: Env) -> None:
    """R16: staff of an agency not linked to the creator, and another creator, are
    refused without writing to the creator's trail: the refusal is counted instead."""
    eve = env.session(Actor(role="staff", id="eve", agency=OTHER_AGENCY))
    assert (await env.command(eve, schedule("c1")))["code"] == Code.NO_ACCESS
    other = env.session(Actor(role="creator", id="cr-2"))
    assert (await env.command(other, StartLive(command_id="c2", room=CREATOR)))[
        "code"] == Code.FORBIDDEN
    assert await trail(env) == []
    assert await trail(env, "cr-2") == []  # nor in the stranger's own
    assert unaudited(env, "room", Code.NO_ACCESS) == 1
    assert unaudited(env, "room", Code.FORBIDDEN) == 1


async def test_a_linked_agencys_refused_room_command_is_audited(env: Env) -> None:
    """R16, R10: staff of a linked agency - with access out of scope, or with access
    revoked and the link kept (R9) - have their refusals on the creator's trail."""
    await env.link(scopes=["planning"])
    ann = env.session(Actor(role="staff", id="ann", agency=AGENCY))
    assert (await env.command(ann, StartLive(command_id="c1", room=CREATOR)))[
        "code"] == Code.CREATOR_ONLY
    assert (await env.command(ann, BagPin(command_id="c2", room=CREATOR, product_id="p")))[
        "code"] == Code.OUT_OF_SCOPE
    revoked = await env.client.post("/api/revoke", json={"agency": AGENCY},
                                    headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    bob = env.session(Actor(role="staff", id="bob", agency=AGENCY))
    assert (await env.command(bob, schedule("c3")))["code"] == Code.NO_ACCESS
    assert (await trail(env))[:3] == [
        ("bob", "live_event_schedule", Code.NO_ACCESS),
        (CREATOR, "revoke_access", None),
        ("ann", "bag_pin", Code.OUT_OF_SCOPE),
    ]
    assert ("ann", "start_live", Code.CREATOR_ONLY) in await trail(env)
    assert unaudited(env, "room", Code.NO_ACCESS) == 0


async def test_a_strangers_refused_access_command_is_counted_not_audited(env: Env) -> None:
    """R16: access commands about a creator from callers with no relation to them
    (another creator answering, an unlinked agency asking for access) stay out of
    that creator's trail; the same agency's applied request is on it (R1, R14)."""
    sent = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    rid = sent.json()["request"]["request_id"]
    expect_error(await env.answer(rid, "accept", creator="cr-2"), 403, Code.FORBIDDEN)
    asked = await env.request({"type": "request_access", "creator": CREATOR},
                              agency=OTHER_AGENCY)
    expect_error(asked, 409, Code.NOT_LINKED)
    again = await env.request({"type": "request_link", "creator": CREATOR, "with_access": True})
    expect_error(again, 409, Code.REQUEST_PENDING)  # a pending request is not a link
    assert await trail(env) == [("ann", "request_link", None)]
    assert await trail(env, "cr-2") == []
    assert unaudited(env, "access", Code.FORBIDDEN) == 1
    assert unaudited(env, "access", Code.NOT_LINKED) == 1
    assert unaudited(env, "access", Code.REQUEST_PENDING) == 1


async def test_a_linked_agencys_refused_access_command_is_audited(env: Env) -> None:
    """R16: once linked, the agency's refused access commands are on the trail."""
    await env.link()
    again = await env.request({"type": "request_access", "creator": CREATOR})
    expect_error(again, 409, Code.ALREADY_GRANTED)
    assert (await trail(env))[0] == ("ann", "request_access", Code.ALREADY_GRANTED)
    assert unaudited(env, "access", Code.ALREADY_GRANTED) == 0


# --- R5, R9: the grants in force ------------------------------------------------------


async def grants(env: Env) -> list[dict[str, Any]]:
    """The creator's ``GET /api/grants``."""
    answer = await env.client.get("/api/grants", headers=env.creator())
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["grants"]
    return found


async def test_creator_lists_the_grants_in_force(env: Env) -> None:
    """R5, R9: the creator lists each agency holding LIVE Manager access - scopes,
    since when, the link's end date - and nothing else: not a link without access,
    not a revoked grant, not one past its link's end date."""
    assert await grants(env) == []
    rid = await env.link(scopes=["moderation", "bag"], ends_at=T0 + 30 * DAY)
    env.clock.advance(1000)
    await env.link(agency=OTHER_AGENCY, with_access=False)
    await env.link(agency="ag-3")
    env.clock.advance(1000)
    assert await grants(env) == [
        {"agency": AGENCY, "scopes": ["bag", "moderation"], "granted_at": T0,
         "ends_at": T0 + 30 * DAY, "link_id": rid, "request_id": rid},
        {"agency": "ag-3", "scopes": ["bag", "promotion", "billboard", "moderation", "planning"],
         "granted_at": T0 + 1000, "ends_at": None, "link_id": ANY, "request_id": ANY},
    ]
    revoked = await env.client.post("/api/revoke", json={"agency": "ag-3"},
                                    headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    assert [g["agency"] for g in await grants(env)] == [AGENCY]
    env.clock.advance(30 * DAY)  # the link's end date: access ends with it (R5)
    assert await grants(env) == []
    assert (await env.client.get("/api/grants", headers=env.creator("cr-2"))).json() == {
        "grants": []}


async def test_staff_cannot_list_a_creators_grants(env: Env) -> None:
    """R16: the grants are the creator's to read: staff are refused."""
    await env.link()
    expect_error(await env.client.get("/api/grants", headers=env.staff()), 403,
                 Code.CREATOR_ONLY)


# --- R12: the pre-LIVE plan -----------------------------------------------------------


PLAN_COMMANDS: list[RoomCommand] = [
    LiveEventSchedule(command_id="p1", room=CREATOR, event=LiveEvent(
        event_id="late", title="Encore", starts_at=T0 + 2 * DAY)),
    LiveEventSchedule(command_id="p2", room=CREATOR, event=LiveEvent(
        event_id="soon", title="Launch", starts_at=T0 + DAY)),
    LiveEventCancel(command_id="p3", room=CREATOR, event_id="late"),
    ProductSetSave(command_id="p4", room=CREATOR, product_set=ProductSet(
        set_id="summer", name="Summer", product_ids=["sku-1", "sku-2"])),
    CampaignSave(command_id="p5", room=CREATOR, campaign=Campaign(
        campaign_id="mega", name="Mega sale", discount_pct=20)),
    ShowcaseUpdate(command_id="p6", room=CREATOR, product_ids=["sku-2", "sku-1"]),
    GiveawaySetUp(command_id="p7", room=CREATOR, giveaway=Giveaway(
        giveaway_id="g1", product_id="sku-1", winners=3)),
    FlashSaleSetUp(command_id="p8", room=CREATOR, sale=FlashSale(
        sale_id="fs1", product_id="sku-2", price_cents=990, stock=50)),
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
    ann = env.session(Actor(role="staff", id="ann", agency=AGENCY))
    for command in PLAN_COMMANDS:
        assert (await env.command(ann, command))["type"] == "ack"
    listed = await plan(env, env.staff(), f"?creator={CREATOR}")
    assert listed["creator"] == CREATOR
    assert [(e["event_id"], e["cancelled"]) for e in listed["live_events"]] == [
        ("soon", False), ("late", True)]
    assert [(s["set_id"], s["product_ids"]) for s in listed["product_sets"]] == [
        ("summer", ["sku-1", "sku-2"])]
    assert [(c["campaign_id"], c["discount_pct"]) for c in listed["campaigns"]] == [
        ("mega", 20)]
    assert listed["showcase"] == ["sku-2", "sku-1"]
    assert [(g["giveaway_id"], g["winners"], g["deployed_at"]) for g in listed["giveaways"]] == [
        ("g1", 3, None)]
    assert [(f["sale_id"], f["stock"], f["starts_at"]) for f in listed["flash_sales"]] == [
        ("fs1", 50, None)]
    assert await plan(env, env.creator()) == listed


async def test_the_plan_shows_staff_only_what_their_scopes_cover(env: Env) -> None:
    """R12: a grant for planning alone shows no giveaways or flash sales (null), as
    their commands would be refused; a grant covering neither family is refused."""
    await env.link(scopes=["planning"])
    await env.link(agency=OTHER_AGENCY, scopes=["bag", "moderation"])
    me = env.session(Actor(role="creator", id=CREATOR))
    for command in PLAN_COMMANDS:
        assert (await env.command(me, command))["type"] == "ack"
    scoped = await plan(env, env.staff(), f"?creator={CREATOR}")
    assert (scoped["giveaways"], scoped["flash_sales"]) == (None, None)
    assert [e["event_id"] for e in scoped["live_events"]] == ["soon", "late"]
    outside = await env.client.get(f"/api/plan?creator={CREATOR}",
                                   headers=env.staff("eve", OTHER_AGENCY))
    expect_error(outside, 403, Code.OUT_OF_SCOPE)


async def test_the_plan_is_refused_without_access(env: Env) -> None:
    """R12: staff with no access (never linked, or revoked) are refused, staff must
    name the creator, and a creator reads only their own plan."""
    url = f"/api/plan?creator={CREATOR}"
    expect_error(await env.client.get(url, headers=env.staff()), 403, Code.NO_ACCESS)
    await env.link()
    assert (await plan(env, env.staff(), f"?creator={CREATOR}"))["live_events"] == []
    revoked = await env.client.post("/api/revoke", json={"agency": AGENCY},
                                    headers=env.creator())
    assert revoked.status_code == 200, revoked.text
    expect_error(await env.client.get(url, headers=env.staff()), 403, Code.NO_ACCESS)
    expect_error(await env.client.get("/api/plan", headers=env.staff()), 400,
                 Code.INVALID_ARGUMENT)
    expect_error(await env.client.get("/api/plan?creator=cr-2", headers=env.creator()), 403,
                 Code.FORBIDDEN)


# --- R14: notification ids -------------------------------------------------------------


async def test_the_inbox_keeps_every_notification_for_the_longest_ids(env: Env) -> None:
    """R14: with a creator id and agency ids as long as an Id may be (128), every
    notification lands in the inbox: none is cut short into another's id."""
    creator = "c" * 127 + "1"
    agencies = ["a" * 127 + "1", "a" * 127 + "2"]
    sent = [await env.request({"type": "request_link", "creator": creator, "with_access": True},
                              agency=agency) for agency in agencies]  # in the same millisecond
    assert [answer.status_code for answer in sent] == [201, 201]
    accepted = await env.answer(sent[0].json()["request"]["request_id"], "accept",
                                creator=creator)
    assert accepted.status_code == 200, accepted.text
    ann = env.session(Actor(role="staff", id="ann", agency=agencies[0]))
    for n in range(12):
        command = LiveEventSchedule(command_id=f"s{n}", room=creator, event=LiveEvent(
            event_id=f"e{n}", title="Show", starts_at=T0 + DAY))
        assert (await env.command(ann, command))["type"] == "ack"
    answer = await env.client.get("/api/notifications", headers=env.creator(creator))
    notes = answer.json()["notifications"]
    assert sorted(n["kind"] for n in notes) == ["agency_changed"] * 2 + ["agency_created"] * 12
    assert len({n["notification_id"] for n in notes}) == 14
