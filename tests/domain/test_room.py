"""The room decider, rule by rule (R10-R16, H5)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from msgspec.structs import replace

from protocol import commands as c
from protocol.errors import Code
from protocol.events import (
    CommentPosted,
    CreatorNotified,
    FlashSaleEnded,
    GiveawayDeployed,
    GiveawayEnded,
    GiveawayReady,
    LiveEnded,
    OrderPlaced,
    ProductPinned,
    ProductUnpinned,
    UserUnmuted,
)
from protocol.messages import Event
from protocol.model import (
    Actor,
    Billboard,
    Campaign,
    FlashSale,
    Giveaway,
    Id,
    LiveEvent,
    ProductSet,
    Violation,
)
from server.domain.grants import Caller, Grant
from server.domain.planning import MAX_PLANNED
from server.domain.refusal import Refusal
from server.domain.room import (
    MAX_BAG_ITEMS,
    decide,
    decide_enter,
    evolve,
    is_spam,
    list_bag,
    needs_live,
    new_room,
)
from tests.domain.builders import (
    CREATOR,
    CREATOR_ID,
    ENDED,
    MODERATOR,
    OTHER_AGENCY,
    REVOKED,
    ROOM,
    STAFF,
    STRANGER,
    T0,
    VIEWER,
    Room,
    item,
)


def refused(result: object, code: Code) -> None:
    assert isinstance(result, Refusal), result
    assert result.code == code, result


# --- R10: only the creator starts or ends a LIVE ------------------------------


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        (STAFF, Code.CREATOR_ONLY),
        (MODERATOR, Code.CREATOR_ONLY),
        (REVOKED, Code.CREATOR_ONLY),
        (STRANGER, Code.FORBIDDEN),
    ],
)
def test_only_creator_starts_live(caller: Caller, code: Code) -> None:
    """A start attempt by anyone but the creator is refused and changes nothing."""
    # R10
    room = Room()
    before = room.state
    refused(room.send(caller, c.StartLive(command_id="x", room=ROOM)), code)
    assert room.state is before
    room.live()
    assert room.state.status == "live"


@pytest.mark.parametrize(
    ("caller", "code"),
    [(STAFF, Code.CREATOR_ONLY), (STRANGER, Code.FORBIDDEN)],
)
def test_only_creator_ends_live(caller: Caller, code: Code) -> None:
    """An end attempt by anyone but the creator is refused; the creator's succeeds."""
    # R10
    room = Room().live()
    refused(room.send(caller, c.EndLive(command_id="x", room=ROOM)), code)
    assert room.state.status == "live"
    events = room.ok(CREATOR, c.EndLive(command_id="y", room=ROOM))
    assert isinstance(events[-1], LiveEnded)
    assert room.state.status == "offline"  # type: ignore[comparison-overlap] # mypy narrowed it


def test_start_twice_and_end_offline_refused() -> None:
    """Starting a live room or ending an offline one is refused with a state code."""
    # R10
    room = Room()
    refused(room.send(CREATOR, c.EndLive(command_id="a", room=ROOM)), Code.NOT_LIVE)
    room.live()
    refused(room.send(CREATOR, c.StartLive(command_id="b", room=ROOM)), Code.ALREADY_LIVE)


# --- R11: staff join only a live room, with valid access ----------------------


@pytest.mark.parametrize(
    ("caller", "live", "code"),
    [
        (STAFF, False, Code.NOT_LIVE),
        (REVOKED, True, Code.NO_ACCESS),
        (ENDED, True, Code.LINK_ENDED),
        (OTHER_AGENCY, True, Code.NO_ACCESS),
        (STRANGER, True, Code.FORBIDDEN),
    ],
)
def test_staff_join_refused(caller: Caller, live: bool, code: Code) -> None:
    """Joining is refused offline, without a grant, with an ended grant, or for others."""
    # R11
    room = Room().live() if live else Room()
    refused(decide_enter(room.state, caller, room.now), code)


def test_join_allowed_for_granted_staff_while_live_and_creator_always() -> None:
    """Granted staff (any scope) join a live room; the creator joins even offline."""
    # R11
    room = Room()
    assert decide_enter(room.state, CREATOR, room.now) == []
    room.live()
    assert decide_enter(room.state, STAFF, room.now) != []
    assert decide_enter(room.state, MODERATOR, room.now) != []


def test_ending_live_refuses_later_during_live_commands() -> None:
    """After the creator ends the LIVE, staff's during-LIVE commands are refused."""
    # R11
    room = Room().live().stock("p1")
    room.ok(CREATOR, c.EndLive(command_id="end", room=ROOM))
    refused(room.send(STAFF, c.BagPin(command_id="pin", room=ROOM, product_id="p1")), Code.NOT_LIVE)
    refused(decide_enter(room.state, STAFF, room.now), Code.NOT_LIVE)


