"""Every message of protocol v1: the one place a client imports from.

Three unions make the contract:

* :data:`ClientMessage` - what a client sends on the WebSocket: session control
  (hello, refresh, join, resume, leave, ping) and room commands
  (:mod:`protocol.commands`).
* :data:`ServerMessage` - what the server sends: welcome, snapshot, event, ack,
  refused, error, notification, presence, access changed, pong, bag listing.
* :data:`EventBody` - what happened in a room (:mod:`protocol.events`), carried
  by :class:`Event` with the room's gap-free ``seq`` (H2).

Schema evolution: new fields always get defaults; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Literal

from protocol.commands import (
    BagAdd,
    BagDelete,
    BagList,
    BagMove,
    BagPin,
    BagUnpin,
    BillboardDeploy,
    BillboardTakeDown,
    Block,
    CampaignSave,
    Command,
    CommentSettingsUpdate,
    EndLive,
    FeedComment,
    FeedFollow,
    FeedGift,
    FeedOrder,
    FeedSubscription,
    FeedViewers,
    FeedViolation,
    FlashSaleDeploy,
    FlashSaleEnd,
    FlashSaleSetUp,
    GiveawayDeploy,
    GiveawaySetUp,
    Hello,
    Join,
    Leave,
    LiveEventCancel,
    LiveEventEdit,
    LiveEventSchedule,
    Message,
    Mute,
    Ping,
    ProductSetDelete,
    ProductSetSave,
    Refresh,
    Resume,
    RoomCommand,
    SessionMessage,
    ShowcaseUpdate,
    StartLive,
    Token,
    Unblock,
    Unmute,
)
from protocol.events import (
    BillboardDeployed,
    BillboardTakenDown,
    CampaignSaved,
    CommentPosted,
    CommentSettingsChanged,
    CreatorNotified,
    EventBase,
    EventBody,
    FlashSaleDeployed,
    FlashSaleEnded,
    FlashSaleReady,
    Followed,
    GiftSent,
    GiveawayDeployed,
    GiveawayReady,
    HiddenReason,
    LiveEnded,
    LiveEventCancelled,
    LiveEventEdited,
    LiveEventScheduled,
    LiveStarted,
    NotificationKind,
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
from protocol.model import (
    FAMILIES,
    GRANTABLE,
    Actor,
    BagItem,
    Billboard,
    Campaign,
    Cents,
    CommentSettings,
    Count,
    Family,
    FlashSale,
    Giveaway,
    Id,
    LiveEvent,
    LiveStatus,
    LiveSummary,
    Millis,
    MinuteBucket,
    ProductSet,
    Role,
    RoomState,
    Seconds,
    Seq,
    Text,
    Title,
    Viewer,
    Violation,
)

PROTOCOL_VERSION = 1
SUBPROTOCOL_JSON = "livepilot.v1.json"
SUBPROTOCOL_MSGPACK = "livepilot.v1.msgpack"


class Limits(Message, tag="limits", frozen=True):
    """Limits the server enforces on this session."""

    max_message_bytes: Count
    rate_per_s: float
    burst: Count
    heartbeat_s: float


class Welcome(Message, tag="welcome", frozen=True):
    """Answer to hello: the session is authenticated."""

    session_id: Id
    limits: Limits
    actor: Actor
    protocol_version: int = PROTOCOL_VERSION


SnapshotReason = Literal["join", "history_truncated", "history_lost"]
"""Why a snapshot was sent: a join; history trimmed past where the client was (its
state goes on from the snapshot); or the stored history itself was lost (the
shared store restarted without it: the room's seqs started again, so the client
drops what it had and starts from the snapshot, whose seq may be lower)."""


class Snapshot(Message, tag="snapshot", frozen=True):
    """The room as of ``seq``: answer to join, or to a resume history cannot serve."""

    room: Id
    seq: Seq
    state: RoomState
    reason: SnapshotReason = "join"


class Event(Message, tag="event", frozen=True):
    """One room event. ``actor`` is what the audience sees (always the creator, R16);
    ``by`` is who really acted."""

    room: Id
    seq: Seq
    at: Millis
    actor: Id
    by: Actor
    body: EventBody
    command_id: Id | None = None


class Resumed(Message, tag="resumed", frozen=True):
    """Every missed event up to ``seq`` was sent; live events follow."""

    room: Id
    seq: Seq


class Ack(Message, tag="ack", frozen=True):
    """The command was applied (durably, H4); ``seq`` is its last event's seq."""

    command_id: Id
    seq: Seq


class Refused(Message, tag="refused", frozen=True):
    """The command was not applied; nothing changed. ``code`` from protocol.errors."""

    command_id: Id
    code: int
    message: Text = ""


class Error(Message, tag="error", frozen=True):
    """A session-level error; ``retryable`` follows the code's range."""

    code: int
    message: Text = ""
    retryable: bool = False
    room: Id | None = None
    """The room a join or resume was refused for, when it is one."""


