"""Value types shared by messages, the domain and the consoles.

Everything here is plain, immutable data: it is what the wire carries and what
the room decider folds. Ids are opaque strings chosen by whoever creates the
thing (the client for set-ups, the platform for feed items), so a resend of the
same command names the same thing. Money is in integer cents; time is integer
milliseconds since the Unix epoch.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import Meta, Struct

__all__ = [
    "FAMILIES",
    "GRANTABLE",
    "TOTAL_MAX",
    "Actor",
    "BagItem",
    "Billboard",
    "Campaign",
    "Cents",
    "CentsTotal",
    "CommentSettings",
    "Count",
    "Family",
    "FlashSale",
    "Giveaway",
    "Id",
    "LiveEvent",
    "LiveStatus",
    "LiveSummary",
    "Millis",
    "MinuteBucket",
    "ProductIds",
    "ProductSet",
    "Quantity",
    "Role",
    "RoomState",
    "Seconds",
    "Seq",
    "Total",
    "Viewer",
    "Violation",
]

Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
"""An identifier: 1-128 characters of ``[A-Za-z0-9_.:@-]``."""
Text = Annotated[str, Meta(max_length=2000)]
Title = Annotated[str, Meta(max_length=200)]

# One bound per quantity (decision 0017): commands, events, the room state and its
# snapshots all use these aliases, so a value a command may carry is a value every
# decoder of an event or a snapshot accepts. A stored type's bound may be widened,
# never narrowed: what is in the log must stay readable.
Millis = Annotated[int, Meta(ge=0, le=2**53)]
"""Milliseconds since the Unix epoch (or a duration in milliseconds)."""
Seconds = Annotated[int, Meta(ge=1, le=366 * 24 * 3600)]
"""A duration in seconds: at most a year."""
Cents = Annotated[int, Meta(ge=0, le=10**12)]
"""One amount of money in cents (a price, an order's amount): at most 10^12."""
Count = Annotated[int, Meta(ge=0, le=10**9)]
"""One count of something (a stock, a viewer count, a gift streak): at most 10^9."""
Quantity = Annotated[int, Meta(ge=1, le=10**6)]
"""Units in one order: 1 to 10^6."""
TOTAL_MAX: Final = 2**53 - 1
"""The bound of every running sum, and of seqs: the largest integer a JSON number
carries exactly in every client (JavaScript's ``Number.MAX_SAFE_INTEGER``)."""
Total = Annotated[int, Meta(ge=0, le=TOTAL_MAX)]
"""A running sum of counts (a LIVE's orders, units, gifts...): saturates at TOTAL_MAX."""
CentsTotal = Annotated[int, Meta(ge=0, le=TOTAL_MAX)]
"""A running sum of money in cents (a LIVE's GMV): saturates at TOTAL_MAX."""
Seq = Annotated[int, Meta(ge=0, le=TOTAL_MAX)]
"""A room's event sequence number (and a family's version): 2^53 events is never reached."""
ProductIds = Annotated[list[Id], Meta(max_length=500)]
"""The product ids of a set, a campaign or the showcase."""

Role = Literal["creator", "staff"]

Family = Literal["live", "bag", "promotion", "billboard", "moderation", "planning", "feed"]
"""The command families of R10-R13; a grant's scopes are a subset of GRANTABLE."""
FAMILIES: tuple[Family, ...] = (
    "live",
    "bag",
    "promotion",
    "billboard",
    "moderation",
    "planning",
    "feed",
)
GRANTABLE: frozenset[Family] = frozenset(
    {"bag", "promotion", "billboard", "moderation", "planning"}
)
"""Families an agency may be granted: start/end (live) and feed stay the creator's."""


class Actor(Struct, frozen=True, kw_only=True):
    """Who really did something (R16): the creator, or a staff member of an agency."""

    role: Role
    id: Id
    agency: Id | None = None


class Viewer(Struct, frozen=True, kw_only=True):
    """An audience member, as the platform's webcast events name them."""

    unique_id: Id
    nickname: Title = ""
    is_moderator: bool = False
    member_level: Count = 0


class BagItem(Struct, frozen=True, kw_only=True):
    """A product in the LIVE shopping bag."""

    product_id: Id
    title: Title = ""
    category: Title = ""
    price_cents: Cents = 0
    stock: Count = 0


class Giveaway(Struct, frozen=True, kw_only=True):
    """A giveaway set up before or during a LIVE, deployed during one."""

    giveaway_id: Id
    product_id: Id
    winners: Annotated[int, Meta(ge=1, le=1000)] = 1
    duration_s: Seconds = 300
    deployed_at: Millis | None = None
    ends_at: Millis | None = None
    ended: bool = False
    """Its deployment has ended (a ``giveaway_ended`` event), with the LIVE or on time."""


class FlashSale(Struct, frozen=True, kw_only=True):
    """A flash sale: a price for a limited stock and time. Never oversold (R13)."""

    sale_id: Id
    product_id: Id
    price_cents: Cents
    stock: Annotated[int, Meta(ge=1, le=10**9)]
    duration_s: Seconds = 300
    sold: Count = 0
    starts_at: Millis | None = None
    ends_at: Millis | None = None
    ended: bool = False


class Billboard(Struct, frozen=True, kw_only=True):
    """A promotional banner shown on the stream."""

    billboard_id: Id
    text: Text = ""
    image_url: Text = ""


class CommentSettings(Struct, frozen=True, kw_only=True):
    """LIVE comment settings (R13)."""

    allow_comments: bool = True
    show_top_comment: bool = False
    filter_spam: bool = True
    default_mute_s: Seconds = 300
    default_block_s: Seconds = 24 * 3600


class LiveEvent(Struct, frozen=True, kw_only=True):
    """A scheduled LIVE event (pre-LIVE, R12)."""

    event_id: Id
    title: Title
    starts_at: Millis
    duration_s: Seconds = 3600
    cancelled: bool = False


class ProductSet(Struct, frozen=True, kw_only=True):
    """A named set of products prepared before a LIVE (R12)."""

    set_id: Id
    name: Title
    product_ids: ProductIds = []


class Campaign(Struct, frozen=True, kw_only=True):
    """A livestream campaign the creator takes part in (R12)."""

    campaign_id: Id
    name: Title
    product_ids: ProductIds = []
    discount_pct: Annotated[int, Meta(ge=0, le=100)] = 0


class Violation(Struct, frozen=True, kw_only=True):
    """An account-health violation reported by the platform (R13 in-console)."""

    violation_id: Id
    policy: Title
    description: Text = ""
    severity: Literal["low", "medium", "high"] = "low"
    at: Millis = 0


class MinuteBucket(Struct, frozen=True, kw_only=True):
    """Per-minute figures of one LIVE, minute 0 being the start."""

    minute: Total
    viewers: Count = 0
    orders: Total = 0
    gmv_cents: CentsTotal = 0
    comments: Total = 0


class LiveSummary(Struct, frozen=True, kw_only=True):
    """Post-LIVE figures, derived from the room's events."""

    live_id: Id
    started_at: Millis
    ended_at: Millis | None = None
    duration_ms: Millis = 0
    viewers: Count = 0
    peak_viewers: Count = 0
    orders: Total = 0
    units: Total = 0
    oversold: Total = 0
    """Units ordered beyond the bag item's stock (which stays at 0): the platform took
    the orders, the hub cannot refuse them, so they are counted here."""
    gmv_cents: CentsTotal = 0
    comments: Total = 0
    gifts: Total = 0
    follows: Total = 0
    subscriptions: Total = 0
    violations: Total = 0
    per_minute: list[MinuteBucket] = []

    @property
    def conversion(self) -> float:
        """Orders per peak viewer: the dashboard's conversion figure."""
        return self.orders / self.peak_viewers if self.peak_viewers else 0.0


LiveStatus = Literal["offline", "live"]


class RoomState(Struct, frozen=True, kw_only=True):
    """A room as of ``seq``: what a snapshot carries and what ``evolve`` folds.

    Treat it as immutable: ``evolve`` returns a new state and copies only the
    collections an event touches.
    """

    room: Id
    creator: Id
    seq: Seq = 0
    status: LiveStatus = "offline"
    live_id: Id | None = None
    title: Title = ""
    bag: list[BagItem] = []
    pinned: Id | None = None
    giveaways: dict[str, Giveaway] = {}
    flash_sales: dict[str, FlashSale] = {}
    billboard: Billboard | None = None
    comment_settings: CommentSettings = CommentSettings()
    muted: dict[str, Millis] = {}
    """Account -> end of its mute, earliest first; an entry leaves at its end (evolve)."""
    blocked: dict[str, Millis] = {}
    """Account -> end of its block, earliest first; an entry leaves at its end (evolve)."""
    live_events: dict[str, LiveEvent] = {}
    product_sets: dict[str, ProductSet] = {}
    campaigns: dict[str, Campaign] = {}
    showcase: ProductIds = []
    versions: dict[str, Seq] = {}
    """``seq`` of the last change per command family (H5 ``expected_version``)."""
    current: LiveSummary | None = None
    """Running figures of the LIVE in progress (the LIVE dashboard)."""
    lives: list[LiveSummary] = []
    """Post-LIVE figures of every ended LIVE, oldest first."""
    violations: list[Violation] = []
    """Account health: every violation reported, oldest first."""