# --- R12: pre-LIVE features need access but no live stream --------------------

PRE_LIVE = [
    c.LiveEventSchedule(
        command_id="e1",
        room=ROOM,
        event=LiveEvent(event_id="ev", title="Launch", starts_at=T0 + 3_600_000),
    ),
    c.ProductSetSave(
        command_id="e2",
        room=ROOM,
        product_set=ProductSet(set_id="set", name="Spring", product_ids=["p1"]),
    ),
    c.GiveawaySetUp(
        command_id="e3", room=ROOM, giveaway=Giveaway(giveaway_id="g", product_id="p1")
    ),
    c.FlashSaleSetUp(
        command_id="e4",
        room=ROOM,
        sale=FlashSale(sale_id="s", product_id="p1", price_cents=500, stock=3),
    ),
    c.CampaignSave(
        command_id="e5", room=ROOM, campaign=Campaign(campaign_id="cmp", name="Black Friday")
    ),
    c.ShowcaseUpdate(command_id="e6", room=ROOM, product_ids=["p1", "p2", "p1"]),
]


@pytest.mark.parametrize("command", PRE_LIVE, ids=lambda cmd: type(cmd).__name__)
def test_pre_live_features_work_offline_with_access(command: c.Command) -> None:
    """Pre-LIVE features are accepted without a live stream for granted staff."""
    # R12
    room = Room()
    assert not needs_live(command)  # type: ignore[arg-type]
    events = room.ok(STAFF, command)  # type: ignore[arg-type]
    assert events
    assert room.state.status == "offline"


@pytest.mark.parametrize("command", PRE_LIVE, ids=lambda cmd: type(cmd).__name__)
def test_pre_live_features_need_access(command: c.Command) -> None:
    """Pre-LIVE features are refused without access."""
    # R12
    refused(Room().send(REVOKED, command), Code.NO_ACCESS)  # type: ignore[arg-type]


def test_showcase_deduplicates_and_product_set_is_stored() -> None:
    """The showcase keeps each product once; saved sets and events are in the state."""
    # R12
    room = Room()
    for command in PRE_LIVE:
        room.ok(CREATOR, command)  # type: ignore[arg-type]
    assert room.state.showcase == ["p1", "p2"]
    assert room.state.product_sets["set"].product_ids == ["p1"]
    assert room.state.live_events["ev"].title == "Launch"
    assert room.state.campaigns["cmp"].name == "Black Friday"


def test_live_event_edit_cancel_and_bounds() -> None:
    """LIVE events can be edited and cancelled; past starts and unknown ids are refused."""
    # R12
    room = Room()
    room.ok(STAFF, PRE_LIVE[0])  # type: ignore[arg-type]
    refused(room.send(STAFF, PRE_LIVE[0]), Code.ALREADY_EXISTS)  # type: ignore[arg-type]
    past = LiveEvent(event_id="old", title="x", starts_at=T0 - 1)
    refused(
        room.send(STAFF, c.LiveEventSchedule(command_id="p", room=ROOM, event=past)),
        Code.INVALID_ARGUMENT,
    )
    refused(
        room.send(
            STAFF, c.LiveEventEdit(command_id="q", room=ROOM, event_id="ev", starts_at=T0 - 1)
        ),
        Code.INVALID_ARGUMENT,
    )
    assert room.ok(STAFF, c.LiveEventEdit(command_id="r", room=ROOM, event_id="ev")) == []
    room.ok(STAFF, c.LiveEventEdit(command_id="s", room=ROOM, event_id="ev", title="New"))
    assert room.state.live_events["ev"].title == "New"
    room.ok(STAFF, c.LiveEventCancel(command_id="t", room=ROOM, event_id="ev"))
    assert room.state.live_events["ev"].cancelled
    refused(
        room.send(STAFF, c.LiveEventCancel(command_id="u", room=ROOM, event_id="ev")),
        Code.NOT_FOUND,
    )
    refused(
        room.send(STAFF, c.LiveEventEdit(command_id="v", room=ROOM, event_id="ev")), Code.NOT_FOUND
    )
    refused(
        room.send(STAFF, c.ProductSetDelete(command_id="w", room=ROOM, set_id="nope")),
        Code.NOT_FOUND,
    )


# --- R13: during-LIVE features need a live stream -----------------------------