class Notification(Message, tag="notification", frozen=True):
    """A creator inbox entry (R14, R15), live to a connected creator client."""

    notification_id: Id
    creator: Id
    kind: NotificationKind
    text: Text
    at: Millis
    by: Actor
    read: bool = False


class Presence(Message, tag="presence", frozen=True):
    """Who is in the room now (staff and creator); sent on every change."""

    room: Id
    members: list[Actor]


class AccessChanged(Message, tag="access_changed", frozen=True):
    """The agency's access to the creator changed (R6, R9; decision 0015).

    When access ends (``revoked``, ``unlinked``, ``expired``) the session leaves
    ``room``, the creator's room: no event of it follows. The session itself stays
    open for every other room (``terminal`` false). ``terminal`` true (servers
    before decision 0015) means the server closes the session after this message.
    """

    creator: Id
    agency: Id
    status: Literal["granted", "revoked", "unlinked", "expired"]
    terminal: bool = True
    room: Id | None = None
    """The room whose events stop for this session; None for ``granted`` and from
    servers before decision 0015."""


class Pong(Message, tag="pong", frozen=True):
    """Answer to ping."""

    nonce: Count = 0


class BagListing(Message, tag="bag_listing", frozen=True):
    """Answer to bag_list: the matching items in bag order."""

    command_id: Id
    room: Id
    items: list[BagItem]


ClientMessage = SessionMessage | RoomCommand
ServerMessage = (
    Welcome
    | Snapshot
    | Event
    | Resumed
    | Ack
    | Refused
    | Error
    | Notification
    | Presence
    | AccessChanged
    | Pong
    | BagListing
)
__all__ = [  # noqa: RUF022 - the whole contract, alphabetical
    "AccessChanged",
    "Ack",
    "Actor",
    "BagAdd",
    "BagDelete",
    "BagItem",
    "BagList",
    "BagListing",
    "BagMove",
    "BagPin",
    "BagUnpin",
    "Billboard",
    "BillboardDeploy",
    "BillboardDeployed",
    "BillboardTakeDown",
    "BillboardTakenDown",
    "Block",
    "Campaign",
    "CampaignSave",
    "CampaignSaved",
    "Cents",
    "ClientMessage",
    "Command",
    "CommentPosted",
    "CommentSettings",
    "CommentSettingsChanged",
    "CommentSettingsUpdate",
    "Count",
    "CreatorNotified",
    "EndLive",
    "Error",
    "Event",
    "EventBase",
    "EventBody",
    "FAMILIES",
    "Family",
    "FeedComment",
    "FeedFollow",
    "FeedGift",
    "FeedOrder",
    "FeedSubscription",
    "FeedViewers",
    "FeedViolation",
    "FlashSale",
    "FlashSaleDeploy",
    "FlashSaleDeployed",
    "FlashSaleEnd",
    "FlashSaleEnded",
    "FlashSaleReady",
    "FlashSaleSetUp",
    "Followed",
    "GRANTABLE",
    "GiftSent",
    "Giveaway",
    "GiveawayDeploy",
    "GiveawayDeployed",
    "GiveawayReady",
    "GiveawaySetUp",
    "Hello",
    "HiddenReason",
    "Id",
    "Join",
    "Leave",
    "Limits",
    "LiveEnded",
    "LiveEvent",
    "LiveEventCancel",
    "LiveEventCancelled",
    "LiveEventEdit",
    "LiveEventEdited",
    "LiveEventSchedule",
    "LiveEventScheduled",
    "LiveStarted",
    "LiveStatus",
    "LiveSummary",
    "Message",
    "Millis",
    "MinuteBucket",
    "Mute",
    "Notification",
    "NotificationKind",
    "OrderPlaced",
    "PROTOCOL_VERSION",
    "Ping",
    "Pong",
    "Presence",
    "ProductAdded",
    "ProductDeleted",
    "ProductMoved",
    "ProductPinned",
    "ProductSet",
    "ProductSetDelete",
    "ProductSetDeleted",
    "ProductSetSave",
    "ProductSetSaved",
    "ProductUnpinned",
    "Refresh",
    "Refused",
    "Resume",
    "Resumed",
    "Role",
    "RoomCommand",
    "RoomState",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "Seconds",
    "ServerMessage",
    "SessionMessage",
    "ShowcaseUpdate",
    "ShowcaseUpdated",
    "Snapshot",
    "SnapshotReason",
    "StartLive",
    "Subscribed",
    "Text",
    "Title",
    "Token",
    "Unblock",
    "Unmute",
    "UserBlocked",
    "UserMuted",
    "UserUnblocked",
    "UserUnmuted",
    "Viewer",
    "ViewersChanged",
    "Violation",
    "ViolationReported",
    "Welcome",
]
