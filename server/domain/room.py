"""The room decider: ``decide(state, caller, command, now) -> events | Refusal``.

Pure: no I/O, no clock (``now`` is a parameter, milliseconds). A decision is
either the list of events to append (possibly empty: nothing to change) or a
:class:`Refusal` with a code from :mod:`protocol.errors`; a refusal changes
nothing. Authorization is checked on every command (R10, R11, grant scopes),
then freshness (H5), then the rules of the command itself (R12, R13).
``evolve`` (re-exported from :mod:`server.domain.evolve`) folds the events.
"""

from __future__ import annotations

from msgspec.structs import replace

from protocol import commands as c
from protocol.errors import Code
from protocol.events import (
    BillboardDeployed,
    BillboardTakenDown,
    CommentSettingsChanged,
    CreatorNotified,
    EventBody,
    FlashSaleDeployed,
    FlashSaleEnded,
    FlashSaleReady,
    GiveawayDeployed,
    GiveawayEnded,
    GiveawayReady,
    LiveEnded,
    LiveStarted,
    NotificationKind,
    ProductAdded,
    ProductDeleted,
    ProductMoved,
    ProductPinned,
    ProductUnpinned,
    UserBlocked,
    UserMuted,
    UserUnblocked,
    UserUnmuted,
)  # fmt: skip
from protocol.messages import RoomCommand
from protocol.model import BagItem, Family, Giveaway, RoomState
from server.domain.caps import (
    MAX_BAG_ITEMS,
    MAX_BLOCKED,
    MAX_FLASH_SALES,
    MAX_GIVEAWAYS,
    MAX_MUTED,
    cap_reached,
    in_force,
)
from server.domain.evolve import evolve, new_room
from server.domain.feed import decide_feed, is_spam, running
from server.domain.grants import Caller
from server.domain.ids import room_notification_id
from server.domain.planning import decide_planning
from server.domain.refusal import NOT_FOUND, Refusal

__all__ = [
    "MAX_BAG_ITEMS", "Decision", "decide", "decide_enter", "evolve", "is_spam",
    "list_bag", "needs_live", "new_room",
]  # fmt: skip

Decision = list[EventBody] | Refusal

_PRE_LIVE: frozenset[type[RoomCommand]] = frozenset({
    c.GiveawaySetUp, c.FlashSaleSetUp, c.LiveEventSchedule, c.LiveEventEdit,
    c.LiveEventCancel, c.ProductSetSave, c.ProductSetDelete, c.CampaignSave, c.ShowcaseUpdate,
    c.StartLive,
})  # fmt: skip
"""Commands that need no live stream (R12); every other command does (R13)."""


def needs_live(command: RoomCommand) -> bool:
    """Whether a command is a during-LIVE feature (R13) rather than pre-LIVE (R12)."""
    return type(command) not in _PRE_LIVE


def _authorize(state: RoomState, caller: Caller, family: Family, now: int) -> Refusal | None:
    actor = caller.actor
    if actor.role == "creator":
        if actor.id == state.creator:
            return None
        return Refusal(Code.FORBIDDEN, "this room belongs to another creator")
    # Staff from here on.
    if family == "live":
        return Refusal(Code.CREATOR_ONLY, "only the creator starts or ends a LIVE")  # R10
    if family == "feed":
        return Refusal(Code.FEED_CREATOR_ONLY, "only the creator client feeds activity")
    grant = caller.grant
    if grant is None or grant.creator != state.creator or grant.agency != actor.agency:
        return Refusal(Code.NO_ACCESS, "no LIVE Manager access to this creator")
    if not grant.active(now):
        return Refusal(Code.LINK_ENDED, "the link, and with it access, has ended")  # R5
    if not grant.covers(family):
        return Refusal(Code.OUT_OF_SCOPE, f"the grant does not cover {family} commands")
    return None


def decide(state: RoomState, caller: Caller, command: RoomCommand, now: int) -> Decision:
    """Decide what a command does to the room, or why it is refused."""
    family = command.family
    refusal = _authorize(state, caller, family, now)
    if refusal is not None:
        return refusal
    if needs_live(command) and state.status != "live":
        return Refusal(Code.NOT_LIVE, "this needs a live stream")  # R13
    expected = command.expected_version
    if expected is not None and expected < state.versions.get(family, 0):
        return Refusal(Code.STALE_VERSION, f"{family} changed at seq {state.versions[family]}")
    events = _decide(state, command, now)
    if isinstance(events, Refusal) or caller.actor.role == "creator":
        return events
    return _notify_creator(state, command, events)