DURING_LIVE = [
    c.BagAdd(command_id="d1", room=ROOM, item=item("p9")),
    c.BagDelete(command_id="d2", room=ROOM, product_id="p1"),
    c.BagPin(command_id="d3", room=ROOM, product_id="p1"),
    c.BagUnpin(command_id="d4", room=ROOM),
    c.BagMove(command_id="d5", room=ROOM, product_id="p1", position=0),
    c.BagList(command_id="d6", room=ROOM),
    c.GiveawayDeploy(command_id="d7", room=ROOM, giveaway_id="g"),
    c.FlashSaleDeploy(command_id="d8", room=ROOM, sale_id="s"),
    c.FlashSaleEnd(command_id="d9", room=ROOM, sale_id="s"),
    c.BillboardDeploy(command_id="d10", room=ROOM, billboard=Billboard(billboard_id="b")),
    c.BillboardTakeDown(command_id="d11", room=ROOM),
    c.CommentSettingsUpdate(command_id="d12", room=ROOM, allow_comments=False),
    c.Mute(command_id="d13", room=ROOM, user_id="u"),
    c.Unmute(command_id="d14", room=ROOM, user_id="u"),
    c.Block(command_id="d15", room=ROOM, user_id="u"),
    c.Unblock(command_id="d16", room=ROOM, user_id="u"),
]


@pytest.mark.parametrize("command", DURING_LIVE, ids=lambda cmd: type(cmd).__name__)
def test_during_live_features_refused_when_not_live(command: c.Command) -> None:
    """Every during-LIVE command is refused with NOT_LIVE while the room is offline."""
    # R13
    room = Room()
    assert needs_live(command)  # type: ignore[arg-type]
    refused(room.send(STAFF, command), Code.NOT_LIVE)  # type: ignore[arg-type]


def test_one_pinned_item_at_a_time() -> None:
    """Pinning another product unpins the first; only one stays pinned."""
    # R13
    room = Room().live().stock("p1", "p2")
    room.ok(STAFF, c.BagPin(command_id="a", room=ROOM, product_id="p1"))
    events = room.ok(STAFF, c.BagPin(command_id="b", room=ROOM, product_id="p2"))
    assert events == [ProductUnpinned(product_id="p1"), ProductPinned(product_id="p2")]
    assert room.state.pinned == "p2"
    refused(
        room.send(STAFF, c.BagPin(command_id="c", room=ROOM, product_id="p2")), Code.ALREADY_ACTIVE
    )
    refused(room.send(STAFF, c.BagPin(command_id="d", room=ROOM, product_id="zz")), Code.NOT_FOUND)
    room.ok(STAFF, c.BagUnpin(command_id="e", room=ROOM))
    assert room.state.pinned is None
    refused(room.send(STAFF, c.BagUnpin(command_id="f", room=ROOM)), Code.NOT_FOUND)


def test_deleting_pinned_product_unpins_it() -> None:
    """Deleting the pinned product unpins it first, so the pin never dangles."""
    # R13
    room = Room().live().stock("p1", "p2")
    room.ok(STAFF, c.BagPin(command_id="a", room=ROOM, product_id="p1"))
    room.ok(STAFF, c.BagDelete(command_id="b", room=ROOM, product_id="p1"))
    assert room.state.pinned is None
    assert room.bag() == ["p2"]
    refused(
        room.send(STAFF, c.BagDelete(command_id="c", room=ROOM, product_id="p1")), Code.NOT_FOUND
    )


@pytest.mark.parametrize(
    ("pid", "position", "expected"),
    [("p1", 2, ["p2", "p3", "p1"]), ("p3", 0, ["p3", "p1", "p2"]), ("p2", 1, ["p1", "p2", "p3"])],
)
def test_move_keeps_positions_a_permutation(pid: str, position: int, expected: list[str]) -> None:
    """Moving an item shifts the others; the bag stays a permutation."""
    # R13
    room = Room().live().stock("p1", "p2", "p3")
    room.ok(STAFF, c.BagMove(command_id="m", room=ROOM, product_id=pid, position=position))
    assert room.bag() == expected


def test_move_and_add_out_of_range_refused() -> None:
    """Moves and adds beyond the bag, duplicates and unknown products are refused."""
    # R13
    room = Room().live().stock("p1", "p2")
    refused(
        room.send(STAFF, c.BagMove(command_id="a", room=ROOM, product_id="p1", position=2)),
        Code.POSITION_OUT_OF_RANGE,
    )
    refused(
        room.send(STAFF, c.BagMove(command_id="b", room=ROOM, product_id="zz", position=0)),
        Code.NOT_FOUND,
    )
    refused(
        room.send(STAFF, c.BagAdd(command_id="c", room=ROOM, item=item("p1"))), Code.ALREADY_EXISTS
    )
    refused(
        room.send(STAFF, c.BagAdd(command_id="d", room=ROOM, item=item("p3"), position=3)),
        Code.POSITION_OUT_OF_RANGE,
    )
    room.ok(STAFF, c.BagAdd(command_id="e", room=ROOM, item=item("p0"), position=0))
    assert room.bag() == ["p0", "p1", "p2"]


def test_bag_limit() -> None:
    """The bag refuses items beyond its limit."""
    # R13
    room = Room().live()
    room.state = replace(room.state, bag=[item(f"p{i}") for i in range(MAX_BAG_ITEMS)])
    refused(
        room.send(STAFF, c.BagAdd(command_id="x", room=ROOM, item=item("new"))), Code.LIMIT_REACHED
    )


