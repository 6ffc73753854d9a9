"""What happens in a room: the bodies of :class:`protocol.messages.Event`.

Events are facts, self-contained: an expiry is stored as an absolute time, a
pin names the product, so folding the log (``evolve``) needs no clock and no
outside lookup. Past tense names; tags read the same as the class names.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from protocol.model import (
    BagItem,
    Billboard,
    Campaign,
    Cents,
    CommentSettings,
    Count,
    FlashSale,
    Giveaway,
    Id,
    LiveEvent,
    LiveSummary,
    Millis,
    ProductIds,
    ProductSet,
    Quantity,
    Text,
    Title,
    Viewer,
    Violation,
)


class EventBase(Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every event body."""


class LiveStarted(EventBase, tag="live_started", frozen=True):
    live_id: Id
    title: Title = ""


class LiveEnded(EventBase, tag="live_ended", frozen=True):
    live_id: Id
    summary: LiveSummary


class ProductAdded(EventBase, tag="product_added", frozen=True):
    item: BagItem
    position: Count


class ProductDeleted(EventBase, tag="product_deleted", frozen=True):
    product_id: Id


class ProductPinned(EventBase, tag="product_pinned", frozen=True):
    product_id: Id


class ProductUnpinned(EventBase, tag="product_unpinned", frozen=True):
    product_id: Id


class ProductMoved(EventBase, tag="product_moved", frozen=True):
    product_id: Id
    position: Count


class GiveawayReady(EventBase, tag="giveaway_ready", frozen=True):
    giveaway: Giveaway


class GiveawayDeployed(EventBase, tag="giveaway_deployed", frozen=True):
    giveaway_id: Id
    ends_at: Millis


class GiveawayEnded(EventBase, tag="giveaway_ended", frozen=True):
    """A deployed giveaway ended, as :class:`FlashSaleEnded` says of a sale: with its
    LIVE (``live_ended``), or on its own end time (``expired``).

    The decider has no clock of its own, so an expiry is recorded when a decision
    comes to it - the LIVE ends, or the giveaway is set up or deployed again -
    and ``ended_at`` says when the giveaway really ended (its own ``ends_at``, or
    the LIVE's end). Every deployment ends in exactly one of these.
    """

    giveaway_id: Id
    ended_at: Millis
    reason: Literal["expired", "live_ended"] = "expired"


class FlashSaleReady(EventBase, tag="flash_sale_ready", frozen=True):
    sale: FlashSale


class FlashSaleDeployed(EventBase, tag="flash_sale_deployed", frozen=True):
    sale_id: Id
    starts_at: Millis
    ends_at: Millis


class FlashSaleEnded(EventBase, tag="flash_sale_ended", frozen=True):
    sale_id: Id
    reason: Literal["ended", "sold_out", "expired", "live_ended"] = "ended"


class BillboardDeployed(EventBase, tag="billboard_deployed", frozen=True):
    billboard: Billboard


class BillboardTakenDown(EventBase, tag="billboard_taken_down", frozen=True):
    billboard_id: Id


class CommentSettingsChanged(EventBase, tag="comment_settings_changed", frozen=True):
    settings: CommentSettings


class UserMuted(EventBase, tag="user_muted", frozen=True):
    user_id: Id
    until: Millis


class UserUnmuted(EventBase, tag="user_unmuted", frozen=True):
    user_id: Id


class UserBlocked(EventBase, tag="user_blocked", frozen=True):
    user_id: Id
    until: Millis


class UserUnblocked(EventBase, tag="user_unblocked", frozen=True):
    user_id: Id


class LiveEventScheduled(EventBase, tag="live_event_scheduled", frozen=True):
    event: LiveEvent


class LiveEventEdited(EventBase, tag="live_event_edited", frozen=True):
    event: LiveEvent


class LiveEventCancelled(EventBase, tag="live_event_cancelled", frozen=True):
    event_id: Id


class ProductSetSaved(EventBase, tag="product_set_saved", frozen=True):
    product_set: ProductSet


class ProductSetDeleted(EventBase, tag="product_set_deleted", frozen=True):
    set_id: Id


class CampaignSaved(EventBase, tag="campaign_saved", frozen=True):
    campaign: Campaign


class ShowcaseUpdated(EventBase, tag="showcase_updated", frozen=True):
    product_ids: ProductIds


HiddenReason = Literal["muted", "blocked", "spam", "comments_off"]


class CommentPosted(EventBase, tag="comment_posted", frozen=True):
    """A comment; ``hidden`` says why the audience does not see it, if so."""

    comment_id: Id
    user: Viewer
    content: Text
    hidden: HiddenReason | None = None


class OrderPlaced(EventBase, tag="order_placed", frozen=True):
    """An order the platform took, fed by the creator client (R13 activity feed).

    A fact the hub cannot refuse for the bag's stock: it draws the bag item's
    stock down, to 0 at the least, and units beyond the stock are counted as
    ``oversold`` in the LIVE's figures (:class:`~protocol.model.LiveSummary`). A
    flash-sale order (``sale_id``) is the exception: it is checked against the
    sale's own stock and refused beyond it (a flash sale never oversells, R13).
    """

    order_id: Id
    user: Viewer
    product_id: Id
    quantity: Quantity
    amount_cents: Cents
    sale_id: Id | None = None


class Subscribed(EventBase, tag="subscribed", frozen=True):
    user: Viewer
    month: Count = 1


class Followed(EventBase, tag="followed", frozen=True):
    user: Viewer


class GiftSent(EventBase, tag="gift_sent", frozen=True):
    user: Viewer
    gift_id: Count
    gift_name: Title = ""
    repeat_count: Count = 1
    repeat_end: bool = True


class ViewersChanged(EventBase, tag="viewers_changed", frozen=True):
    total: Count


class ViolationReported(EventBase, tag="violation_reported", frozen=True):
    violation: Violation


NotificationKind = Literal["staff_entered", "agency_created", "agency_changed"]


class CreatorNotified(EventBase, tag="creator_notified", frozen=True):
    """A notification to the creator (R14, R15); ``by`` of the event names the staff."""

    notification_id: Id
    kind: NotificationKind
    text: Text


EventBody = (
    LiveStarted
    | LiveEnded
    | ProductAdded
    | ProductDeleted
    | ProductPinned
    | ProductUnpinned
    | ProductMoved
    | GiveawayReady
    | GiveawayDeployed
    | GiveawayEnded
    | FlashSaleReady
    | FlashSaleDeployed
    | FlashSaleEnded
    | BillboardDeployed
    | BillboardTakenDown
    | CommentSettingsChanged
    | UserMuted
    | UserUnmuted
    | UserBlocked
    | UserUnblocked
    | LiveEventScheduled
    | LiveEventEdited
    | LiveEventCancelled
    | ProductSetSaved
    | ProductSetDeleted
    | CampaignSaved
    | ShowcaseUpdated
    | CommentPosted
    | OrderPlaced
    | Subscribed
    | Followed
    | GiftSent
    | ViewersChanged
    | ViolationReported
    | CreatorNotified
)
