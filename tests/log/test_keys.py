"""The RoomLog contract for idempotency keys: a command id names one command by one
actor (H1, decision 0016). Every implementation passes these (see conftest
``backend``); the digest itself (server.log.keys) is tested at the end."""

from __future__ import annotations

import asyncio

from protocol import commands as c
from protocol.codec import Codec
from protocol.model import Actor, BagItem
from server.log.base import (
    Appended,
    AppendResult,
    CommandRecord,
    Duplicate,
    Reused,
    RoomLog,
)
from server.log.keys import DIGEST_BYTES, command_digest, same_command
from tests.log.conftest import STAFF, Backend, pending

ROOM = "room-1"
CREATOR = Actor(role="creator", id=ROOM)
MINE = b"\x01" * DIGEST_BYTES
OTHER = b"\x02" * DIGEST_BYTES


def record(by: Actor = STAFF, action: str = "bag_pin") -> CommandRecord:
    return CommandRecord(at=1, by=by, family="bag", action=action)


async def test_same_digest_resent_is_the_first_ack_again(log: RoomLog) -> None:
    """The same id with the same digest is a Duplicate with the first seqs (H1)."""
    # H1
    await log.append(ROOM, "c1", [pending("a")], 0, record(), digest=MINE)
    again = await log.append(ROOM, "c1", [pending("a")], 1, record(), digest=MINE)
    assert again == Duplicate(first_seq=1, last_seq=1)
    assert await log.lookup_command(ROOM, "c1", digest=MINE) == again


async def test_another_digest_is_reused_and_appends_nothing(log: RoomLog) -> None:
    """The same id with another digest (another actor or command) is Reused: nothing is
    appended, and the key still answers its own command (H1)."""
    # H1
    first = await log.append(ROOM, "c1", [pending("a")], 0, record(), digest=MINE)
    assert isinstance(first, Appended)
    assert await log.append(ROOM, "c1", [pending("b")], 1, record(), digest=OTHER) == Reused()
    assert await log.last_seq(ROOM) == 1
    assert await log.read_since(ROOM, 0, 10) == list(first.events)
    assert await log.lookup_command(ROOM, "c1", digest=OTHER) == Reused()
    assert await log.lookup_command(ROOM, "c1", digest=MINE) == Duplicate(first_seq=1, last_seq=1)


async def test_reuse_is_found_before_the_expected_seq(log: RoomLog) -> None:
    """A reused id with a stale expected seq is Reused, not a Conflict (H1 before H5)."""
    # H1 H5
    await log.append(ROOM, "c1", [pending("a")], 0, digest=MINE)
    await log.append(ROOM, "c2", [pending("b")], 1, digest=MINE)
    assert await log.append(ROOM, "c1", [pending("c")], 0, digest=OTHER) == Reused()
    assert await log.last_seq(ROOM) == 2


async def test_a_command_that_made_no_event_keeps_its_digest(log: RoomLog) -> None:
    """A key of a command that appended nothing still tells its command apart (H1)."""
    # H1
    await log.append(ROOM, "noop", [], 0, digest=MINE)
    assert await log.append(ROOM, "noop", [pending("a")], 0, digest=OTHER) == Reused()
    assert await log.append(ROOM, "noop", [], 0, digest=MINE) == Duplicate(first_seq=1, last_seq=0)
    assert await log.last_seq(ROOM) == 0


async def test_an_append_without_a_digest_matches_on_the_id(log: RoomLog) -> None:
    """A caller giving no digest asks for no check: the id alone matches (the hub
    always gives one)."""
    # H1
    await log.append(ROOM, "c1", [pending("a")], 0, record(), digest=MINE)
    assert await log.append(ROOM, "c1", [pending("a")], 1) == Duplicate(first_seq=1, last_seq=1)
    assert await log.lookup_command(ROOM, "c1") == Duplicate(first_seq=1, last_seq=1)


async def test_a_key_without_digest_matches_on_its_recorded_actor_and_action(
    log: RoomLog,
) -> None:
    """A key stored without a digest (as before schema 5) matches a digest-bearing
    resend only from its recorded actor and action; one with no record on the id."""
    # H1 R16
    await log.append(ROOM, "rec", [pending("a")], 0, record())
    await log.append(ROOM, "feed", [pending("b")], 1)
    same = await log.append(ROOM, "rec", [], 2, record(), digest=MINE)
    assert same == Duplicate(first_seq=1, last_seq=1)
    assert await log.append(ROOM, "rec", [], 2, record(by=CREATOR), digest=MINE) == Reused()
    assert await log.append(ROOM, "rec", [], 2, record(action="bag_add"), digest=MINE) == Reused()
    assert await log.append(ROOM, "rec", [], 2, None, digest=MINE) == Reused()
    assert await log.append(ROOM, "feed", [], 2, record(), digest=OTHER) == Duplicate(
        first_seq=2, last_seq=2
    )
    assert await log.last_seq(ROOM) == 2