def test_list_filtered_by_category_and_stock() -> None:
    """The bag list filters by category and by stock, keeping bag order."""
    # R13
    room = Room().live()
    for pid, cat, stock in [("a", "shoes", 0), ("b", "hats", 3), ("c", "shoes", 5)]:
        room.ok(CREATOR, c.BagAdd(command_id=pid, room=ROOM, item=item(pid, cat, stock)))
    assert room.ok(STAFF, c.BagList(command_id="l", room=ROOM, category="shoes")) == []
    ids = [i.product_id for i in list_bag(room.state, "shoes", None)]
    assert ids == ["a", "c"]
    assert [i.product_id for i in list_bag(room.state, None, True)] == ["b", "c"]
    assert [i.product_id for i in list_bag(room.state, "shoes", False)] == ["a"]


def sale_room(stock: int = 3) -> Room:
    room = Room().live().stock("p1")
    sale = FlashSale(sale_id="s", product_id="p1", price_cents=500, stock=stock, duration_s=60)
    room.ok(STAFF, c.FlashSaleSetUp(command_id="su", room=ROOM, sale=sale))
    room.ok(STAFF, c.FlashSaleDeploy(command_id="sd", room=ROOM, sale_id="s"))
    return room


def order(cid: str, quantity: int, sale_id: str | None = "s", pid: str = "p1") -> c.FeedOrder:
    return c.FeedOrder(
        command_id=cid,
        room=ROOM,
        order_id=cid,
        user=VIEWER,
        product_id=pid,
        quantity=quantity,
        amount_cents=500 * quantity,
        sale_id=sale_id,
    )


def test_flash_sale_never_oversells() -> None:
    """Orders beyond a flash sale's stock are refused; the last unit ends the sale."""
    # R13
    room = sale_room(stock=3)
    room.ok(CREATOR, order("o1", 2))
    refused(room.send(CREATOR, order("o2", 2)), Code.SOLD_OUT)
    events = room.ok(CREATOR, order("o3", 1))
    assert isinstance(events[0], OrderPlaced)
    assert events[1] == FlashSaleEnded(sale_id="s", reason="sold_out")
    assert room.state.flash_sales["s"].sold == 3
    refused(room.send(CREATOR, order("o4", 1)), Code.SALE_NOT_ACTIVE)


def test_flash_sale_lifecycle_and_expiry() -> None:
    """A sale runs for its duration: redeploy, wrong product and expired orders are refused."""
    # R13
    room = sale_room()
    refused(
        room.send(STAFF, c.FlashSaleDeploy(command_id="x", room=ROOM, sale_id="s")),
        Code.ALREADY_ACTIVE,
    )
    sale = FlashSale(sale_id="s", product_id="p1", price_cents=1, stock=1)
    refused(
        room.send(STAFF, c.FlashSaleSetUp(command_id="y", room=ROOM, sale=sale)),
        Code.ALREADY_ACTIVE,
    )
    refused(room.send(CREATOR, order("o1", 1, pid="p2")), Code.INVALID_ARGUMENT)
    refused(room.send(CREATOR, order("o2", 1, sale_id="nope")), Code.NOT_FOUND)
    room.now += 61_000
    refused(room.send(CREATOR, order("o3", 1)), Code.SALE_NOT_ACTIVE)
    refused(
        room.send(STAFF, c.FlashSaleEnd(command_id="z", room=ROOM, sale_id="s")),
        Code.SALE_NOT_ACTIVE,
    )
    refused(
        room.send(STAFF, c.FlashSaleDeploy(command_id="w", room=ROOM, sale_id="s")),
        Code.SALE_NOT_ACTIVE,
    )
    refused(
        room.send(STAFF, c.FlashSaleDeploy(command_id="v", room=ROOM, sale_id="nope")),
        Code.NOT_FOUND,
    )
    refused(
        room.send(STAFF, c.FlashSaleEnd(command_id="u", room=ROOM, sale_id="nope")), Code.NOT_FOUND
    )


def test_flash_sale_ended_early_and_closed_with_live() -> None:
    """Staff can end a running sale; ending the LIVE closes sales still open."""
    # R13
    room = sale_room()
    room.ok(STAFF, c.FlashSaleEnd(command_id="e", room=ROOM, sale_id="s"))
    assert room.state.flash_sales["s"].ended
    room.ok(
        STAFF,
        c.FlashSaleSetUp(
            command_id="again",
            room=ROOM,
            sale=FlashSale(sale_id="t", product_id="p1", price_cents=1, stock=5, duration_s=60),
        ),
    )
    room.ok(STAFF, c.FlashSaleDeploy(command_id="dt", room=ROOM, sale_id="t"))
    events = room.ok(CREATOR, c.EndLive(command_id="end", room=ROOM))
    assert events[0] == FlashSaleEnded(sale_id="t", reason="live_ended")