def decide_enter(state: RoomState, caller: Caller, now: int) -> Decision:
    """A member joins the room: staff only while live and with access (R11);
    the creator is notified when staff enter (R15)."""
    actor = caller.actor
    if actor.role == "creator":
        return [] if actor.id == state.creator else Refusal(Code.FORBIDDEN, "not your room")
    # Entering needs access of any scope: the scope limits commands, not presence.
    grant = caller.grant
    if grant is None or grant.creator != state.creator or grant.agency != actor.agency:
        return Refusal(Code.NO_ACCESS, "no LIVE Manager access to this creator")
    if not grant.active(now):
        return Refusal(Code.LINK_ENDED, "the link, and with it access, has ended")
    if state.status != "live":
        return Refusal(Code.NOT_LIVE, "staff join only a live room")
    text = f"{actor.id} of agency {actor.agency} entered your LIVE room"
    nid = room_notification_id(state.room, state.seq + 1)  # named after its own seq
    return [CreatorNotified(notification_id=nid, kind="staff_entered", text=text)]


def list_bag(state: RoomState, category: str | None, in_stock: bool | None) -> list[BagItem]:
    """The bag in order, filtered by category and by stock (R13)."""
    return [
        item for item in state.bag
        if (category is None or item.category == category)
        and (in_stock is None or (item.stock > 0) == in_stock)
    ]  # fmt: skip


# Creations and changes an agency makes are notified to the creator (R14); bag and
# moderation actions during the LIVE are not: the creator watches those happen.
_NOTIFY: dict[type[RoomCommand], tuple[NotificationKind, str]] = {
    c.LiveEventSchedule: ("agency_created", "scheduled a LIVE event"),
    c.LiveEventEdit: ("agency_changed", "edited a LIVE event"),
    c.LiveEventCancel: ("agency_changed", "cancelled a LIVE event"),
    c.ProductSetSave: ("agency_created", "saved a LIVE product set"),
    c.ProductSetDelete: ("agency_changed", "deleted a LIVE product set"),
    c.CampaignSave: ("agency_created", "saved a livestream campaign"),
    c.ShowcaseUpdate: ("agency_changed", "updated the showcase"),
    c.GiveawaySetUp: ("agency_created", "set up a giveaway"),
    c.GiveawayDeploy: ("agency_created", "deployed a giveaway"),
    c.FlashSaleSetUp: ("agency_created", "set up a flash sale"),
    c.FlashSaleDeploy: ("agency_created", "deployed a flash sale"),
    c.BillboardDeploy: ("agency_created", "deployed a billboard"),
}


def _notify_creator(
    state: RoomState, command: RoomCommand, events: list[EventBody]
) -> list[EventBody]:
    entry = _NOTIFY.get(type(command))
    if entry is None or not events:
        return events
    kind, what = entry
    # Named after the seq the notification will have: unique in the room, whatever
    # the (client-chosen, possibly long) command id or room id.
    nid = room_notification_id(state.room, state.seq + len(events) + 1)
    return [*events, CreatorNotified(notification_id=nid, kind=kind, text=f"Your agency {what}")]


def _full(entries: dict[str, int], uid: str, cap: int, now: int) -> bool:
    """Whether muting (or blocking) ``uid`` would pass ``cap`` mutes in force at once.

    Counting what is in force scans the entries, so only once they reach the cap."""
    return uid not in entries and len(entries) >= cap and in_force(entries, now) >= cap


def _find(bag: list[BagItem], product_id: str) -> int | None:
    for index, item in enumerate(bag):
        if item.product_id == product_id:
            return index
    return None


