"""An end of access reaches the open sessions it concerns, and only those (decision 0015).

Real server, real sockets: the link's end date cuts a live session off within
1 s (R5, R6, R11); a revoke or unlink takes staff out of that creator's room
only, with the socket and every other room going on (R6, R9).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from client import AccessEnded, Client
from protocol import access as a
from protocol import commands as c
from protocol.errors import Code
from protocol.messages import (
    AccessChanged,
    Ack,
    Error,
    Event,
    Join,
    Ping,
    Pong,
    Presence,
    Refused,
    ServerMessage,
    Snapshot,
)
from protocol.model import Actor, BagItem, ProductSet
from server.runtime import wall_clock
from tests.e2e.conftest import TIMEOUT, Raw, Server, raw_client

X = Actor(role="creator", id="creator-x")
Y = Actor(role="creator", id="creator-y")
AGENCY = "agency-1"
ANNA = Actor(role="staff", id="anna", agency=AGENCY)
BEN = Actor(role="staff", id="ben", agency=AGENCY)
CARL = Actor(role="staff", id="carl", agency=AGENCY)
EVE = Actor(role="staff", id="eve", agency="agency-2")


async def grant(
    srv: Server, creator: Actor, *, ends_at: int | None = None, by: Actor = ANNA
) -> None:
    """``by``'s agency asks ``creator`` for link + LIVE access, ending at ``ends_at``;
    the creator accepts (R1, R5)."""
    access = srv.runtime.access
    rid = f"req-{by.agency}-{creator.id}"
    sent = await access.submit(
        by, a.RequestLink(request_id=rid, creator=creator.id, with_access=True, ends_at=ends_at)
    )
    assert isinstance(sent, list), sent
    accepted = await access.submit(creator, a.AcceptRequest(request_id=rid))
    assert isinstance(accepted, list), accepted


def staff_token(srv: Server, who: Actor) -> str:
    return srv.token(agency=who.agency, staff=who.id)


async def until(raw: Raw, kind: Any) -> list[ServerMessage]:
    """Every message up to and including the first of ``kind``."""
    messages: list[ServerMessage] = []
    while not messages or not isinstance(messages[-1], kind):
        messages.append(await raw.recv())
    return messages


async def acked(raw: Raw, cmd: c.Command) -> Ack:
    await raw.send(cmd)
    reply = await raw.expect(Ack | Refused)
    assert isinstance(reply, Ack), reply
    return reply


async def go_live(creator: Raw, room: str) -> None:
    await creator.send(Join(room=room))
    await creator.expect(Snapshot)
    await acked(creator, c.StartLive(command_id=f"go-{room}", room=room))


async def join(staff: Raw, room: str) -> None:
    await staff.send(Join(room=room))
    await staff.expect(Snapshot)


async def presence_with(raw: Raw, room: str, *, member: Actor, present: bool) -> Presence:
    """The next Presence of ``room`` that has ``member`` in it (``present``) or not."""
    while True:
        p: Presence = await raw.expect(Presence)
        if p.room == room and (member in p.members) == present:
            return p


async def test_link_end_date_cuts_off_the_live_session(server: Server) -> None:
    """At the link's end date the staff socket gets access_changed "expired" within 1 s,
    leaves the room (no later event: the last one it got is older than end + 1 s),
    stays open, and the creator sees a Presence without it."""
    # R5 (access lasts until the link's end date) R6 (cut off at once) R11
    room = X.id
    ends_at = wall_clock() + 3000  # the real clock: a real timer has to fire
    await grant(server, X, ends_at=ends_at)
    async with (
        raw_client(server, server.token(creator=room)) as creator,
        raw_client(server, staff_token(server, ANNA)) as anna,
    ):
        await go_live(creator, room)
        await join(anna, room)
        await presence_with(creator, room, member=ANNA, present=True)

        async def feed() -> None:
            """The platform's feed keeps flowing across the end date and a second past it:
            whatever of it reaches anna after she is cut off is a leak."""
            n = 0
            while wall_clock() < ends_at + 1500:
                n += 1
                await creator.send(c.FeedViewers(command_id=f"v{n}", room=room, total=n))
                await anyio.sleep(0.05)  # paces the feed (20/s); no test outcome waits on it

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(feed)
                before = await until(anna, AccessChanged)
                received_at = wall_clock()
        assert before[-1] == AccessChanged(
            creator=room, agency=AGENCY, status="expired", terminal=False, room=room
        )
        assert received_at < ends_at + 1000, received_at - ends_at  # within 1 s of the end

        # The socket is open, and nothing of the room came after access_changed.
        await anna.send(Ping(nonce=1))
        after = await until(anna, Pong)
        assert not [m for m in after if isinstance(m, Event)]
        assert anna.events, "anna saw the feed while she had access"
        assert max(e.at for e in anna.events) < ends_at + 1000
        # The room did go on past end + 1 s: the creator saw it, and saw anna leave.
        left = await presence_with(creator, room, member=ANNA, present=False)
        assert left.members == [X]
        await creator.send(Ping(nonce=2))
        await until(creator, Pong)
        assert max(e.at for e in creator.events) >= ends_at + 1000
        # Her later commands and joins are refused; the socket still answers.
        await anna.send(c.BagPin(command_id="late", room=room, product_id="p1"))
        assert (await anna.expect(Refused)).code == Code.NO_ACCESS
        await anna.send(Join(room=room))
        assert (await anna.expect(Error)).code == Code.NO_ACCESS


async def test_revoke_by_one_creator_leaves_the_agencys_other_rooms_running(
    server: Server,
) -> None:
    """X revokes agency-1: anna (in X and Y) leaves X only, on the same socket Y's events
    keep flowing; ben (in Y only) hears nothing of it; X's creator sees anna leave."""
    # R9 (revoke keeps the link) R6 (only that creator's rooms are cut off)
    await grant(server, X)
    await grant(server, Y)
    async with (
        raw_client(server, server.token(creator=X.id)) as cx,
        raw_client(server, server.token(creator=Y.id)) as cy,
        raw_client(server, staff_token(server, ANNA)) as anna,
        raw_client(server, staff_token(server, BEN), "msgpack") as ben,
    ):
        await go_live(cx, X.id)
        await go_live(cy, Y.id)
        await join(anna, X.id)
        await join(anna, Y.id)
        await join(ben, Y.id)
        await presence_with(cx, X.id, member=ANNA, present=True)

        revoked = await server.runtime.access.submit(X, a.RevokeAccess(agency=AGENCY))
        assert isinstance(revoked, list)
        changed = (await until(anna, AccessChanged))[-1]
        assert changed == AccessChanged(
            creator=X.id, agency=AGENCY, status="revoked", terminal=False, room=X.id
        )
        # R6: the creator sees the staff member leave (Presence without her).
        assert (await presence_with(cx, X.id, member=ANNA, present=False)).members == [X]

        # Both rooms go on; only Y's events reach anna, on the same socket.
        ax = await acked(cx, c.BagAdd(command_id="x1", room=X.id, item=BagItem(product_id="px")))
        ay = await acked(cy, c.BagAdd(command_id="y1", room=Y.id, item=BagItem(product_id="py")))
        seen = await until(anna, Event)
        assert [(m.room, m.seq) for m in seen if isinstance(m, Event)] == [(Y.id, ay.seq)]
        await anna.send(Ping(nonce=1))
        assert not [m for m in await until(anna, Pong) if isinstance(m, Event)]
        assert ax.seq > 0
        # ben was never in X: nothing about X reaches him, and Y goes on for him too.
        got = await until(ben, Event)
        assert not [m for m in got if isinstance(m, AccessChanged)]
        assert isinstance(got[-1], Event)
        assert (got[-1].room, got[-1].seq) == (Y.id, ay.seq)
        # anna's commands: refused in X, applied in Y.
        await anna.send(c.BagPin(command_id="pin-x", room=X.id, product_id="px"))
        assert (await anna.expect(Refused)).code == Code.NO_ACCESS
        await acked(anna, c.BagPin(command_id="pin-y", room=Y.id, product_id="py"))