def test_giveaway_set_up_and_deploy() -> None:
    """A giveaway is set up, deployed once while it runs, and can run again later."""
    # R13
    room = Room().live()
    refused(
        room.send(STAFF, c.GiveawayDeploy(command_id="a", room=ROOM, giveaway_id="g")),
        Code.NOT_FOUND,
    )
    g = Giveaway(giveaway_id="g", product_id="p1", duration_s=10)
    room.ok(STAFF, c.GiveawaySetUp(command_id="b", room=ROOM, giveaway=g))
    room.ok(STAFF, c.GiveawayDeploy(command_id="c", room=ROOM, giveaway_id="g"))
    assert room.state.giveaways["g"].ends_at == room.now + 10_000
    refused(
        room.send(STAFF, c.GiveawayDeploy(command_id="d", room=ROOM, giveaway_id="g")),
        Code.ALREADY_ACTIVE,
    )
    refused(
        room.send(STAFF, c.GiveawaySetUp(command_id="e", room=ROOM, giveaway=g)),
        Code.ALREADY_ACTIVE,
    )
    room.now += 10_000
    room.ok(STAFF, c.GiveawayDeploy(command_id="f", room=ROOM, giveaway_id="g"))


def test_giveaway_ends_with_the_live_as_an_event() -> None:
    """A giveaway still running when the LIVE ends ends with it: a giveaway_ended
    event (live_ended, at the LIVE's end) before live_ended, as for flash sales."""
    # R13
    room = Room().live()
    g = Giveaway(giveaway_id="g", product_id="p1", duration_s=600)
    room.ok(STAFF, c.GiveawaySetUp(command_id="a", room=ROOM, giveaway=g))
    room.ok(STAFF, c.GiveawayDeploy(command_id="b", room=ROOM, giveaway_id="g"))
    room.now += 1_000
    events = room.ok(CREATOR, c.EndLive(command_id="end", room=ROOM))
    assert events[:-1] == [GiveawayEnded(giveaway_id="g", reason="live_ended", ended_at=room.now)]
    assert isinstance(events[-1], LiveEnded)
    ended = room.state.giveaways["g"]
    assert (ended.ended, ended.ends_at) == (True, room.now)
    assert room.state.versions["promotion"] == room.log[-2].seq


def test_giveaway_ends_on_its_own_end_time_as_an_event() -> None:
    """A giveaway past its own end time ends with a giveaway_ended event (expired,
    at its end time), recorded when it is deployed or set up again or when the
    LIVE ends; a deployment ends once."""
    # R13
    room = Room().live()
    g = Giveaway(giveaway_id="g", product_id="p1", duration_s=10)
    room.ok(STAFF, c.GiveawaySetUp(command_id="a", room=ROOM, giveaway=g))
    room.ok(STAFF, c.GiveawayDeploy(command_id="b", room=ROOM, giveaway_id="g"))
    first_end = room.now + 10_000
    room.now += 60_000
    again = room.ok(STAFF, c.GiveawayDeploy(command_id="c", room=ROOM, giveaway_id="g"))
    assert again[0] == GiveawayEnded(giveaway_id="g", reason="expired", ended_at=first_end)
    assert isinstance(again[1], GiveawayDeployed)
    second_end = room.now + 10_000
    room.now += 60_000
    reset = room.ok(STAFF, c.GiveawaySetUp(command_id="d", room=ROOM, giveaway=g))
    assert reset[0] == GiveawayEnded(giveaway_id="g", reason="expired", ended_at=second_end)
    assert isinstance(reset[1], GiveawayReady)
    room.ok(STAFF, c.GiveawayDeploy(command_id="e", room=ROOM, giveaway_id="g"))
    third_end = room.now + 10_000
    room.now += 60_000
    events = room.ok(CREATOR, c.EndLive(command_id="end", room=ROOM))
    assert events[0] == GiveawayEnded(giveaway_id="g", reason="expired", ended_at=third_end)
    assert isinstance(events[1], LiveEnded)
    ends = [e.body for e in room.log if isinstance(e.body, GiveawayEnded)]
    deploys = [e.body for e in room.log if isinstance(e.body, GiveawayDeployed)]
    assert len(ends) == len(deploys) == 3
    room.live()
    assert not any(
        isinstance(e, GiveawayEnded)
        for e in room.ok(CREATOR, c.EndLive(command_id="end2", room=ROOM))
    )


def test_billboard_deploy_and_take_down() -> None:
    """A billboard replaces the current one and can be taken down once."""
    # R13
    room = Room().live()
    refused(room.send(STAFF, c.BillboardTakeDown(command_id="a", room=ROOM)), Code.NOT_FOUND)
    room.ok(
        STAFF,
        c.BillboardDeploy(
            command_id="b", room=ROOM, billboard=Billboard(billboard_id="b1", text="50% off")
        ),
    )
    room.ok(
        STAFF, c.BillboardDeploy(command_id="c", room=ROOM, billboard=Billboard(billboard_id="b2"))
    )
    assert room.state.billboard is not None
    assert room.state.billboard.billboard_id == "b2"
    room.ok(STAFF, c.BillboardTakeDown(command_id="d", room=ROOM))
    assert room.state.billboard is None