def _decide(s: RoomState, cmd: RoomCommand, now: int) -> Decision:
    # The busiest commands first (a match tries its cases in turn): the creator
    # client's activity feed, then moderation.
    if cmd.family == "feed":
        return decide_feed(s, cmd, now)
    match cmd:
        case c.Mute(user_id=uid, duration_s=d):
            if _full(s.muted, uid, MAX_MUTED, now):
                return cap_reached("accounts muted at once", MAX_MUTED)
            seconds = s.comment_settings.default_mute_s if d is None else d
            return [UserMuted(user_id=uid, until=now + seconds * 1000)]
        case c.Unmute(user_id=uid):
            # Answered by what the room lists: a mute that ended but is still listed
            # (no event since) is lifted like any other, so the state a console shows
            # and the answer agree; once it has left the state, there is nothing to lift.
            if uid not in s.muted:
                return Refusal(Code.NOT_FOUND, "the account is not muted")
            return [UserUnmuted(user_id=uid)]
        case c.Block(user_id=uid, duration_s=d):
            if _full(s.blocked, uid, MAX_BLOCKED, now):
                return cap_reached("accounts blocked at once", MAX_BLOCKED)
            seconds = s.comment_settings.default_block_s if d is None else d
            return [UserBlocked(user_id=uid, until=now + seconds * 1000)]
        case c.Unblock(user_id=uid):
            if uid not in s.blocked:  # as for Unmute
                return Refusal(Code.NOT_FOUND, "the account is not blocked")
            return [UserUnblocked(user_id=uid)]
        case c.StartLive(title=title):
            if s.status == "live":
                return Refusal(Code.ALREADY_LIVE, "the room is already live")
            return [LiveStarted(live_id=f"live-{s.seq + 1}", title=title)]
        case c.EndLive():
            return _end_live(s, now)
        case c.BagAdd(item=item, position=position):
            if _find(s.bag, item.product_id) is not None:
                return Refusal(Code.ALREADY_EXISTS, "the product is already in the bag")
            if len(s.bag) >= MAX_BAG_ITEMS:
                return cap_reached("products in the bag", MAX_BAG_ITEMS)
            at = len(s.bag) if position is None else position
            if at > len(s.bag):
                return Refusal(Code.POSITION_OUT_OF_RANGE, f"position {at} > {len(s.bag)}")
            return [ProductAdded(item=item, position=at)]
        case c.BagDelete(product_id=pid):
            if _find(s.bag, pid) is None:
                return NOT_FOUND
            unpin: list[EventBody] = [ProductUnpinned(product_id=pid)] if s.pinned == pid else []
            return [*unpin, ProductDeleted(product_id=pid)]
        case c.BagPin(product_id=pid):
            if _find(s.bag, pid) is None:
                return NOT_FOUND
            if s.pinned == pid:
                return Refusal(Code.ALREADY_ACTIVE, "the product is already pinned")
            # One pin at a time: pinning replaces the pinned product (R13).
            if s.pinned is None:
                return [ProductPinned(product_id=pid)]
            return [ProductUnpinned(product_id=s.pinned), ProductPinned(product_id=pid)]
        case c.BagUnpin():
            if s.pinned is None:
                return Refusal(Code.NOT_FOUND, "nothing is pinned")
            return [ProductUnpinned(product_id=s.pinned)]
        case c.BagMove(product_id=pid, position=position):
            index = _find(s.bag, pid)
            if index is None:
                return NOT_FOUND
            if position >= len(s.bag):
                return Refusal(Code.POSITION_OUT_OF_RANGE, f"position {position} >= {len(s.bag)}")
            return [] if index == position else [ProductMoved(product_id=pid, position=position)]
        case c.BagList():
            return []  # a query: the hub answers it with list_bag()
        case c.GiveawaySetUp(giveaway=g):
            current = s.giveaways.get(g.giveaway_id)
            if current is None and len(s.giveaways) >= MAX_GIVEAWAYS:
                return cap_reached("giveaways per LIVE", MAX_GIVEAWAYS)
            if current is not None and current.ends_at is not None and now < current.ends_at:
                return Refusal(Code.ALREADY_ACTIVE, "the giveaway is running")
            reset = replace(g, deployed_at=None, ends_at=None, ended=False)
            return [*_expired(current), GiveawayReady(giveaway=reset)]
        case c.GiveawayDeploy(giveaway_id=gid):
            ready = s.giveaways.get(gid)
            if ready is None:
                return NOT_FOUND
            if ready.ends_at is not None and now < ready.ends_at:
                return Refusal(Code.ALREADY_ACTIVE, "the giveaway is running")
            deployed = GiveawayDeployed(giveaway_id=gid, ends_at=now + ready.duration_s * 1000)
            return [*_expired(ready), deployed]
        case c.FlashSaleSetUp(sale=sale):
            current_sale = s.flash_sales.get(sale.sale_id)
            if current_sale is None and len(s.flash_sales) >= MAX_FLASH_SALES:
                return cap_reached("flash sales per LIVE", MAX_FLASH_SALES)
            if current_sale is not None and running(current_sale, now):
                return Refusal(Code.ALREADY_ACTIVE, "the flash sale is running")
            fresh = replace(sale, sold=0, starts_at=None, ends_at=None, ended=False)
            return [FlashSaleReady(sale=fresh)]
        case c.FlashSaleDeploy(sale_id=sid):
            sale_ = s.flash_sales.get(sid)
            if sale_ is None:
                return NOT_FOUND
            if running(sale_, now):
                return Refusal(Code.ALREADY_ACTIVE, "the flash sale is running")
            if sale_.starts_at is not None:
                return Refusal(Code.SALE_NOT_ACTIVE, "the flash sale is over; set it up again")
            ends = now + sale_.duration_s * 1000
            return [FlashSaleDeployed(sale_id=sid, starts_at=now, ends_at=ends)]
        case c.FlashSaleEnd(sale_id=sid):
            sale_ = s.flash_sales.get(sid)
            if sale_ is None:
                return NOT_FOUND
            if not running(sale_, now):
                return Refusal(Code.SALE_NOT_ACTIVE, "the flash sale is not running")
            return [FlashSaleEnded(sale_id=sid, reason="ended")]
        case c.BillboardDeploy(billboard=b):
            return [BillboardDeployed(billboard=b)]
        case c.BillboardTakeDown():
            if s.billboard is None:
                return Refusal(Code.NOT_FOUND, "no billboard is deployed")
            return [BillboardTakenDown(billboard_id=s.billboard.billboard_id)]
        case c.CommentSettingsUpdate():
            return _comment_settings(s, cmd)
        case _:
            return decide_planning(s, cmd, now)


