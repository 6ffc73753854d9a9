"""Fold room events into room state: ``evolve(state, event) -> state``.

Pure and total: every event the decider can produce is applied here and
nowhere else, so replaying a room's log (from a snapshot or from the start)
rebuilds exactly the state the live room had. Only the collections an event
touches are copied; everything else is shared with the previous state.
"""

from __future__ import annotations

from typing import cast

from msgspec.structs import replace

from protocol.events import (
    BillboardDeployed,
    BillboardTakenDown,
    CampaignSaved,
    CommentPosted,
    CommentSettingsChanged,
    CreatorNotified,
    EventBody,
    FlashSaleDeployed,
    FlashSaleEnded,
    FlashSaleReady,
    Followed,
    GiftSent,
    GiveawayDeployed,
    GiveawayEnded,
    GiveawayReady,
    LiveEnded,
    LiveEventCancelled,
    LiveEventEdited,
    LiveEventScheduled,
    LiveStarted,
    OrderPlaced,
    ProductAdded,
    ProductDeleted,
    ProductMoved,
    ProductPinned,
    ProductSetDeleted,
    ProductSetSaved,
    ProductUnpinned,
    ShowcaseUpdated,
    Subscribed,
    UserBlocked,
    UserMuted,
    UserUnblocked,
    UserUnmuted,
    ViewersChanged,
    ViolationReported,
)
from protocol.messages import Event
from protocol.model import TOTAL_MAX, Family, LiveSummary, MinuteBucket, RoomState

__all__ = ["evolve", "expire", "family_of", "new_room", "plus"]

_FAMILY: dict[type[EventBody], Family] = {
    LiveStarted: "live", LiveEnded: "live",
    ProductAdded: "bag", ProductDeleted: "bag", ProductPinned: "bag",
    ProductUnpinned: "bag", ProductMoved: "bag",
    GiveawayReady: "promotion", GiveawayDeployed: "promotion", GiveawayEnded: "promotion",
    FlashSaleReady: "promotion",
    FlashSaleDeployed: "promotion", FlashSaleEnded: "promotion",
    BillboardDeployed: "billboard", BillboardTakenDown: "billboard",
    CommentSettingsChanged: "moderation", UserMuted: "moderation", UserUnmuted: "moderation",
    UserBlocked: "moderation", UserUnblocked: "moderation",
    LiveEventScheduled: "planning", LiveEventEdited: "planning", LiveEventCancelled: "planning",
    ProductSetSaved: "planning", ProductSetDeleted: "planning", CampaignSaved: "planning",
    ShowcaseUpdated: "planning",
}  # fmt: skip
"""Which family's version an event bumps (H5). Feed events and notifications bump
none: a stream of comments must not make a staff member's bag move stale."""


_ACTIVITY: frozenset[type[EventBody]] = frozenset(
    {CommentPosted, Subscribed, Followed, GiftSent, ViewersChanged, CreatorNotified}
)
"""Events that change no field of the state (the LIVE's figures aside: ``_measure``)."""


def family_of(body: EventBody) -> Family | None:
    """The command family whose version this event advances, if any."""
    return _FAMILY.get(type(body))


def new_room(room: str, creator: str) -> RoomState:
    """An empty, offline room owned by ``creator``."""
    return RoomState(room=room, creator=creator)


def evolve(state: RoomState, event: Event) -> RoomState:
    """Apply one logged event to the state it was decided against."""
    body = event.body
    changes = _apply(state, body, event.at)
    family = _FAMILY.get(type(body))
    if family is not None:
        changes["versions"] = {**state.versions, family: event.seq}
    if isinstance(body, LiveEnded | LiveStarted):
        # Ending the LIVE also clears the pin, the billboard and running giveaways;
        # starting one drops the promotions of the last: those families moved on, so
        # edits decided before it are stale (H5).
        moved = [
            fam
            for fam, field in (
                ("bag", "pinned"),
                ("billboard", "billboard"),
                ("promotion", "giveaways"),
                ("promotion", "flash_sales"),
            )
            if changes.get(field, getattr(state, field)) != getattr(state, field)
        ]
        changes["versions"] = {
            **state.versions,
            "live": event.seq,
            **dict.fromkeys(moved, event.seq),
        }
    if state.current is not None and "current" not in changes:
        current = _measure(state.current, body, event.at)
        if current is not state.current:
            changes["current"] = current
    if state.muted or state.blocked:
        _expire_into(changes, state, event.at)
    return replace(state, seq=event.seq, **changes)


def plus(total: int, n: int) -> int:
    """``total + n``, saturated at :data:`~protocol.model.TOTAL_MAX` (decision 0017):
    a running sum stays within what its type holds, however large the values fed."""
    return total + n if total + n <= TOTAL_MAX else TOTAL_MAX