def test_mute_and_block_expire_after_their_duration() -> None:
    """A mute hides the account's comments until it expires; default durations apply."""
    # R13
    room = Room().live()
    room.ok(MODERATOR, c.Mute(command_id="m", room=ROOM, user_id="viewer-1", duration_s=60))
    hidden = room.ok(
        CREATOR,
        c.FeedComment(command_id="c1", room=ROOM, comment_id="c1", user=VIEWER, content="hi"),
    )
    assert hidden == [CommentPosted(comment_id="c1", user=VIEWER, content="hi", hidden="muted")]
    room.now += 60_000
    # Ended, and still listed (no event since): lifted like a mute in force, so what
    # the state shows and what the room answers agree (test_caps covers the rest).
    assert room.ok(MODERATOR, c.Unmute(command_id="u", room=ROOM, user_id="viewer-1")) == [
        UserUnmuted(user_id="viewer-1")
    ]
    refused(
        room.send(MODERATOR, c.Unmute(command_id="u1", room=ROOM, user_id="viewer-1")),
        Code.NOT_FOUND,
    )
    shown = room.ok(
        CREATOR,
        c.FeedComment(command_id="c2", room=ROOM, comment_id="c2", user=VIEWER, content="hi"),
    )
    assert isinstance(shown[0], CommentPosted)
    assert shown[0].hidden is None
    room.ok(MODERATOR, c.Block(command_id="b", room=ROOM, user_id="viewer-1"))
    assert room.state.blocked["viewer-1"] == room.now + 24 * 3600 * 1000
    blocked = room.ok(
        CREATOR,
        c.FeedComment(command_id="c3", room=ROOM, comment_id="c3", user=VIEWER, content="hi"),
    )
    assert isinstance(blocked[0], CommentPosted)
    assert blocked[0].hidden == "blocked"
    room.ok(MODERATOR, c.Unblock(command_id="ub", room=ROOM, user_id="viewer-1"))
    refused(
        room.send(MODERATOR, c.Unblock(command_id="ub2", room=ROOM, user_id="viewer-1")),
        Code.NOT_FOUND,
    )
    room.ok(MODERATOR, c.Mute(command_id="m2", room=ROOM, user_id="viewer-1"))
    assert room.state.muted["viewer-1"] == room.now + 300_000
    room.ok(MODERATOR, c.Unmute(command_id="u2", room=ROOM, user_id="viewer-1"))
    assert "viewer-1" not in room.state.muted


@pytest.mark.parametrize(
    ("settings", "content", "hidden"),
    [
        ({"allow_comments": False}, "hello", "comments_off"),
        ({}, "buy at https://spam.example", "spam"),
        ({}, "!!!!!!!!!!!!!!!!!!!!!!!!", "spam"),
        ({"filter_spam": False}, "buy at https://spam.example", None),
        ({}, "love this dress", None),
    ],
)
def test_comment_settings(settings: dict[str, bool], content: str, hidden: str | None) -> None:
    """Comment settings decide which comments the audience sees."""
    # R13
    room = Room().live()
    room.send(MODERATOR, c.CommentSettingsUpdate(command_id="s", room=ROOM, **settings))
    events = room.ok(
        CREATOR,
        c.FeedComment(command_id="c", room=ROOM, comment_id="c", user=VIEWER, content=content),
    )
    assert isinstance(events[0], CommentPosted)
    assert events[0].hidden == hidden


def test_comment_settings_unchanged_is_no_event_and_defaults_update() -> None:
    """An update that changes nothing yields no event; durations update."""
    # R13
    room = Room().live()
    assert room.ok(MODERATOR, c.CommentSettingsUpdate(command_id="a", room=ROOM)) == []
    room.ok(
        MODERATOR,
        c.CommentSettingsUpdate(
            command_id="b", room=ROOM, show_top_comment=True, default_mute_s=10, default_block_s=20
        ),
    )
    cs = room.state.comment_settings
    assert (cs.show_top_comment, cs.default_mute_s, cs.default_block_s) == (True, 10, 20)
    assert is_spam("visit www.example.com")
    assert not is_spam("aaaa")


