"""The access workflow's wire contract (DOMAIN.md R1-R9): HTTP bodies and events.

Commands are the bodies of the access HTTP API; the server fills in the ids and
dates the caller leaves to it (request ids, link end dates), so a command names
everything it touches and a resend names the same thing. Events are facts,
self-contained like room events: they carry absolute times and both parties, so
folding them needs no clock and the server can turn each into notifications
(R14) and, for :class:`LinkRemoved` / :class:`AccessRevoked`, cut the agency's
staff off at once (R6).

Two kinds of command: :data:`AccessCommand` is sent by a party (agency staff or
the creator); :data:`PlatformCommand` records a fact only the platform knows
(whether an agency is cross-border, which creators share commission or data with
it, R8), so no party can vouch for itself.

Schema evolution: new fields always get defaults; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from protocol.model import (
    FAMILIES,
    Campaign,
    Family,
    FlashSale,
    Giveaway,
    Id,
    LiveEvent,
    Millis,
    ProductSet,
    Role,
)

__all__ = [
    "AcceptRequest", "AccessCommand", "AccessEvent", "AccessGranted", "AccessRequest",
    "AccessRevoked", "AgencyRegistered", "AnyAccessCommand", "CreatorStatus",
    "CreatorStatusName", "DeclineRequest", "GrantInForce", "LinkCreated", "LinkExtended",
    "LinkRemoved", "Plan", "PlatformCommand", "RecordSharing", "RegisterAgency",
    "RequestAccepted", "RequestAccess", "RequestCancelled", "RequestDeclined",
    "RequestExtension", "RequestKind", "RequestLink", "RequestSent", "RequestStatus",
    "RevokeAccess", "Scopes", "SharingKind", "SharingRecorded", "Unlink",
]  # fmt: skip

RequestKind = Literal["link", "link_and_access", "access", "extension"]
"""``link``: a new link without access (the relink of R9); ``link_and_access``: the
bundled request of R1; ``access``: LIVE access for a linked creator; ``extension``:
a later end date for an existing link (R7)."""
RequestStatus = Literal["pending", "accepted", "declined", "cancelled", "expired"]
"""``expired`` is never stored: it is read at a time ``now`` (R2), for a request
left unanswered 7 days, or whose link (proposed or existing) ended meanwhile."""
SharingKind = Literal["commission", "data"]
Scopes = Annotated[list[Family], Meta(max_length=len(FAMILIES))]


class AccessCommandBase(Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every access command; the class's tag is its ``type``."""


class RequestLink(AccessCommandBase, tag="request_link", frozen=True):
    """Agency staff: ask a creator to link, with LIVE access (R1) or without (R9)."""

    request_id: Id
    creator: Id
    with_access: bool
    ends_at: Millis | None = None
    """The proposed link's end date (R5); None for an open-ended link."""


class RequestAccess(AccessCommandBase, tag="request_access", frozen=True):
    """Agency staff: ask an already linked creator for LIVE access (R1)."""

    request_id: Id
    creator: Id


class RequestExtension(AccessCommandBase, tag="request_extension", frozen=True):
    """Agency staff: ask a linked creator to move the link's end date later (R7)."""

    request_id: Id
    creator: Id
    new_ends_at: Millis


class AcceptRequest(AccessCommandBase, tag="accept_request", frozen=True):
    """The addressed creator accepts; for access, ``scopes`` limits the grant.

    ``scopes`` must be a non-empty subset of :data:`protocol.model.GRANTABLE`;
    None grants all of it. Requests without access take no scopes.
    """

    request_id: Id
    scopes: Scopes | None = None


class DeclineRequest(AccessCommandBase, tag="decline_request", frozen=True):
    """The addressed creator declines (R3: a link stays; R4: a pending link goes)."""

    request_id: Id


class Unlink(AccessCommandBase, tag="unlink", frozen=True):
    """Either party ends the link, and with it access, at once (R6)."""

    agency: Id
    creator: Id


class RevokeAccess(AccessCommandBase, tag="revoke_access", frozen=True):
    """The creator withdraws the agency's access but keeps the link (R9, livepilot)."""

    agency: Id


class RegisterAgency(AccessCommandBase, tag="register_agency", frozen=True):
    """Platform: record whether an agency is cross-border (R8). Unknown = domestic."""

    agency: Id
    cross_border: bool


class RecordSharing(AccessCommandBase, tag="record_sharing", frozen=True):
    """Platform: record a commission- or data-sharing relationship (R8)."""

    agency: Id
    creator: Id
    kind: SharingKind


AccessCommand = (
    RequestLink | RequestAccess | RequestExtension | AcceptRequest | DeclineRequest | Unlink
    | RevokeAccess
)  # fmt: skip
PlatformCommand = RegisterAgency | RecordSharing
AnyAccessCommand = AccessCommand | PlatformCommand


class AccessRequest(Struct, frozen=True, kw_only=True):
    """A request an agency sent to a creator, as stored and as listed."""

    request_id: Id
    kind: RequestKind
    agency: Id
    creator: Id
    sent_by: Id
    """The staff member who sent it (R16: the real actor is kept)."""
    sent_at: Millis
    expires_at: Millis
    """``sent_at`` + 7 days (R2): from then on it cannot be answered."""
    ends_at: Millis | None = None
    """Link kinds: the proposed end date; extension: the new end date."""
    link_id: Id | None = None
    """Access and extension: the link the request is about."""
    status: RequestStatus = "pending"
    answered_at: Millis | None = None


