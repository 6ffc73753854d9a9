"""The creator client's activity feed (R13): comments, orders, gifts, viewers...

Part of the room decider (:mod:`server.domain.room`), which has already checked
that the caller is the creator and the room is live. Decides what the audience
sees of a comment (moderation) and keeps flash sales from overselling.
"""

from __future__ import annotations

from msgspec.structs import replace

from protocol import commands as c
from protocol.errors import Code
from protocol.events import (
    CommentPosted,
    EventBody,
    FlashSaleEnded,
    Followed,
    GiftSent,
    HiddenReason,
    OrderPlaced,
    Subscribed,
    ViewersChanged,
    ViolationReported,
)
from protocol.messages import RoomCommand
from protocol.model import FlashSale, RoomState
from server.domain.refusal import NOT_FOUND, Refusal

__all__ = ["decide_feed", "is_spam", "running"]


_SPAM_MARKERS = ("http://", "https://", "www.", "t.me/", "bit.ly")


def is_spam(content: str) -> bool:
    """A deliberately simple spam heuristic: links, or one character flooded."""
    lowered = content.lower()
    if any(marker in lowered for marker in _SPAM_MARKERS):
        return True
    # The first three characters settle most comments without a set of them all.
    return len(content) >= 20 and len(set(content[:3])) <= 2 and len(set(content)) <= 2


def running(sale: FlashSale, now: int) -> bool:
    """Whether a flash sale is deployed, not ended, and within its time."""
    return sale.starts_at is not None and not sale.ended and now < (sale.ends_at or 0)


def decide_feed(s: RoomState, cmd: RoomCommand, now: int) -> list[EventBody] | Refusal:
    """The creator client's platform activity (R13 activity feed, flash-sale orders)."""
    match cmd:
        case c.FeedComment(comment_id=cid, user=user, content=content):
            return [CommentPosted(
                comment_id=cid, user=user, content=content,
                hidden=_hidden(s, user.unique_id, content, now),
            )]  # fmt: skip
        case c.FeedOrder(sale_id=None):
            return [_order(cmd)]
        case c.FeedOrder(sale_id=str(sid)):
            sale = s.flash_sales.get(sid)
            if sale is None:
                return NOT_FOUND
            if not running(sale, now):
                return Refusal(Code.SALE_NOT_ACTIVE, "the flash sale is not running")
            if sale.product_id != cmd.product_id:
                return Refusal(Code.INVALID_ARGUMENT, "the order is for another product")
            left = sale.stock - sale.sold
            if cmd.quantity > left:  # never oversell (R13)
                return Refusal(Code.SOLD_OUT, f"only {left} left")
            sold_out: list[EventBody] = (
                [FlashSaleEnded(sale_id=sid, reason="sold_out")] if cmd.quantity == left else []
            )
            return [_order(cmd), *sold_out]
        case c.FeedSubscription(user=user, month=month):
            return [Subscribed(user=user, month=month)]
        case c.FeedFollow(user=user):
            return [Followed(user=user)]
        case c.FeedGift():
            return [GiftSent(
                user=cmd.user, gift_id=cmd.gift_id, gift_name=cmd.gift_name,
                repeat_count=cmd.repeat_count, repeat_end=cmd.repeat_end,
            )]  # fmt: skip
        case c.FeedViewers(total=total):
            return [ViewersChanged(total=total)]
        case c.FeedViolation(violation=v):
            return [ViolationReported(violation=replace(v, at=v.at or now))]
    raise AssertionError(f"unhandled command {cmd!r}")  # pragma: no cover - the union is closed


def _order(cmd: c.FeedOrder) -> OrderPlaced:
    return OrderPlaced(
        order_id=cmd.order_id, user=cmd.user, product_id=cmd.product_id,
        quantity=cmd.quantity, amount_cents=cmd.amount_cents, sale_id=cmd.sale_id,
    )  # fmt: skip


def _hidden(s: RoomState, user_id: str, content: str, now: int) -> HiddenReason | None:
    """Why the audience would not see a comment, if it would not (R13 moderation)."""
    if s.blocked.get(user_id, 0) > now:
        return "blocked"
    if s.muted.get(user_id, 0) > now:
        return "muted"
    settings = s.comment_settings
    if not settings.allow_comments:
        return "comments_off"
    if settings.filter_spam and is_spam(content):
        return "spam"
    return None
