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

from protocol.commands import *  # noqa: F403 - this module is the contract's facade
from protocol.commands import Message, RoomCommand, SessionMessage
from protocol.events import *  # noqa: F403
from protocol.events import EventBody, NotificationKind
from protocol.model import *  # noqa: F403
from protocol.model import Actor, BagItem, Count, Id, Millis, RoomState, Text, Title

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


class Snapshot(Message, tag="snapshot", frozen=True):
    """The room as of ``seq``: answer to join, or to a resume history cannot serve."""

    room: Id
    seq: Count
    state: RoomState
    reason: Literal["join", "history_truncated"] = "join"


class Event(Message, tag="event", frozen=True):
    """One room event. ``actor`` is what the audience sees (always the creator, R16);
    ``by`` is who really acted."""

    room: Id
    seq: Count
    at: Millis
    actor: Id
    by: Actor
    body: EventBody
    command_id: Id | None = None


class Resumed(Message, tag="resumed", frozen=True):
    """Every missed event up to ``seq`` was sent; live events follow."""

    room: Id
    seq: Count


class Ack(Message, tag="ack", frozen=True):
    """The command was applied (durably, H4); ``seq`` is its last event's seq."""

    command_id: Id
    seq: Count


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
    """The agency's access to the creator changed; ``terminal`` ends the session."""

    creator: Id
    agency: Id
    status: Literal["granted", "revoked", "unlinked", "expired"]
    terminal: bool = True


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
    Welcome | Snapshot | Event | Resumed | Ack | Refused | Error | Notification | Presence
    | AccessChanged | Pong | BagListing
)
__all__ = [  # noqa: RUF022 - grouped by meaning, not alphabet
    "PROTOCOL_VERSION", "SUBPROTOCOL_JSON", "SUBPROTOCOL_MSGPACK",
    "ClientMessage", "ServerMessage", "RoomCommand", "SessionMessage", "EventBody",
    "Message", "Limits", "Welcome", "Snapshot", "Event", "Resumed", "Ack", "Refused",
    "Error", "Notification", "Presence", "AccessChanged", "Pong", "BagListing",
    "Title",
]