def expire(entries: dict[str, int], at: int) -> dict[str, int]:
    """Mutes or blocks without those ended by ``at``: the same dict if none has.

    Entries are kept earliest end first (:func:`_put`), so when the first has not
    ended, none has: the check every event makes is O(1).
    """
    if not entries or next(iter(entries.values())) > at:
        return entries
    return {uid: until for uid, until in entries.items() if until > at}


def _expire_into(changes: dict[str, object], state: RoomState, at: int) -> None:
    """An ended mute or block leaves the state with the first event folded at or
    after its end (``at`` is in the event, so a replay prunes the same entries).

    Not a change of the moderation family (no version bump, H5): the decider
    already treats an ended entry as absent."""
    for field, current in (("muted", state.muted), ("blocked", state.blocked)):
        entries = cast("dict[str, int]", changes.get(field, current))
        kept = expire(entries, at)
        if kept is not entries:
            changes[field] = kept


def _put(entries: dict[str, int], uid: str, until: int) -> dict[str, int]:
    """``entries`` with ``uid`` ending at ``until``, still ordered earliest end first."""
    rest = {k: v for k, v in entries.items() if k != uid}
    if rest and until < next(reversed(rest.values())):
        # Shorter than the last one's: rare (durations mostly repeat), and a sort of
        # an already ordered list plus one is linear.
        return dict(sorted([*rest.items(), (uid, until)], key=lambda entry: entry[1]))
    rest[uid] = until
    return rest


def _apply(state: RoomState, body: EventBody, at: int) -> dict[str, object]:
    """The fields of ``state`` that ``body`` replaces (metrics aside)."""
    # The busiest events first: a match tries its cases in turn (~0.2 µs each).
    if type(body) in _ACTIVITY:
        return {}
    match body:
        case OrderPlaced():
            return _order(state, body, at)
        case UserMuted(user_id=uid, until=until):
            return {"muted": _put(state.muted, uid, until)}
        case UserUnmuted(user_id=uid):
            return {"muted": {k: v for k, v in state.muted.items() if k != uid}}
        case UserBlocked(user_id=uid, until=until):
            return {"blocked": _put(state.blocked, uid, until)}
        case UserUnblocked(user_id=uid):
            return {"blocked": {k: v for k, v in state.blocked.items() if k != uid}}
        case LiveStarted(live_id=live_id, title=title):
            summary = LiveSummary(live_id=live_id, started_at=at)
            return {
                "status": "live",
                "live_id": live_id,
                "title": title,
                "current": summary,
                **_unspent(state),
            }
        case LiveEnded(summary=summary):
            # A giveaway deployed during the LIVE ends with it, by a giveaway_ended
            # event decided just before this one. Logs written before that event
            # existed have none: their giveaways are closed here (a no-op otherwise).
            giveaways = {
                gid: replace(g, ends_at=min(g.ends_at, at), ended=True)
                if g.ends_at is not None and not g.ended
                else g
                for gid, g in state.giveaways.items()
            }
            return {
                "status": "offline", "live_id": None, "current": None, "pinned": None,
                "billboard": None, "lives": [*state.lives, summary],
                "giveaways": giveaways if giveaways != state.giveaways else state.giveaways,
            }  # fmt: skip
        case ProductAdded(item=item, position=position):
            bag = list(state.bag)
            bag.insert(position, item)
            return {"bag": bag}
        case ProductDeleted(product_id=pid):
            return {"bag": [i for i in state.bag if i.product_id != pid]}
        case ProductPinned(product_id=pid):
            return {"pinned": pid}
        case ProductUnpinned():
            return {"pinned": None}
        case ProductMoved(product_id=pid, position=position):
            bag = [i for i in state.bag if i.product_id != pid]
            bag.insert(position, next(i for i in state.bag if i.product_id == pid))
            return {"bag": bag}
        case GiveawayReady(giveaway=g):
            return {"giveaways": {**state.giveaways, g.giveaway_id: g}}
        case GiveawayDeployed(giveaway_id=gid, ends_at=ends_at):
            g = replace(state.giveaways[gid], deployed_at=at, ends_at=ends_at, ended=False)
            return {"giveaways": {**state.giveaways, gid: g}}
        case GiveawayEnded(giveaway_id=gid, ended_at=ended_at):
            g = replace(state.giveaways[gid], ends_at=ended_at, ended=True)
            return {"giveaways": {**state.giveaways, gid: g}}
        case FlashSaleReady(sale=sale):
            return {"flash_sales": {**state.flash_sales, sale.sale_id: sale}}
        case FlashSaleDeployed(sale_id=sid, starts_at=starts_at, ends_at=ends_at):
            sale = replace(state.flash_sales[sid], starts_at=starts_at, ends_at=ends_at)
            return {"flash_sales": {**state.flash_sales, sid: sale}}
        case FlashSaleEnded(sale_id=sid):
            sale = replace(state.flash_sales[sid], ended=True)
            return {"flash_sales": {**state.flash_sales, sid: sale}}
        case BillboardDeployed(billboard=billboard):
            return {"billboard": billboard}
        case BillboardTakenDown():
            return {"billboard": None}
        case CommentSettingsChanged(settings=settings):
            return {"comment_settings": settings}
        case LiveEventScheduled(event=ev) | LiveEventEdited(event=ev):
            return {"live_events": {**state.live_events, ev.event_id: ev}}
        case LiveEventCancelled(event_id=eid):
            ev = replace(state.live_events[eid], cancelled=True)
            return {"live_events": {**state.live_events, eid: ev}}
        case ProductSetSaved(product_set=ps):
            return {"product_sets": {**state.product_sets, ps.set_id: ps}}
        case ProductSetDeleted(set_id=sid):
            return {"product_sets": {k: v for k, v in state.product_sets.items() if k != sid}}
        case CampaignSaved(campaign=c):
            return {"campaigns": {**state.campaigns, c.campaign_id: c}}
        case ShowcaseUpdated(product_ids=ids):
            return {"showcase": list(ids)}
        case ViolationReported(violation=v):
            return {"violations": [*state.violations, v]}
    raise AssertionError(f"unhandled event {body!r}")  # pragma: no cover - the union is closed


