"""Caps (decision 0018): each one refused with its own code, at its documented value."""

from __future__ import annotations

import msgspec
import pytest
from msgspec.structs import replace

from protocol import access as a
from protocol import commands as c
from protocol.codec import Codec, DecodeError
from protocol.errors import Code
from protocol.model import Actor, FlashSale, Giveaway, ProductSet
from server.domain.access import AccessBook, decide_access, evolve_access
from server.domain.caps import (
    MAX_BAG_ITEMS,
    MAX_BLOCKED,
    MAX_FLASH_SALES,
    MAX_GIVEAWAYS,
    MAX_MUTED,
    MAX_PENDING_REQUESTS,
    MAX_PLANNED,
    MAX_SET_PRODUCTS,
)
from server.domain.refusal import Refusal
from tests.domain.builders import CREATOR, MODERATOR, ROOM, STAFF, T0, Room, item

DAY = 24 * 3600 * 1000


def capped(result: object, code: Code = Code.LIMIT_REACHED) -> Refusal:
    """``result`` is the refusal of a cap: its code, and a message naming the cap."""
    assert isinstance(result, Refusal), result
    assert result.code == code, result
    assert "at most" in result.message, result
    return result


def test_the_caps_have_their_documented_values() -> None:
    """The values decision 0018 documents (a change there is a change here)."""
    assert (MAX_BAG_ITEMS, MAX_SET_PRODUCTS, MAX_PLANNED) == (500, 500, 200)
    assert (MAX_MUTED, MAX_BLOCKED) == (10_000, 10_000)
    assert (MAX_GIVEAWAYS, MAX_FLASH_SALES, MAX_PENDING_REQUESTS) == (1_000, 1_000, 1_000)


@pytest.mark.parametrize(("field", "cap", "make"), [
    ("muted", MAX_MUTED, lambda uid: c.Mute(command_id="x", room=ROOM, user_id=uid)),
    ("blocked", MAX_BLOCKED, lambda uid: c.Block(command_id="x", room=ROOM, user_id=uid)),
])  # fmt: skip
def test_mutes_and_blocks_in_force_are_capped(field, cap, make) -> None:
    """At the cap, a new account is refused; renewing one, or after one ended, is not."""
    # R13 (mute / block an account)
    room = Room().live()
    far = room.now + DAY
    room.state = replace(room.state, **{field: {f"u{i}": far + i for i in range(cap)}})
    capped(room.send(MODERATOR, make("new")))
    room.ok(MODERATOR, make("u7"))  # renewing a mute in force adds none
    # One ends: it no longer counts, even while the state still lists it.
    entries = dict(getattr(room.state, field))
    entries["u0"] = room.now
    room.state = replace(room.state, **{field: dict(sorted(entries.items(), key=lambda e: e[1]))})
    room.ok(MODERATOR, make("new"))
    assert len(getattr(room.state, field)) == cap  # u0 left as "new" came


def _giveaway(gid: str) -> Giveaway:
    return Giveaway(giveaway_id=gid, product_id="p1")


def _sale(sid: str) -> FlashSale:
    return FlashSale(sale_id=sid, product_id="p1", price_cents=100, stock=5)


def test_giveaways_per_live_are_capped() -> None:
    """At the cap a new giveaway is refused, a set-up one may be set up again; those a
    LIVE deployed leave when the next LIVE starts, and free their places."""
    # R12, R13 (giveaways)
    room = Room().live()
    full = {f"g{i}": _giveaway(f"g{i}") for i in range(MAX_GIVEAWAYS)}
    room.state = replace(room.state, giveaways=full)
    capped(room.send(STAFF, c.GiveawaySetUp(command_id="a", room=ROOM, giveaway=_giveaway("x"))))
    room.ok(STAFF, c.GiveawaySetUp(command_id="b", room=ROOM, giveaway=_giveaway("g1")))
    room.ok(STAFF, c.GiveawayDeploy(command_id="c", room=ROOM, giveaway_id="g2"))
    room.ok(CREATOR, c.EndLive(command_id="d", room=ROOM))
    assert "g2" in room.state.giveaways  # after the LIVE, still there to look back on
    capped(room.send(STAFF, c.GiveawaySetUp(command_id="e", room=ROOM, giveaway=_giveaway("x"))))
    room.live()
    assert "g2" not in room.state.giveaways
    assert len(room.state.giveaways) == MAX_GIVEAWAYS - 1
    assert room.state.versions["promotion"] == room.state.seq  # H5: promotions moved on
    room.ok(STAFF, c.GiveawaySetUp(command_id="f", room=ROOM, giveaway=_giveaway("x")))


