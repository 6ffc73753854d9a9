"""One bound per quantity (decision 0017): no value a command may carry breaks a
decoder downstream, and running sums saturate instead of leaving their type."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from protocol import commands as c
from protocol import events as ev
from protocol.codec import Codec
from protocol.messages import Event, RoomCommand, Snapshot
from protocol.model import TOTAL_MAX, BagItem, LiveSummary, MinuteBucket, RoomState, Viewer
from server.domain.evolve import plus
from server.domain.refusal import Refusal
from server.domain.room import decide, evolve
from server.log.base import RoomLogCodec
from tests.domain.builders import CREATOR, CREATOR_ID, ROOM, Room

CENTS_MAX = 10**12
COUNT_MAX = 10**9
QUANTITY_MAX = 10**6
CODECS = (Codec("json"), Codec("msgpack"))
STORED = RoomLogCodec()


def extreme(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers in ``low..high``, mostly at and next to the bounds."""
    edges = st.sampled_from(sorted({low, low + 1, high - 1, high}))
    return st.one_of(edges, edges, st.integers(low, high))


VIEWER = st.builds(Viewer, unique_id=st.just("v"), member_level=extreme(0, COUNT_MAX))


def _cmd(cls: type[RoomCommand], **fields: st.SearchStrategy[object]) -> st.SearchStrategy:
    return st.builds(cls, command_id=st.just("cmd"), room=st.just(ROOM), **fields)


FEED = st.one_of(
    _cmd(c.FeedOrder, order_id=st.just("o"), user=VIEWER, product_id=st.just("p1"),
         quantity=extreme(1, QUANTITY_MAX), amount_cents=extreme(0, CENTS_MAX)),
    _cmd(c.FeedGift, user=VIEWER, gift_id=extreme(0, COUNT_MAX),
         repeat_count=extreme(0, COUNT_MAX), repeat_end=st.booleans()),
    _cmd(c.FeedViewers, total=extreme(0, COUNT_MAX)),
    _cmd(c.FeedSubscription, user=VIEWER, month=extreme(0, COUNT_MAX)),
    _cmd(c.FeedFollow, user=VIEWER),
    _cmd(c.FeedComment, comment_id=st.just("cm"), user=VIEWER, content=st.just("hi")),
    _cmd(c.BagAdd, item=st.builds(BagItem, product_id=st.sampled_from(["p2", "p3"]),
                                  price_cents=extreme(0, CENTS_MAX),
                                  stock=extreme(0, COUNT_MAX))),
)  # fmt: skip
TOTALS = extreme(0, TOTAL_MAX)


