"""The whole story of the seeds, end to end over real sockets."""

from __future__ import annotations

from protocol import access as a
from protocol import commands as c
from protocol.errors import Code
from protocol.messages import (
    AccessChanged,
    Ack,
    Error,
    Join,
    Notification,
    Refused,
    Snapshot,
)
from protocol.model import Actor, BagItem, Billboard, FlashSale, ProductSet
from tests.e2e.conftest import Raw, Server, raw_client

CREATOR = Actor(role="creator", id="creator-1")
ANNA = Actor(role="staff", id="anna", agency="agency-1")
BEN = Actor(role="staff", id="ben", agency="agency-1")


async def grant(srv: Server) -> None:
    """agency-1 asks for link + LIVE access; the creator accepts (R1, R5)."""
    access = srv.runtime.access
    sent = await access.submit(
        ANNA, a.RequestLink(request_id="req-1", creator=CREATOR.id, with_access=True)
    )
    assert isinstance(sent, list)
    accepted = await access.submit(CREATOR, a.AcceptRequest(request_id="req-1"))
    assert isinstance(accepted, list)


async def command(raw: Raw, cmd: c.Command) -> Ack:
    await raw.send(cmd)
    reply = await raw.expect(Ack | Refused)
    assert isinstance(reply, Ack), reply
    return reply


async def test_the_whole_story(server: Server) -> None:
    """Request, accept, go live, staff join, operate, every member sees one order, unlink."""
    # R1 R5 R11 R13 R15 R16 H2 R6
    room = CREATOR.id
    await grant(server)
    async with (
        raw_client(server, server.token(creator=room)) as creator,
        raw_client(server, server.token(agency="agency-1", staff="anna")) as anna,
        raw_client(server, server.token(agency="agency-1", staff="ben"), "msgpack") as ben,
    ):
        # Staff cannot join before the creator goes live (R11).
        await anna.send(Join(room=room))
        error = await anna.expect(Error)
        assert error.code == Code.NOT_LIVE

        await creator.send(Join(room=room))
        await creator.expect(Snapshot)
        await command(creator, c.StartLive(command_id="go", room=room, title="Spring drop"))
        for i, pid in enumerate(["p1", "p2", "p3"]):
            item = BagItem(product_id=pid, title=f"Item {i}", stock=5)
            await command(creator, c.BagAdd(command_id=f"add-{pid}", room=room, item=item))

        await anna.send(Join(room=room))
        snap_a = await anna.expect(Snapshot)
        assert snap_a.state.status == "live"
        note = await creator.expect(Notification)  # R15
        assert note.kind == "staff_entered"
        assert note.by == ANNA
        await ben.send(Join(room=room))
        snap_b = await ben.expect(Snapshot)

        await command(anna, c.BagPin(command_id="pin", room=room, product_id="p2"))
        await command(ben, c.BagMove(command_id="move", room=room, product_id="p3", position=0))
        sale = FlashSale(sale_id="s1", product_id="p1", price_cents=999, stock=2)
        await command(anna, c.FlashSaleSetUp(command_id="sale", room=room, sale=sale))
        await command(anna, c.FlashSaleDeploy(command_id="deploy", room=room, sale_id="s1"))
        await command(
            ben,
            c.BillboardDeploy(
                command_id="bb", room=room, billboard=Billboard(billboard_id="b", text="-50%")
            ),
        )
        last = await command(anna, c.Mute(command_id="mute", room=room, user_id="troll"))

        # Every member receives every event in the same order, gap-free (H2).
        seen_creator = await creator.events_until(last.seq)
        seen_anna = await anna.events_until(last.seq)
        seen_ben = await ben.events_until(last.seq)
        assert [e.seq for e in seen_ben] == list(range(snap_b.seq + 1, last.seq + 1))
        assert [e.seq for e in seen_creator] == list(range(1, last.seq + 1))
        assert seen_creator[-len(seen_ben) :] == seen_ben
        assert seen_anna[-len(seen_ben) :] == seen_ben
        assert seen_anna[0].seq == snap_a.seq + 1
        # The audience sees the creator; the log keeps the real staff actor (R16).
        pinned = next(e for e in seen_anna if e.command_id == "pin")
        assert pinned.actor == room
        assert pinned.by == ANNA

        # Unlink: every staff session is cut off from the room at once (R6); the
        # sockets stay open for other creators' rooms (decision 0015).
        unlinked = await server.runtime.access.submit(
            CREATOR, a.Unlink(agency="agency-1", creator=room)
        )
        assert isinstance(unlinked, list)
        for staff in (anna, ben):
            changed = await staff.expect(AccessChanged)
            assert (changed.status, changed.room, changed.terminal) == ("unlinked", room, False)

        # A later command from the same staff member is refused: access is re-checked.
        await anna.send(c.BagPin(command_id="pin-again", room=room, product_id="p1"))
        refused = await anna.expect(Refused)
        assert refused.code == Code.NO_ACCESS


async def test_staff_start_attempt_is_refused_and_audited(server: Server) -> None:
    """A staff member's start attempt is refused and written to the audit trail."""
    # R10
    await grant(server)
    room = CREATOR.id
    async with raw_client(server, server.token(agency="agency-1", staff="anna")) as anna:
        await anna.send(c.StartLive(command_id="try", room=room))
        refused = await anna.expect(Refused)
        assert refused.code == Code.CREATOR_ONLY
    from server.journal import AuditQuery

    trail = await server.runtime.hub.auditor.trail(AuditQuery(creator=room, staff="anna"))
    assert [(e.action, e.code) for e in trail if e.family == "live"] == [
        ("start_live", Code.CREATOR_ONLY)
    ]


async def test_ending_the_live_closes_the_live_part_for_staff(server: Server) -> None:
    """When the creator ends the LIVE, staff leave the room but keep their session."""
    # R11
    await grant(server)
    room = CREATOR.id
    async with (
        raw_client(server, server.token(creator=room)) as creator,
        raw_client(server, server.token(agency="agency-1", staff="anna")) as anna,
    ):
        await command(creator, c.StartLive(command_id="go", room=room))
        await anna.send(Join(room=room))
        await anna.expect(Snapshot)
        ended = await command(creator, c.EndLive(command_id="end", room=room))
        seen = await anna.events_until(ended.seq)
        assert type(seen[-1].body).__name__ == "LiveEnded"
        # Out of the room: the next LIVE's events do not reach anna until she rejoins...
        await command(creator, c.StartLive(command_id="again", room=room))
        await anna.send(Join(room=room))
        snapshot = await anna.expect(Snapshot)
        assert snapshot.state.status == "live"
        assert [e.seq for e in anna.events] == [e.seq for e in seen]
        # ...and the session itself stayed open for pre-LIVE work (R12).
        assert len(snapshot.state.lives) == 1
        ack = await command(
            anna,
            c.ProductSetSave(
                command_id="set", room=room, product_set=ProductSet(set_id="s", name="Next show")
            ),
        )
        assert ack.seq > snapshot.seq