def test_flash_sales_per_live_are_capped() -> None:
    """At the cap a new flash sale is refused; the sales a LIVE ran leave when the next
    LIVE starts, those never deployed stay."""
    # R12, R13 (flash sales)
    room = Room().live().stock("p1")
    full = {f"s{i}": _sale(f"s{i}") for i in range(MAX_FLASH_SALES)}
    room.state = replace(room.state, flash_sales=full)
    capped(room.send(STAFF, c.FlashSaleSetUp(command_id="a", room=ROOM, sale=_sale("x"))))
    room.ok(STAFF, c.FlashSaleSetUp(command_id="b", room=ROOM, sale=_sale("s1")))
    room.ok(STAFF, c.FlashSaleDeploy(command_id="c", room=ROOM, sale_id="s2"))
    room.ok(CREATOR, c.EndLive(command_id="d", room=ROOM))
    assert room.state.flash_sales["s2"].ended
    room.live()
    assert "s2" not in room.state.flash_sales
    assert "s3" in room.state.flash_sales
    room.ok(STAFF, c.FlashSaleSetUp(command_id="e", room=ROOM, sale=_sale("x")))


def test_bag_is_capped() -> None:
    """The bag refuses a product beyond its cap, naming it."""
    # R13 (shopping bag)
    room = Room().live()
    room.state = replace(room.state, bag=[item(f"p{i}") for i in range(MAX_BAG_ITEMS)])
    capped(room.send(STAFF, c.BagAdd(command_id="x", room=ROOM, item=item("new"))))


def test_products_in_a_product_set_are_capped() -> None:
    """A product set's list has the cap as its type's bound: the edge refuses a longer
    one as malformed, naming the field; the decider refuses one made in-process."""
    # R12 (product sets), H6
    ids = [f"p{i}" for i in range(MAX_SET_PRODUCTS + 1)]
    too_many = c.ProductSetSave(
        command_id="x", room=ROOM, product_set=ProductSet(set_id="s", name="Set", product_ids=ids)
    )
    codec = Codec("json")
    with pytest.raises(DecodeError) as refused:
        codec.decode_client(codec.encode(too_many))
    assert refused.value.code == Code.WRONG_FIELD_TYPE
    assert f"length <= {MAX_SET_PRODUCTS}" in refused.value.message
    capped(Room().send(STAFF, too_many))
    Room().ok(
        STAFF, replace(too_many, product_set=replace(too_many.product_set, product_ids=ids[:-1]))
    )
    info = msgspec.inspect.type_info(ProductSet)
    assert isinstance(info, msgspec.inspect.StructType)
    [field] = [f for f in info.fields if f.name == "product_ids"]
    assert isinstance(field.type, msgspec.inspect.ListType)
    assert field.type.max_length == MAX_SET_PRODUCTS


def test_pending_requests_per_agency_are_capped() -> None:
    """One staff token cannot fill creators' inboxes: the agency's requests pending at
    once stop at the cap (TOO_MANY_PENDING), others' do not; answered ones free a place."""
    # R1, R14 (every request lands in a creator's inbox)
    staff = Actor(role="staff", id="s1", agency="ag")
    book = AccessBook()
    for i in range(MAX_PENDING_REQUESTS):
        cmd = a.RequestLink(request_id=f"r{i}", creator=f"cr{i}", with_access=True)
        events = decide_access(book, staff, cmd, T0 + i)
        assert not isinstance(events, Refusal), events
        for event in events:
            book = evolve_access(book, event)
    now = T0 + MAX_PENDING_REQUESTS
    over = a.RequestLink(request_id="over", creator="cr-over", with_access=True)
    capped(decide_access(book, staff, over, now), Code.TOO_MANY_PENDING)
    other = Actor(role="staff", id="s2", agency="ag2")
    assert not isinstance(decide_access(book, other, over, now), Refusal)
    declined = decide_access(
        book, Actor(role="creator", id="cr0"), a.DeclineRequest(request_id="r0"), now
    )
    assert isinstance(declined, list)
    for event in declined:
        book = evolve_access(book, event)
    assert not isinstance(decide_access(book, staff, over, now), Refusal)
    # Expired requests (R2) do not count either.
    later = T0 + 7 * DAY + MAX_PENDING_REQUESTS
    assert not isinstance(decide_access(book, staff, over, later), Refusal)
