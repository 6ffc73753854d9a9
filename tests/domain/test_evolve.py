"""Folding events: post-LIVE figures, account health and replay."""

from __future__ import annotations

from protocol import commands as c
from protocol.errors import Code
from protocol.events import CreatorNotified, LiveEnded, ProductPinned, ViewersChanged
from protocol.model import Violation
from server.domain.evolve import evolve, family_of, new_room
from server.domain.refusal import Refusal
from tests.domain.builders import CREATOR, CREATOR_ID, MODERATOR, ROOM, STAFF, VIEWER, Room


def feed_a_live(room: Room) -> Room:
    """Two minutes of a LIVE: viewers, comments, orders, gifts, follows, a violation."""
    room.live().stock("p1")
    room.ok(CREATOR, c.FeedViewers(command_id="v1", room=ROOM, total=40))
    room.ok(
        CREATOR,
        c.FeedComment(command_id="c1", room=ROOM, comment_id="c1", user=VIEWER, content="hello"),
    )
    room.ok(
        CREATOR,
        c.FeedOrder(
            command_id="o1",
            room=ROOM,
            order_id="o1",
            user=VIEWER,
            product_id="p1",
            quantity=2,
            amount_cents=3000,
        ),
    )
    room.now += 61_000
    room.ok(CREATOR, c.FeedViewers(command_id="v2", room=ROOM, total=120))
    room.ok(CREATOR, c.FeedViewers(command_id="v3", room=ROOM, total=90))
    room.ok(
        CREATOR,
        c.FeedOrder(
            command_id="o2",
            room=ROOM,
            order_id="o2",
            user=VIEWER,
            product_id="p1",
            quantity=1,
            amount_cents=1500,
        ),
    )
    room.ok(
        CREATOR,
        c.FeedGift(
            command_id="g1", room=ROOM, user=VIEWER, gift_id=1, repeat_count=3, repeat_end=False
        ),
    )
    room.ok(
        CREATOR,
        c.FeedGift(
            command_id="g2", room=ROOM, user=VIEWER, gift_id=1, repeat_count=5, repeat_end=True
        ),
    )
    room.ok(CREATOR, c.FeedFollow(command_id="f1", room=ROOM, user=VIEWER))
    room.ok(CREATOR, c.FeedSubscription(command_id="s1", room=ROOM, user=VIEWER, month=2))
    room.ok(
        CREATOR,
        c.FeedViolation(
            command_id="x1",
            room=ROOM,
            violation=Violation(violation_id="x1", policy="prohibited product", severity="high"),
        ),
    )
    room.now += 30_000
    room.ok(CREATOR, c.EndLive(command_id="end", room=ROOM))
    return room


def test_post_live_figures_are_derived_from_events() -> None:
    """Ending a LIVE records its duration, peak viewers, orders, GMV and per-minute series."""
    # R12 (performance data after the LIVE)
    room = feed_a_live(Room())
    [summary] = room.state.lives
    assert summary.duration_ms == 91_000
    assert (summary.viewers, summary.peak_viewers) == (90, 120)
    assert (summary.orders, summary.units, summary.gmv_cents) == (2, 3, 4500)
    assert (summary.comments, summary.gifts, summary.follows) == (1, 5, 1)
    assert (summary.subscriptions, summary.violations) == (1, 1)
    assert [
        (b.minute, b.viewers, b.orders, b.gmv_cents, b.comments) for b in summary.per_minute
    ] == [(0, 40, 1, 3000, 1), (1, 90, 1, 1500, 0)]
    assert summary.conversion == 2 / 120
    assert isinstance(room.log[-1].body, LiveEnded)


def test_account_health_keeps_every_violation_and_stock_is_drawn_down() -> None:
    """Violations accumulate across LIVEs; orders draw down the bag item's stock."""
    # R12 (account health)
    room = feed_a_live(Room())
    assert [v.violation_id for v in room.state.violations] == ["x1"]
    assert room.state.violations[0].at == room.log[-2].at
    assert room.state.bag[0].stock == 7
    assert room.state.current is None
    assert room.state.pinned is None


def test_replaying_the_log_rebuilds_the_state() -> None:
    """Folding the logged events from an empty room gives the same state."""
    # H2
    room = feed_a_live(Room())
    replayed = new_room(ROOM, CREATOR_ID)
    for event in room.log:
        replayed = evolve(replayed, event)
    assert replayed == room.state
    assert [e.seq for e in room.log] == list(range(1, len(room.log) + 1))