async def test_unlink_reaches_sessions_with_pre_live_work_for_that_creator_only(
    server: Server,
) -> None:
    """The agency unlinks X: a session that did pre-LIVE work for X (never joined) gets
    access_changed "unlinked" and stays open; one that worked only for Y gets nothing."""
    # R6 (unlink by either side cuts off at once) R12 (pre-LIVE work needs access)
    await grant(server, X)
    await grant(server, Y)
    planning = ProductSet(set_id="s1", name="Next show")
    async with (
        raw_client(server, staff_token(server, CARL)) as carl,
        raw_client(server, staff_token(server, BEN)) as ben,
    ):
        await acked(carl, c.ProductSetSave(command_id="px", room=X.id, product_set=planning))
        await acked(carl, c.ProductSetSave(command_id="py", room=Y.id, product_set=planning))
        await acked(ben, c.ProductSetSave(command_id="by", room=Y.id, product_set=planning))

        unlinked = await server.runtime.access.submit(CARL, a.Unlink(agency=AGENCY, creator=X.id))
        assert isinstance(unlinked, list)
        changed = (await until(carl, AccessChanged))[-1]
        assert changed == AccessChanged(
            creator=X.id, agency=AGENCY, status="unlinked", terminal=False, room=X.id
        )
        # carl's session goes on: Y's pre-LIVE work is still his to do, X's is refused.
        await acked(carl, c.ProductSetDelete(command_id="dy", room=Y.id, set_id="s1"))
        await carl.send(c.ProductSetDelete(command_id="dx", room=X.id, set_id="s1"))
        assert (await carl.expect(Refused)).code == Code.NO_ACCESS
        # ben never used access to X: nothing reaches him.
        await ben.send(Ping(nonce=1))
        assert not [m for m in await until(ben, Pong) if isinstance(m, AccessChanged)]


