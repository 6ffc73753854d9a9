"""Client -> server messages: session control and room commands.

Every room command carries a client-chosen ``command_id`` (idempotency, H1):
it names one command by one actor in the room, so resending that command gets
the first ack again, and sending anything else under it is refused
``COMMAND_ID_REUSED`` (decision 0016). A command may also carry
``expected_version`` (H5): the ``seq`` of the last change the client saw in the
part of the room the command touches (its family), so a stream of comments never
makes a bag move stale, but a concurrent move does.

Schema evolution: new fields always get defaults; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from msgspec import Meta, Struct

from protocol.model import (
    BagItem,
    Billboard,
    Campaign,
    Cents,
    Count,
    Family,
    FlashSale,
    Giveaway,
    Id,
    LiveEvent,
    Millis,
    ProductIds,
    ProductSet,
    Quantity,
    Seconds,
    Seq,
    Text,
    Title,
    Viewer,
    Violation,
)

Token = Annotated[str, Meta(min_length=1, max_length=8192)]


class Message(Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every message; the class's tag is its ``type``."""


# --- session control (client -> server) -----------------------------------


class Hello(Message, tag="hello", frozen=True):
    """First frame of a session: authenticate with a token (or, when the token
    travelled in a ``livepilot.auth.<token>`` subprotocol, with none)."""

    token: Token | None = None
    client: Title = ""


class Refresh(Message, tag="refresh", frozen=True):
    """Replace the session's token in-band before it expires."""

    token: Token


class Join(Message, tag="join", frozen=True):
    """Join a room; the server answers with a :class:`Snapshot`."""

    room: Id


class Resume(Message, tag="resume", frozen=True):
    """Rejoin a room and receive every event after ``last_seq`` (H3)."""

    room: Id
    last_seq: Seq


class Leave(Message, tag="leave", frozen=True):
    """Leave a room."""

    room: Id


class Ping(Message, tag="ping", frozen=True):
    """Application-level heartbeat; answered by :class:`Pong`."""

    nonce: Count = 0


# --- room commands (client -> server) --------------------------------------


class Command(Message, frozen=True, kw_only=True):
    """A room command. ``family`` says which grant scope it needs."""

    family: ClassVar[Family]
    command_id: Id
    room: Id
    expected_version: Seq | None = None


class StartLive(Command, tag="start_live", frozen=True):
    """Go live. Creator only (R10)."""

    family = "live"
    title: Title = ""


class EndLive(Command, tag="end_live", frozen=True):
    """End the LIVE. Creator only (R10)."""

    family = "live"


class BagAdd(Command, tag="bag_add", frozen=True):
    """Add a product to the shopping bag, at the end or at ``position``."""

    family = "bag"
    item: BagItem
    position: Count | None = None


class BagDelete(Command, tag="bag_delete", frozen=True):
    """Delete a product from the bag (unpins it if pinned)."""

    family = "bag"
    product_id: Id


class BagPin(Command, tag="bag_pin", frozen=True):
    """Pin a product; the previously pinned one is unpinned (one pin at a time)."""

    family = "bag"
    product_id: Id


class BagUnpin(Command, tag="bag_unpin", frozen=True):
    """Unpin the pinned product."""

    family = "bag"


class BagMove(Command, tag="bag_move", frozen=True):
    """Move a product to a 0-based position; the others shift."""

    family = "bag"
    product_id: Id
    position: Count


class BagList(Command, tag="bag_list", frozen=True):
    """Query: the bag filtered by category and stock; answered by :class:`BagListing`."""

    family = "bag"
    category: Title | None = None
    in_stock: bool | None = None


class GiveawaySetUp(Command, tag="giveaway_set_up", frozen=True):
    """Set up a giveaway (pre- or during LIVE, R12)."""

    family = "promotion"
    giveaway: Giveaway


class GiveawayDeploy(Command, tag="giveaway_deploy", frozen=True):
    """Deploy a set-up giveaway on the LIVE (R13)."""

    family = "promotion"
    giveaway_id: Id


class FlashSaleSetUp(Command, tag="flash_sale_set_up", frozen=True):
    """Set up a flash sale: product, price, stock, duration (R12)."""

    family = "promotion"
    sale: FlashSale


class FlashSaleDeploy(Command, tag="flash_sale_deploy", frozen=True):
    """Start a set-up flash sale now (R13)."""

    family = "promotion"
    sale_id: Id


class FlashSaleEnd(Command, tag="flash_sale_end", frozen=True):
    """End a running flash sale early."""

    family = "promotion"
    sale_id: Id


class BillboardDeploy(Command, tag="billboard_deploy", frozen=True):
    """Show a billboard on the stream (replaces the current one)."""

    family = "billboard"
    billboard: Billboard


class BillboardTakeDown(Command, tag="billboard_take_down", frozen=True):
    """Take the current billboard down."""

    family = "billboard"