def test_versions_track_families_but_not_feed() -> None:
    """Bag events advance the bag version; feed events and notifications advance none."""
    # H5
    assert family_of(ProductPinned(product_id="p")) == "bag"
    assert family_of(ViewersChanged(total=1)) is None
    assert family_of(CreatorNotified(notification_id="n", kind="staff_entered", text="")) is None
    room = Room().live().stock("p1")
    bag_version = room.state.versions["bag"]
    room.ok(CREATOR, c.FeedViewers(command_id="v", room=ROOM, total=3))
    assert room.state.versions["bag"] == bag_version
    room.ok(STAFF, c.BagPin(command_id="p", room=ROOM, product_id="p1"))
    assert room.state.versions["bag"] == room.state.seq


def test_an_order_beyond_the_bag_stock_is_counted_as_oversold() -> None:
    """An order is a platform fact: beyond the bag item's stock it is still recorded,
    the stock stays at 0, and the LIVE's figures count the excess units as oversold."""
    # R13 (orders in the activity feed; only a flash sale never oversells)
    room = Room().live().stock("p1", "p2")  # 10 of each

    def order(oid: str, pid: str, quantity: int) -> None:
        room.ok(
            CREATOR,
            c.FeedOrder(
                command_id=oid,
                room=ROOM,
                order_id=oid,
                user=VIEWER,
                product_id=pid,
                quantity=quantity,
                amount_cents=100,
            ),
        )

    order("o1", "p1", 12)
    assert [i.stock for i in room.state.bag] == [0, 10]
    assert room.state.current is not None
    assert (room.state.current.units, room.state.current.oversold) == (12, 2)
    order("o2", "p1", 3)  # none left: all three oversold
    order("o3", "p2", 10)  # exactly the stock: none oversold
    order("o4", "unlisted", 5)  # not in the bag: no stock to exceed
    assert [i.stock for i in room.state.bag] == [0, 0]
    room.ok(CREATOR, c.EndLive(command_id="end", room=ROOM))
    [summary] = room.state.lives
    assert (summary.orders, summary.units, summary.oversold) == (4, 30, 5)


def test_ended_mutes_and_blocks_leave_the_state_with_the_next_event() -> None:
    """A mute or block leaves the room state (and so every later snapshot) with the first
    event folded at or after its end, whatever that event is; one in force stays."""
    # R13 (mute / block for a duration)
    room = Room().live()
    room.ok(MODERATOR, c.Mute(command_id="m1", room=ROOM, user_id="short", duration_s=60))
    room.ok(MODERATOR, c.Mute(command_id="m2", room=ROOM, user_id="long", duration_s=600))
    room.ok(MODERATOR, c.Block(command_id="b1", room=ROOM, user_id="short", duration_s=60))
    room.now += 60_000
    room.ok(CREATOR, c.FeedViewers(command_id="v", room=ROOM, total=3))
    assert room.state.muted == {"long": room.now + 540_000}
    assert room.state.blocked == {}
    # Nothing to lift any more: the answer agrees with what the state lists.
    unmute = c.Unmute(command_id="u", room=ROOM, user_id="short")
    refused = room.send(MODERATOR, unmute)
    assert isinstance(refused, Refusal)
    assert refused.code == Code.NOT_FOUND
    # Replaying the log prunes the same entries at the same events.
    replayed = new_room(ROOM, CREATOR_ID)
    for event in room.log:
        replayed = evolve(replayed, event)
    assert replayed == room.state


def test_mutes_stay_ordered_by_their_end_whatever_the_durations() -> None:
    """Mutes are kept earliest end first (a shorter mute after a longer one, a renewal),
    so the check each event makes looks at the first only."""
    room = Room().live()
    for uid, seconds in (("a", 600), ("b", 60), ("c", 300), ("a", 30)):
        room.ok(
            MODERATOR,
            c.Mute(command_id=f"m-{uid}-{seconds}", room=ROOM, user_id=uid, duration_s=seconds),
        )
    assert list(room.state.muted) == ["a", "b", "c"]
    ends = list(room.state.muted.values())
    assert ends == sorted(ends)
    room.now += 61_000
    room.ok(CREATOR, c.FeedFollow(command_id="f", room=ROOM, user=VIEWER))
    assert list(room.state.muted) == ["c"]