@pytest.mark.parametrize(
    "command",
    [
        c.FeedComment(command_id="f1", room=ROOM, comment_id="c", user=VIEWER, content="x"),
        order("f2", 1, sale_id=None),
        c.FeedSubscription(command_id="f3", room=ROOM, user=VIEWER),
        c.FeedFollow(command_id="f4", room=ROOM, user=VIEWER),
        c.FeedGift(command_id="f5", room=ROOM, user=VIEWER, gift_id=5655, gift_name="Rose"),
        c.FeedViewers(command_id="f6", room=ROOM, total=10),
        c.FeedViolation(
            command_id="f7", room=ROOM, violation=Violation(violation_id="v", policy="minor safety")
        ),
    ],
    ids=lambda cmd: type(cmd).__name__,
)
def test_activity_feed_is_the_creator_clients(command: c.Command) -> None:
    """Only the creator client feeds activity; it needs a live stream."""
    # R13
    room = Room()
    refused(room.send(CREATOR, command), Code.NOT_LIVE)  # type: ignore[arg-type]
    room.live()
    refused(room.send(STAFF, command), Code.FEED_CREATOR_ONLY)  # type: ignore[arg-type]
    assert room.ok(CREATOR, command)  # type: ignore[arg-type]


# --- grant scopes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (c.BagPin(command_id="a", room=ROOM, product_id="p1"), Code.OUT_OF_SCOPE),
        (
            c.BillboardDeploy(command_id="b", room=ROOM, billboard=Billboard(billboard_id="x")),
            Code.OUT_OF_SCOPE,
        ),
        (PRE_LIVE[0], Code.OUT_OF_SCOPE),
    ],
)
def test_scoped_grant_refuses_commands_outside_its_scope(command: c.Command, code: Code) -> None:
    """A moderation-only grant refuses bag, billboard and planning commands."""
    # R5 (scoped grant)
    room = Room().live().stock("p1")
    refused(room.send(MODERATOR, command), code)  # type: ignore[arg-type]
    room.ok(MODERATOR, c.Mute(command_id="m", room=ROOM, user_id="u"))


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        (REVOKED, Code.NO_ACCESS),
        (ENDED, Code.LINK_ENDED),
        (OTHER_AGENCY, Code.NO_ACCESS),
        (STRANGER, Code.FORBIDDEN),
    ],
)
def test_no_command_from_revoked_or_unrelated_callers(caller: Caller, code: Code) -> None:
    """Every command re-checks access: revoked, ended and unrelated callers are refused."""
    # R6
    room = Room().live().stock("p1")
    refused(room.send(caller, c.BagPin(command_id="a", room=ROOM, product_id="p1")), code)
    assert room.state.pinned is None


# --- R14, R15: notifications ------------------------------------------------------


def test_agency_created_events_are_notified_to_creator() -> None:
    """Events the agency creates carry a creator notification; the creator's own do not."""
    # R14
    room = Room()
    events = room.ok(STAFF, PRE_LIVE[0])  # type: ignore[arg-type]
    notes = [e for e in events if isinstance(e, CreatorNotified)]
    assert len(notes) == 1
    assert notes[0].kind == "agency_created"
    assert room.log[-1].by == STAFF.actor
    own = room.ok(
        CREATOR,
        c.ProductSetSave(
            command_id="own", room=ROOM, product_set=ProductSet(set_id="mine", name="Mine")
        ),
    )
    assert not any(isinstance(e, CreatorNotified) for e in own)


def test_staff_entering_is_notified_to_creator() -> None:
    """Staff entering the live room yields a staff_entered notification."""
    # R15
    room = Room().live()
    events = decide_enter(room.state, STAFF, room.now)
    assert isinstance(events, list)
    assert len(events) == 1
    assert isinstance(events[0], CreatorNotified)
    assert events[0].kind == "staff_entered"
    assert "staff-1" in events[0].text


def notification_ids(room_id: str, creations: int) -> list[str]:
    """The notification ids of a room that goes live, is entered by staff and gets
    ``creations`` LIVE events scheduled by them."""
    creator = Caller(actor=Actor(role="creator", id=room_id))
    staff = Caller(actor=STAFF.actor, grant=Grant(agency="agency-1", creator=room_id))
    state = new_room(room_id, room_id)
    ids: list[str] = []

    def apply(events: object, by: Caller) -> None:
        nonlocal state
        assert isinstance(events, list), events
        for body in events:
            state = evolve(
                state,
                Event(
                    room=room_id, seq=state.seq + 1, at=T0, actor=room_id, by=by.actor, body=body
                ),
            )
            if isinstance(body, CreatorNotified):
                ids.append(body.notification_id)

    apply(decide(state, creator, c.StartLive(command_id="go", room=room_id), T0), creator)
    apply(decide_enter(state, staff, T0), staff)
    for n in range(creations):
        event = LiveEvent(event_id=f"e{n}", title="Show", starts_at=T0 + 1000)
        command = c.LiveEventSchedule(command_id=f"s{n}", room=room_id, event=event)
        apply(decide(state, staff, command, T0), staff)
    return ids