class CommentSettingsUpdate(Command, tag="comment_settings", frozen=True):
    """Change comment settings; omitted fields stay as they are."""

    family = "moderation"
    allow_comments: bool | None = None
    show_top_comment: bool | None = None
    filter_spam: bool | None = None
    default_mute_s: Seconds | None = None
    default_block_s: Seconds | None = None


class Mute(Command, tag="mute", frozen=True):
    """Mute an audience account; ``duration_s`` defaults to the room's setting."""

    family = "moderation"
    user_id: Id
    duration_s: Seconds | None = None


class Unmute(Command, tag="unmute", frozen=True):
    """Lift a mute."""

    family = "moderation"
    user_id: Id


class Block(Command, tag="block", frozen=True):
    """Block an audience account; ``duration_s`` defaults to the room's setting."""

    family = "moderation"
    user_id: Id
    duration_s: Seconds | None = None


class Unblock(Command, tag="unblock", frozen=True):
    """Lift a block."""

    family = "moderation"
    user_id: Id


class LiveEventSchedule(Command, tag="live_event_schedule", frozen=True):
    """Schedule a LIVE event (pre-LIVE, R12; notified to the creator, R14)."""

    family = "planning"
    event: LiveEvent


class LiveEventEdit(Command, tag="live_event_edit", frozen=True):
    """Edit a scheduled LIVE event; omitted fields stay."""

    family = "planning"
    event_id: Id
    title: Title | None = None
    starts_at: Millis | None = None
    duration_s: Seconds | None = None


class LiveEventCancel(Command, tag="live_event_cancel", frozen=True):
    """Cancel a scheduled LIVE event."""

    family = "planning"
    event_id: Id


class ProductSetSave(Command, tag="product_set_save", frozen=True):
    """Create or replace a LIVE product set."""

    family = "planning"
    product_set: ProductSet


class ProductSetDelete(Command, tag="product_set_delete", frozen=True):
    """Delete a LIVE product set."""

    family = "planning"
    set_id: Id


class CampaignSave(Command, tag="campaign_save", frozen=True):
    """Create or replace a livestream campaign."""

    family = "planning"
    campaign: Campaign


class ShowcaseUpdate(Command, tag="showcase_update", frozen=True):
    """Replace the showcase's product list."""

    family = "planning"
    product_ids: ProductIds


# --- creator client feed (platform activity, creator only) -----------------


class FeedComment(Command, tag="feed_comment", frozen=True):
    """A viewer's comment, as the platform delivered it."""

    family = "feed"
    comment_id: Id
    user: Viewer
    content: Text


class FeedOrder(Command, tag="feed_order", frozen=True):
    """A purchase; with ``sale_id`` it draws on that flash sale's stock."""

    family = "feed"
    order_id: Id
    user: Viewer
    product_id: Id
    quantity: Quantity = 1
    amount_cents: Cents = 0
    sale_id: Id | None = None


class FeedSubscription(Command, tag="feed_subscription", frozen=True):
    """A viewer subscribed (``month`` = subscription month)."""

    family = "feed"
    user: Viewer
    month: Count = 1


class FeedFollow(Command, tag="feed_follow", frozen=True):
    """A viewer followed the creator."""

    family = "feed"
    user: Viewer


class FeedGift(Command, tag="feed_gift", frozen=True):
    """A gift; streakable gifts repeat until ``repeat_end``."""

    family = "feed"
    user: Viewer
    gift_id: Count
    gift_name: Title = ""
    repeat_count: Count = 1
    repeat_end: bool = True


class FeedViewers(Command, tag="feed_viewers", frozen=True):
    """The viewer count ("room user seq")."""

    family = "feed"
    total: Count


class FeedViolation(Command, tag="feed_violation", frozen=True):
    """A platform violation on this LIVE (account health)."""

    family = "feed"
    violation: Violation


RoomCommand = (
    StartLive
    | EndLive
    | BagAdd
    | BagDelete
    | BagPin
    | BagUnpin
    | BagMove
    | BagList
    | GiveawaySetUp
    | GiveawayDeploy
    | FlashSaleSetUp
    | FlashSaleDeploy
    | FlashSaleEnd
    | BillboardDeploy
    | BillboardTakeDown
    | CommentSettingsUpdate
    | Mute
    | Unmute
    | Block
    | Unblock
    | LiveEventSchedule
    | LiveEventEdit
    | LiveEventCancel
    | ProductSetSave
    | ProductSetDelete
    | CampaignSave
    | ShowcaseUpdate
    | FeedComment
    | FeedOrder
    | FeedSubscription
    | FeedFollow
    | FeedGift
    | FeedViewers
    | FeedViolation
)
SessionMessage = Hello | Refresh | Join | Resume | Leave | Ping