async def test_unlink_updates_presence_for_the_members_left(server: Server) -> None:
    """X unlinks agency-1: X's creator and agency-2's staff, still in the room, get a
    Presence without agency-1's staff; agency-2's staff keep receiving the room."""
    # R6 (presence is updated when staff are cut off; other agencies are untouched)
    await grant(server, X)
    await grant(server, X, by=EVE)
    async with (
        raw_client(server, server.token(creator=X.id)) as cx,
        raw_client(server, staff_token(server, ANNA)) as anna,
        raw_client(server, staff_token(server, EVE)) as eve,
    ):
        await go_live(cx, X.id)
        await join(eve, X.id)
        await join(anna, X.id)
        for member in (cx, eve):
            await presence_with(member, X.id, member=ANNA, present=True)
        unlinked = await server.runtime.access.submit(X, a.Unlink(agency=AGENCY, creator=X.id))
        assert isinstance(unlinked, list)
        for member in (cx, eve):
            left = await presence_with(member, X.id, member=ANNA, present=False)
            assert left.members == [X, EVE]
        assert (await anna.expect(AccessChanged)).status == "unlinked"
        await anna.send(Ping(nonce=1))  # cut off from X, not from the hub
        assert (await anna.expect(Pong)).nonce == 1
        added = await acked(cx, c.BagAdd(command_id="x1", room=X.id, item=BagItem(product_id="px")))
        got = await until(eve, Event)
        assert not [m for m in got if isinstance(m, AccessChanged)]
        assert isinstance(got[-1], Event)
        assert got[-1].seq == added.seq


async def test_sdk_ends_the_room_stream_and_keeps_the_others(server: Server) -> None:
    """The Python SDK: X's event stream ends with AccessEnded after X revokes; Y's stream
    keeps delivering on the same connection; X is no longer a joined room."""
    # R6 R9 (the SDK side of decision 0015)
    await grant(server, X)
    await grant(server, Y)
    async with (
        raw_client(server, server.token(creator=X.id)) as cx,
        raw_client(server, server.token(creator=Y.id)) as cy,
        Client(heartbeat=False) as client,
    ):
        await go_live(cx, X.id)
        await go_live(cy, Y.id)
        with anyio.fail_after(TIMEOUT):
            welcome = await client.connect(server.url, staff_token(server, ANNA))
            x_events = client.events(X.id)
            y_events = client.events(Y.id)
            await client.join(X.id)
            await client.join(Y.id)
            revoked = await server.runtime.access.submit(X, a.RevokeAccess(agency=AGENCY))
            assert isinstance(revoked, list)
            with pytest.raises(AccessEnded) as ended:
                async for _ in x_events:
                    pass  # the join's snapshot, then the end of the stream
            assert (ended.value.room, ended.value.status) == (X.id, "revoked")
            ay = await acked(
                cy, c.BagAdd(command_id="y1", room=Y.id, item=BagItem(product_id="py"))
            )
            while True:
                got = await y_events.get()
                if isinstance(got, Event):
                    break
            assert (got.room, got.seq) == (Y.id, ay.seq)
        assert client.rooms == frozenset({Y.id})
        assert client.closed is None
        assert client.connected
        assert client.welcome is welcome  # the same connection: no reconnect