def test_notification_ids_are_unique_for_the_longest_room_id() -> None:
    """Every notification of a room whose id is as long as an Id may be (128) gets
    an id of its own, itself a valid Id: none is cut short into another's."""
    # R14, R15
    long_id = "c" * 127 + "1"
    assert msgspec.convert(long_id, Id) == long_id
    ids = notification_ids(long_id, 12)
    assert len(ids) == 13
    assert len(set(ids)) == 13, ids
    assert all(msgspec.convert(nid, Id) == nid for nid in ids)
    # Another room of the longest length names its notifications apart too.
    assert not set(ids) & set(notification_ids("c" * 127 + "2", 12))


# --- R16: the audience sees the creator; the log keeps the real actor ------------


def test_events_show_creator_and_keep_real_actor() -> None:
    """Every event shows the creator as actor and records the staff member who acted."""
    # R16
    room = Room().live().stock("p1")
    room.ok(STAFF, c.BagPin(command_id="a", room=ROOM, product_id="p1"))
    last = room.log[-1]
    assert last.actor == CREATOR_ID
    assert last.by == STAFF.actor
    assert last.by.agency == "agency-1"


# --- H5: concurrent edits -------------------------------------------------------


def test_stale_expected_version_is_refused() -> None:
    """Of two staff moving the bag from the same version, the second is refused as stale."""
    # H5
    room = Room().live().stock("p1", "p2", "p3")
    version = room.state.versions["bag"]
    room.ok(
        STAFF,
        c.BagMove(command_id="a", room=ROOM, product_id="p1", position=2, expected_version=version),
    )
    before = room.bag()
    refused(
        room.send(
            STAFF,
            c.BagMove(
                command_id="b", room=ROOM, product_id="p3", position=0, expected_version=version
            ),
        ),
        Code.STALE_VERSION,
    )
    assert room.bag() == before


def test_feed_does_not_make_bag_commands_stale() -> None:
    """Comments and orders do not advance the bag's version."""
    # H5
    room = Room().live().stock("p1", "p2")
    version = room.state.versions["bag"]
    room.ok(
        CREATOR, c.FeedComment(command_id="c", room=ROOM, comment_id="c", user=VIEWER, content="hi")
    )
    room.ok(CREATOR, order("o", 1, sale_id=None))
    room.ok(
        STAFF,
        c.BagMove(command_id="m", room=ROOM, product_id="p2", position=0, expected_version=version),
    )
    assert room.bag() == ["p2", "p1"]


def test_command_without_version_is_validated_against_current_state() -> None:
    """Without expected_version a command is rebased: checked against the state it meets."""
    # H5
    room = Room().live().stock("p1", "p2")
    room.ok(STAFF, c.BagDelete(command_id="a", room=ROOM, product_id="p2"))
    refused(
        room.send(STAFF, c.BagMove(command_id="b", room=ROOM, product_id="p2", position=0)),
        Code.NOT_FOUND,
    )
    refused(
        room.send(STAFF, c.BagMove(command_id="c", room=ROOM, product_id="p1", position=1)),
        Code.POSITION_OUT_OF_RANGE,
    )
    assert room.bag() == ["p1"]


def test_decide_is_pure() -> None:
    """Deciding never changes the state it is given."""
    # H5
    room = Room().live().stock("p1")
    before = room.state
    decision = decide(before, STAFF, c.BagPin(command_id="a", room=ROOM, product_id="p1"), room.now)
    assert decision == [ProductPinned(product_id="p1")]
    assert before.pinned is None


@pytest.mark.parametrize(
    "make",
    [
        lambda i: c.LiveEventSchedule(
            command_id=f"e{i}",
            room=ROOM,
            event=LiveEvent(event_id=f"e{i}", title="t", starts_at=T0 + 1),
        ),
        lambda i: c.ProductSetSave(
            command_id=f"s{i}", room=ROOM, product_set=ProductSet(set_id=f"s{i}", name="n")
        ),
        lambda i: c.CampaignSave(
            command_id=f"c{i}", room=ROOM, campaign=Campaign(campaign_id=f"c{i}", name="n")
        ),
    ],
    ids=["live_events", "product_sets", "campaigns"],
)
def test_planning_limits(make: Callable[[int], c.Command]) -> None:
    """Each planning collection holds at most MAX_PLANNED entries; replacing one is fine."""
    # R12
    room = Room()
    for i in range(MAX_PLANNED):
        room.ok(CREATOR, make(i))  # type: ignore[arg-type]
    refused(room.send(CREATOR, make(MAX_PLANNED)), Code.LIMIT_REACHED)  # type: ignore[arg-type]


def test_product_set_delete() -> None:
    """A saved product set can be deleted, and is gone from the state."""
    # R12
    room = Room()
    room.ok(STAFF, PRE_LIVE[1])  # type: ignore[arg-type]
    room.ok(STAFF, c.ProductSetDelete(command_id="del", room=ROOM, set_id="set"))
    assert room.state.product_sets == {}