def _through_every_decoder(event: Event) -> None:
    """The event as the store keeps it and as each client decodes it."""
    assert STORED.decode_events(ROOM, event.seq, [STORED.encode(event)]) == [event]
    for codec in CODECS:
        assert codec.decode_server(codec.encode(event)) == event


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.tuples(TOTALS, TOTALS, TOTALS, TOTALS, TOTALS, TOTALS, TOTALS, TOTALS),
    commands=st.lists(FEED, min_size=1, max_size=25),
    gaps=st.lists(st.integers(0, 90_000), min_size=25, max_size=25),
)
def test_extreme_values_survive_decide_store_snapshot_reload_and_join(start, commands, gaps):
    """The largest values commands accept, fed on top of running figures near their own
    bound, decode everywhere (store, snapshot, both wire formats) and saturate the sums."""
    # H6 (bad input never breaks the room), R13 (the LIVE dashboard)
    room = Room().live().stock("p1")
    orders, units, gmv, comments, gifts, follows, subs, minute_gmv = start
    current = room.state.current
    assert current is not None
    bucket = MinuteBucket(minute=0, orders=orders, gmv_cents=minute_gmv, comments=comments)
    current = replace(
        current,
        orders=orders,
        units=units,
        gmv_cents=gmv,
        comments=comments,
        gifts=gifts,
        follows=follows,
        subscriptions=subs,
        per_minute=[bucket],
    )
    state = replace(room.state, current=current)
    log: list[Event] = []
    expected = {
        "orders": orders,
        "units": units,
        "gmv_cents": gmv,
        "comments": comments,
        "gifts": gifts,
        "follows": follows,
        "subscriptions": subs,
    }
    now = room.now
    for index, (command, gap) in enumerate(zip(commands, gaps, strict=False)):
        now += gap
        decision = decide(state, CREATOR, replace(command, command_id=f"c{index}"), now)
        if isinstance(decision, Refusal):  # the second add of one product, only
            assert isinstance(command, c.BagAdd), decision
            continue
        for body in decision:
            event = Event(
                room=ROOM,
                seq=state.seq + 1,
                at=now,
                actor=CREATOR_ID,
                by=CREATOR.actor,
                body=body,
                command_id=f"c{index}",
            )
            _through_every_decoder(event)
            state = evolve(state, event)
            log.append(event)
            match body:
                case ev.OrderPlaced(quantity=q, amount_cents=amount):
                    for name, n in (("orders", 1), ("units", q), ("gmv_cents", amount)):
                        expected[name] = min(expected[name] + n, TOTAL_MAX)
                case ev.GiftSent(repeat_count=n, repeat_end=True):
                    expected["gifts"] = min(expected["gifts"] + n, TOTAL_MAX)
                case ev.CommentPosted():
                    expected["comments"] = min(expected["comments"] + 1, TOTAL_MAX)
                case ev.Followed():
                    expected["follows"] = min(expected["follows"] + 1, TOTAL_MAX)
                case ev.Subscribed():
                    expected["subscriptions"] = min(expected["subscriptions"] + 1, TOTAL_MAX)
                case _:
                    pass
    assert state.current is not None
    assert {name: getattr(state.current, name) for name in expected} == expected
    # Snapshot -> reload -> join: the stored snapshot decodes, replays, and reaches a client.
    snapshot = STORED.decode_state(ROOM, STORED.encode(state))
    assert snapshot == state
    for codec in CODECS:
        joined = codec.decode_server(codec.encode(Snapshot(room=ROOM, seq=state.seq, state=state)))
        assert isinstance(joined, Snapshot)
        assert joined.state == state
    # Ending the LIVE carries the saturated figures in an event of its own.
    end = decide(state, CREATOR, c.EndLive(command_id="end", room=ROOM), now)
    assert isinstance(end, list)
    for body in end:
        event = Event(
            room=ROOM,
            seq=state.seq + 1,
            at=now,
            actor=CREATOR_ID,
            by=CREATOR.actor,
            body=body,
            command_id="end",
        )
        _through_every_decoder(event)
        state = evolve(state, event)
    assert STORED.decode_state(ROOM, STORED.encode(state)) == state


def test_plus_saturates_at_the_bound_of_totals() -> None:
    """A running sum stops at TOTAL_MAX instead of leaving its type."""
    assert plus(1, 2) == 3
    assert plus(TOTAL_MAX - 1, 1) == TOTAL_MAX
    assert plus(TOTAL_MAX - 1, CENTS_MAX) == TOTAL_MAX
    assert plus(TOTAL_MAX, TOTAL_MAX) == TOTAL_MAX


_SAME_QUANTITY: list[tuple[type, type]] = [
    (c.FeedOrder, ev.OrderPlaced), (c.FeedGift, ev.GiftSent), (c.FeedViewers, ev.ViewersChanged),
    (c.FeedSubscription, ev.Subscribed), (c.FeedComment, ev.CommentPosted),
    (c.ShowcaseUpdate, ev.ShowcaseUpdated), (c.StartLive, ev.LiveStarted),
    (c.BagAdd, ev.ProductAdded), (c.BagMove, ev.ProductMoved),
]  # fmt: skip
"""A command and the event it becomes: what the command carries, the event stores."""


def _fields(cls: type) -> dict[str, msgspec.inspect.Type]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.name: f.type for f in info.fields}


def test_a_command_and_its_event_bound_each_field_alike() -> None:
    """Every field a command hands to its event has one type and one bound in both."""
    for command, event in _SAME_QUANTITY:
        sent, stored = _fields(command), _fields(event)
        shared = set(sent) & set(stored) - {"command_id", "room", "expected_version"}
        assert shared, (command, event)
        for name in shared:
            if name == "position":  # optional in the command (the end), set in the event
                continue
            assert sent[name] == stored[name], (command.__name__, name, sent[name], stored[name])


def test_summaries_sum_in_a_wider_type_than_their_values() -> None:
    """A LIVE's sums are bounded by TOTAL_MAX, above any one value they add up."""
    summary, bucket = _fields(LiveSummary), _fields(MinuteBucket)
    for fields, names in (
        (
            summary,
            (
                "orders",
                "units",
                "gmv_cents",
                "comments",
                "gifts",
                "follows",
                "subscriptions",
                "violations",
            ),
        ),
        (bucket, ("orders", "gmv_cents", "comments")),
    ):
        for name in names:
            kind = fields[name]
            assert isinstance(kind, msgspec.inspect.IntType)
            assert kind.le == TOTAL_MAX, name
    state = _fields(RoomState)
    seq = state["seq"]
    assert isinstance(seq, msgspec.inspect.IntType)
    assert seq.le == TOTAL_MAX
