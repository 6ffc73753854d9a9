"""Pre-LIVE decisions (R12): LIVE events, product sets, campaigns, showcase; and
the plan they make (:func:`plan_of`, what ``GET /api/plan`` lists).

Part of the room decider (:mod:`server.domain.room`), which has already checked
authorization and freshness; pure, with ``now`` as a parameter.
"""

from __future__ import annotations

from msgspec.structs import replace

from protocol import commands as c
from protocol.access import Plan
from protocol.errors import Code
from protocol.events import (
    CampaignSaved,
    EventBody,
    LiveEventCancelled,
    LiveEventEdited,
    LiveEventScheduled,
    ProductSetDeleted,
    ProductSetSaved,
    ShowcaseUpdated,
)
from protocol.messages import RoomCommand
from protocol.model import Family, RoomState
from server.domain.caps import MAX_PLANNED, MAX_SET_PRODUCTS, cap_reached
from server.domain.refusal import NOT_FOUND, Refusal

__all__ = ["MAX_PLANNED", "PLAN_FAMILIES", "decide_planning", "plan_of"]

PLAN_FAMILIES: frozenset[Family] = frozenset({"planning", "promotion"})
"""The families whose set-ups make the pre-LIVE plan: a reader needs one of them."""


def plan_of(s: RoomState, scopes: frozenset[Family]) -> Plan:
    """The room's pre-LIVE plan (R12), each section only if ``scopes`` covers the
    family whose commands change it (None otherwise)."""
    planning, promotion = "planning" in scopes, "promotion" in scopes
    return Plan(
        creator=s.creator,
        live_events=sorted(s.live_events.values(), key=lambda e: (e.starts_at, e.event_id))
        if planning else None,
        product_sets=[s.product_sets[k] for k in sorted(s.product_sets)] if planning else None,
        campaigns=[s.campaigns[k] for k in sorted(s.campaigns)] if planning else None,
        showcase=list(s.showcase) if planning else None,
        giveaways=[s.giveaways[k] for k in sorted(s.giveaways)] if promotion else None,
        flash_sales=[s.flash_sales[k] for k in sorted(s.flash_sales)] if promotion else None,
    )  # fmt: skip


def decide_planning(s: RoomState, cmd: RoomCommand, now: int) -> list[EventBody] | Refusal:
    """Pre-LIVE features (R12): LIVE events, product sets, campaigns, showcase
    (the room decider hands over every command it does not decide itself)."""
    match cmd:
        case c.LiveEventSchedule(event=ev):
            if ev.event_id in s.live_events:
                return Refusal(Code.ALREADY_EXISTS, "a LIVE event with this id exists")
            if len(s.live_events) >= MAX_PLANNED:
                return cap_reached("LIVE events", MAX_PLANNED)
            if ev.starts_at < now:
                return Refusal(Code.INVALID_ARGUMENT, "a LIVE event cannot start in the past")
            return [LiveEventScheduled(event=replace(ev, cancelled=False))]
        case c.LiveEventEdit(event_id=eid):
            current = s.live_events.get(eid)
            if current is None or current.cancelled:
                return NOT_FOUND
            edited = replace(
                current,
                title=current.title if cmd.title is None else cmd.title,
                starts_at=current.starts_at if cmd.starts_at is None else cmd.starts_at,
                duration_s=current.duration_s if cmd.duration_s is None else cmd.duration_s,
            )
            if edited.starts_at != current.starts_at and edited.starts_at < now:
                return Refusal(Code.INVALID_ARGUMENT, "a LIVE event cannot start in the past")
            return [] if edited == current else [LiveEventEdited(event=edited)]
        case c.LiveEventCancel(event_id=eid):
            current = s.live_events.get(eid)
            if current is None or current.cancelled:
                return NOT_FOUND
            return [LiveEventCancelled(event_id=eid)]
        case c.ProductSetSave(product_set=ps):
            if ps.set_id not in s.product_sets and len(s.product_sets) >= MAX_PLANNED:
                return cap_reached("product sets", MAX_PLANNED)
            # The list's type has the same bound: this is for commands made in-process,
            # which msgspec does not validate (the edge refuses a longer list itself).
            if len(ps.product_ids) > MAX_SET_PRODUCTS:
                return cap_reached("products in a product set", MAX_SET_PRODUCTS)
            return [ProductSetSaved(product_set=ps)]
        case c.ProductSetDelete(set_id=sid):
            if sid not in s.product_sets:
                return NOT_FOUND
            return [ProductSetDeleted(set_id=sid)]
        case c.CampaignSave(campaign=camp):
            if camp.campaign_id not in s.campaigns and len(s.campaigns) >= MAX_PLANNED:
                return cap_reached("campaigns", MAX_PLANNED)
            return [CampaignSaved(campaign=camp)]
        case c.ShowcaseUpdate(product_ids=ids):
            return [ShowcaseUpdated(product_ids=list(dict.fromkeys(ids)))]
    raise AssertionError(f"not a planning command: {cmd!r}")  # pragma: no cover