# --- events -----------------------------------------------------------------


class AccessEventBase(Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every access event; ``at`` is when it happened."""

    at: Millis


class RequestSent(AccessEventBase, tag="request_sent", frozen=True):
    """An agency sent a request; notify the creator (R14)."""

    request: AccessRequest


class RequestAccepted(AccessEventBase, tag="request_accepted", frozen=True):
    """The creator accepted; link and access events follow."""

    request_id: Id
    agency: Id
    creator: Id
    kind: RequestKind


class RequestDeclined(AccessEventBase, tag="request_declined", frozen=True):
    """The creator declined: nothing comes into being (R3, R4)."""

    request_id: Id
    agency: Id
    creator: Id
    kind: RequestKind


class RequestCancelled(AccessEventBase, tag="request_cancelled", frozen=True):
    """A pending request was voided because its link was removed (R6)."""

    request_id: Id
    agency: Id
    creator: Id
    kind: RequestKind


class LinkCreated(AccessEventBase, tag="link_created", frozen=True):
    """Agency and creator are linked, until ``ends_at`` (None: open-ended)."""

    agency: Id
    creator: Id
    link_id: Id
    ends_at: Millis | None = None


class LinkExtended(AccessEventBase, tag="link_extended", frozen=True):
    """The link, and any access on it (R5), now lasts until ``ends_at``."""

    agency: Id
    creator: Id
    link_id: Id
    ends_at: Millis


class LinkRemoved(AccessEventBase, tag="link_removed", frozen=True):
    """Unlinked by ``by``: access ends at once, cut every staff session off (R6)."""

    agency: Id
    creator: Id
    link_id: Id
    by: Role


class AccessGranted(AccessEventBase, tag="access_granted", frozen=True):
    """LIVE Manager access for the link's duration (R5), limited to ``scopes``."""

    agency: Id
    creator: Id
    link_id: Id
    request_id: Id
    scopes: Scopes


class AccessRevoked(AccessEventBase, tag="access_revoked", frozen=True):
    """The creator revoked access; the link stays (R9). Cut staff off as for R6."""

    agency: Id
    creator: Id
    link_id: Id


class AgencyRegistered(AccessEventBase, tag="agency_registered", frozen=True):
    """The platform says whether ``agency`` is cross-border (R8)."""

    agency: Id
    cross_border: bool


class SharingRecorded(AccessEventBase, tag="sharing_recorded", frozen=True):
    """The platform records a sharing relationship (R8)."""

    agency: Id
    creator: Id
    kind: SharingKind


AccessEvent = (
    RequestSent | RequestAccepted | RequestDeclined | RequestCancelled | LinkCreated
    | LinkExtended | LinkRemoved | AccessGranted | AccessRevoked | AgencyRegistered
    | SharingRecorded
)  # fmt: skip


# --- views ------------------------------------------------------------------

CreatorStatusName = Literal[
    "access_granted", "linked", "revoked", "pending", "ended", "expired", "none"
]
"""For an agency's creator list: ``access_granted`` / ``linked`` (an active link,
with or without access), ``revoked`` (an active link whose access the creator
revoked, R9), ``pending`` (a link request awaits the creator),
``ended`` (the link reached its end date), ``expired`` (the last request went
unanswered), ``none`` (declined or unlinked)."""


class CreatorStatus(Struct, frozen=True, kw_only=True):
    """One creator in an agency's list, as of a time ``now``."""

    creator: Id
    status: CreatorStatusName
    ends_at: Millis | None = None
    """The link's end date, when there is a link."""
    scopes: list[Family] = []
    """The granted families, when access is granted."""
    requests: list[AccessRequest] = []
    """Requests of this agency still awaiting the creator, oldest first."""


class GrantInForce(Struct, frozen=True, kw_only=True):
    """LIVE Manager access a creator has given an agency and not yet taken back,
    as ``GET /api/grants`` lists it at a time ``now`` (R5; what R9's revoke ends)."""

    agency: Id
    scopes: list[Family]
    """The families the creator granted, in :data:`protocol.model.FAMILIES` order."""
    granted_at: Millis
    """Since when: the creator accepted the access request then."""
    ends_at: Millis | None = None
    """The link's end date, when access ends with it (R5); None: until an unlink."""
    link_id: Id
    request_id: Id
    """The access request the creator accepted."""


class Plan(Struct, frozen=True, kw_only=True):
    """A creator's pre-LIVE plan (R12) as ``GET /api/plan`` lists it: what can be
    created, edited and deleted without a live stream.

    Staff read the sections their grant lets them change, as the commands are
    authorized: ``planning`` - LIVE events, product sets, campaigns, showcase;
    ``promotion`` - giveaways and flash sales set up. A section outside the grant
    is None (not an empty list); a grant covering neither is refused. The
    creator reads every section.
    """

    creator: Id
    live_events: list[LiveEvent] | None = None
    """Scheduled LIVE events by start time; cancelled ones stay, flagged ``cancelled``."""
    product_sets: list[ProductSet] | None = None
    """By id."""
    campaigns: list[Campaign] | None = None
    """By id."""
    showcase: list[Id] | None = None
    """The showcase's product ids, in showcase order."""
    giveaways: list[Giveaway] | None = None
    """Every giveaway set up, by id; a deployed one has ``deployed_at``/``ends_at``."""
    flash_sales: list[FlashSale] | None = None
    """Every flash sale set up, by id; a deployed one has ``starts_at``/``ends_at``."""