def _end_live(s: RoomState, now: int) -> Decision:
    if s.current is None or s.live_id is None:  # decide() checked the room is live
        raise AssertionError("a live room always has a live id and running figures")
    # Close every sale and giveaway still open, so none outlives its LIVE.
    closing: list[EventBody] = [
        FlashSaleEnded(sale_id=sid, reason="live_ended" if now < (sale.ends_at or 0) else "expired")
        for sid, sale in s.flash_sales.items()
        if sale.starts_at is not None and not sale.ended
    ]
    for gid, g in s.giveaways.items():
        if g.ends_at is not None and not g.ended:
            closing += (
                _expired(g)
                if g.ends_at <= now
                else [GiveawayEnded(giveaway_id=gid, reason="live_ended", ended_at=now)]
            )
    summary = replace(s.current, ended_at=now, duration_ms=max(0, now - s.current.started_at))
    return [*closing, LiveEnded(live_id=s.live_id, summary=summary)]


def _expired(g: Giveaway | None) -> list[EventBody]:
    """The end of a deployment that ran out on its own end time and was not yet
    recorded (there is no timer: it is recorded when a decision comes to it)."""
    if g is None or g.ends_at is None or g.ended:
        return []
    return [GiveawayEnded(giveaway_id=g.giveaway_id, reason="expired", ended_at=g.ends_at)]


def _comment_settings(s: RoomState, cmd: c.CommentSettingsUpdate) -> Decision:
    old = s.comment_settings
    new = replace(
        old,
        allow_comments=old.allow_comments if cmd.allow_comments is None else cmd.allow_comments,
        show_top_comment=(
            old.show_top_comment if cmd.show_top_comment is None else cmd.show_top_comment
        ),
        filter_spam=old.filter_spam if cmd.filter_spam is None else cmd.filter_spam,
        default_mute_s=old.default_mute_s if cmd.default_mute_s is None else cmd.default_mute_s,
        default_block_s=(
            old.default_block_s if cmd.default_block_s is None else cmd.default_block_s
        ),
    )
    return [] if new == old else [CommentSettingsChanged(settings=new)]