def _unspent(state: RoomState) -> dict[str, object]:
    """The giveaways and flash sales a new LIVE keeps: those never deployed.

    Those deployed in an earlier LIVE ended with it; they leave the state here, so
    a room holds one LIVE's promotions (capped, decision 0018), not every LIVE's."""
    changes: dict[str, object] = {}
    giveaways = {gid: g for gid, g in state.giveaways.items() if g.deployed_at is None}
    if len(giveaways) != len(state.giveaways):
        changes["giveaways"] = giveaways
    sales = {sid: sale for sid, sale in state.flash_sales.items() if sale.starts_at is None}
    if len(sales) != len(state.flash_sales):
        changes["flash_sales"] = sales
    return changes


def _order(state: RoomState, order: OrderPlaced, at: int) -> dict[str, object]:
    """An order draws down the bag item's stock and, with a sale id, the sale's.

    An order is a platform fact, taken whatever the bag says: beyond the item's
    stock, the stock stays at 0 and the running figures count the excess units
    as ``oversold``."""
    bag = list(state.bag)
    excess = 0
    for index, item in enumerate(bag):
        if item.product_id == order.product_id:
            excess = max(0, order.quantity - item.stock)
            bag[index] = replace(item, stock=max(0, item.stock - order.quantity))
            break  # a product is in the bag once
    changes: dict[str, object] = {"bag": bag}
    if excess and state.current is not None:
        current = _measure(state.current, order, at)
        changes["current"] = replace(current, oversold=plus(current.oversold, excess))
    if order.sale_id is not None:
        sale = state.flash_sales[order.sale_id]
        sale = replace(sale, sold=sale.sold + order.quantity)
        changes["flash_sales"] = {**state.flash_sales, order.sale_id: sale}
    return changes


def _measure(s: LiveSummary, body: EventBody, at: int) -> LiveSummary:
    """Running LIVE figures (the dashboard), per LIVE and per minute."""
    match body:
        case ViewersChanged(total=total):
            s = replace(s, viewers=total, peak_viewers=max(s.peak_viewers, total))
            return _bucket(s, at, viewers=total)
        case OrderPlaced(quantity=q, amount_cents=amount):
            s = replace(
                s,
                orders=plus(s.orders, 1),
                units=plus(s.units, q),
                gmv_cents=plus(s.gmv_cents, amount),
            )
            return _bucket(s, at, orders=1, gmv_cents=amount)
        case CommentPosted():
            return _bucket(replace(s, comments=plus(s.comments, 1)), at, comments=1)
        case GiftSent(repeat_count=n, repeat_end=True):
            return replace(s, gifts=plus(s.gifts, n))
        case Followed():
            return replace(s, follows=plus(s.follows, 1))
        case Subscribed():
            return replace(s, subscriptions=plus(s.subscriptions, 1))
        case ViolationReported():
            return replace(s, violations=plus(s.violations, 1))
    return s


def _bucket(
    s: LiveSummary, at: int, *, viewers: int | None = None, orders: int = 0,
    gmv_cents: int = 0, comments: int = 0,
) -> LiveSummary:  # fmt: skip
    """Add to the per-minute bucket ``at`` falls in (viewers: last value wins)."""
    minute = max(0, at - s.started_at) // 60_000
    series = s.per_minute
    if series and series[-1].minute >= minute:
        last = series[-1]
        bucket = replace(
            last,
            viewers=last.viewers if viewers is None else viewers,
            orders=plus(last.orders, orders),
            gmv_cents=plus(last.gmv_cents, gmv_cents),
            comments=plus(last.comments, comments),
        )
        return replace(s, per_minute=[*series[:-1], bucket])
    bucket = MinuteBucket(
        minute=minute,
        viewers=s.viewers if viewers is None else viewers,
        orders=orders,
        gmv_cents=gmv_cents,
        comments=comments,
    )
    return replace(s, per_minute=[*series, bucket])