async def test_concurrent_sends_of_one_id_apply_one_command(log: RoomLog) -> None:
    """One id sent concurrently with two digests: one command applies, its own resends
    are Duplicates and the other's are Reused (H1)."""
    # H1
    digests = [MINE, OTHER] * 8
    results: list[AppendResult] = await asyncio.gather(
        *(log.append(ROOM, "cmd", [pending("x")], 0, digest=d) for d in digests)
    )
    [winner] = [i for i, r in enumerate(results) if isinstance(r, Appended)]
    for i, result in enumerate(results):
        if i != winner:
            expected = (
                Duplicate(first_seq=1, last_seq=1) if digests[i] == digests[winner] else Reused()
            )
            assert result == expected
    assert await log.last_seq(ROOM) == 1


async def test_digests_survive_close_and_reopen(backend: Backend) -> None:
    """A key's digest is durable with it: after a restart a reuse is still found (H1 H4)."""
    # H1 H4
    log = await backend.open()
    await log.append(ROOM, "c1", [pending("a")], 0, record(), digest=MINE)
    await log.append(ROOM, "f1", [pending("b")], 1, digest=MINE)
    await log.close()
    reopened = await backend.open()
    for cid, seq in (("c1", 1), ("f1", 2)):
        assert await reopened.append(ROOM, cid, [], 2, digest=OTHER) == Reused()
        assert await reopened.append(ROOM, cid, [], 2, digest=MINE) == Duplicate(
            first_seq=seq, last_seq=seq
        )


async def test_append_soon_carries_the_digest(log: RoomLog) -> None:
    """append_soon stores and checks the digest like append."""
    # H1
    first = log.append_soon(ROOM, "c1", [pending("a")], 0, digest=MINE)
    reused = log.append_soon(ROOM, "c1", [pending("b")], 1, digest=OTHER)
    assert isinstance(await first, Appended)
    assert await reused == Reused()


# --- the digest ------------------------------------------------------------------------

ADD = c.BagAdd(command_id="k1", room=ROOM, item=BagItem(product_id="p1"))


def test_the_digest_names_the_actor() -> None:
    """The digest differs for another role, id or agency: an id is one actor's (H1)."""
    # H1
    digests = {
        command_digest(actor, ADD)
        for actor in (
            STAFF,
            CREATOR,
            Actor(role="staff", id="staff-2", agency=STAFF.agency),
            Actor(role="staff", id=STAFF.id, agency="agency-2"),
            Actor(role="staff", id=STAFF.id),
        )
    }
    assert len(digests) == 5
    assert {len(d) for d in digests} == {DIGEST_BYTES}


def test_the_digest_names_the_content() -> None:
    """The digest differs for another command type or argument (H1)."""
    # H1
    others = [
        c.BagAdd(command_id="k1", room=ROOM, item=BagItem(product_id="p2")),
        c.BagAdd(command_id="k1", room=ROOM, item=BagItem(product_id="p1"), position=0),
        c.BagDelete(command_id="k1", room=ROOM, product_id="p1"),
    ]
    digests = {command_digest(STAFF, cmd) for cmd in [ADD, *others]}
    assert len(digests) == 4


def test_the_digest_ignores_expected_version_and_the_wire_format() -> None:
    """A resend with a refreshed expected_version, or over the other wire format, or
    with fields in another order, has the same digest (H1 H5)."""
    # H1 H5
    refreshed = c.BagAdd(
        command_id="k1", room=ROOM, item=BagItem(product_id="p1"), expected_version=7
    )
    reordered = b'{"item":{"product_id":"p1"},"room":"room-1","type":"bag_add","command_id":"k1"}'
    json, msgpack = Codec("json"), Codec("msgpack")
    resent = [refreshed, json.decode_client(reordered), msgpack.decode_client(msgpack.encode(ADD))]
    commands = [cmd for cmd in resent if isinstance(cmd, c.BagAdd)]
    assert len(commands) == 3
    assert {command_digest(STAFF, cmd) for cmd in commands} == {command_digest(STAFF, ADD)}


def test_same_command_rules() -> None:
    """The key-matching rule every backend applies (decision 0016)."""
    # H1
    rec = record()
    assert same_command(MINE, rec, MINE, None, None)
    assert not same_command(OTHER, rec, MINE, STAFF, "bag_pin")
    assert same_command(None, None, MINE, None, None)  # no digest given: no check
    assert same_command(MINE, rec, None, STAFF, "bag_pin")  # legacy: actor and action
    assert not same_command(MINE, record(by=CREATOR), None, STAFF, "bag_pin")
    assert not same_command(MINE, None, None, STAFF, "bag_pin")
    assert same_command(MINE, None, None, None, None)  # legacy, nothing recorded
