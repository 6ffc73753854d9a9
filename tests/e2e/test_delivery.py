"""Delivery guarantees over real sockets: backpressure, idempotency, resume."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect

from protocol import commands as c
from protocol.codec import Codec
from protocol.errors import CloseCode, Code
from protocol.messages import Ack, Event, Hello, Join, Refused, Resume, Resumed, Snapshot
from protocol.model import BagItem, Viewer
from server.config import Settings
from tests.e2e.conftest import TIMEOUT, Raw, Server, raw_client, run_server
from tests.e2e.test_story import CREATOR, grant

VIEWER = Viewer(unique_id="v1", nickname="Viewer")


async def live(raw: Raw, room: str) -> int:
    await raw.send(Join(room=room))
    await raw.expect(Snapshot)
    await raw.send(c.StartLive(command_id="go", room=room))
    ack: Ack = await raw.expect(Ack)
    return ack.seq


async def test_slow_consumer_is_closed_and_others_keep_receiving(
    make_settings: Callable[..., Settings],
) -> None:
    """A member that stops reading is closed with SLOW_CONSUMER; the others get everything."""
    # H6 (backpressure: a slow client is disconnected, never waited for)
    settings = make_settings(
        send_buffer_bytes=16_384,
        rate_per_s=1_000_000.0,
        rate_burst=1_000_000,
        actor_rate_per_s=1_000_000.0,
        actor_rate_burst=1_000_000,
    )
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as creator:
        await live(creator, "cr")
        codec = Codec("json")
        # The slow member: a client that never reads, with a tiny receive queue.
        async with connect(
            srv.url,
            subprotocols=[codec.subprotocol],  # type: ignore[list-item]
            max_queue=1,
            open_timeout=TIMEOUT,
        ) as slow_ws:
            await slow_ws.send(codec.encode(Hello(token=srv.token(creator="cr"))).decode())
            await slow_ws.send(codec.encode(Join(room="cr")).decode())
            content = "x" * 1500
            registry = srv.runtime.metrics.registry
            last = 0
            for i in range(20_000):
                await creator.send(
                    c.FeedComment(
                        command_id=f"c{i}",
                        room="cr",
                        comment_id=f"c{i}",
                        user=VIEWER,
                        content=content,
                    )
                )
                last = (await creator.expect(Ack)).seq
                if i % 50 == 0 and registry.get_sample_value(
                    "livepilot_slow_consumer_disconnects_total"
                ):
                    break
            # The creator, reading all along, received every event in order.
            seen = await creator.events_until(last)
            assert [e.seq for e in seen] == list(range(1, last + 1))
            _, close_code = await Raw(slow_ws, codec).until_closed()
            assert close_code == CloseCode.SLOW_CONSUMER


async def test_resend_after_lost_ack_is_applied_once(server: Server) -> None:
    """A command resent with the same id after a lost ack gets the same ack, applied once."""
    # H1
    async with raw_client(server, server.token(creator="cr")) as raw:
        await live(raw, "cr")
        add = c.BagAdd(command_id="add-once", room="cr", item=BagItem(product_id="p1"))
        await raw.send(add)
        # The connection drops before the ack is read.
    async with raw_client(server, server.token(creator="cr")) as raw:
        await raw.send(add)
        first: Ack = await raw.expect(Ack)
        await raw.send(add)
        second: Ack = await raw.expect(Ack)
        assert first == second
        await raw.send(Join(room="cr"))
        snapshot: Snapshot = await raw.expect(Snapshot)
        assert [i.product_id for i in snapshot.state.bag] == ["p1"]
        assert snapshot.state.seq == first.seq


async def test_resume_gets_exactly_the_missed_events(server: Server) -> None:
    """A member that rejoins with its last seq receives exactly what it missed."""
    # H3
    async with raw_client(server, server.token(creator="cr")) as creator:
        await live(creator, "cr")
        async with raw_client(server, server.token(creator="cr"), "msgpack") as watcher:
            await watcher.send(Join(room="cr"))
            seen: Snapshot = await watcher.expect(Snapshot)
        for i in range(5):
            await creator.send(c.FeedViewers(command_id=f"v{i}", room="cr", total=i))
            await creator.expect(Ack)
        async with raw_client(server, server.token(creator="cr"), "msgpack") as watcher:
            await watcher.send(Resume(room="cr", last_seq=seen.seq))
            resumed: Resumed = await watcher.expect(Resumed)
            missed = [e for e in watcher.events if isinstance(e, Event)]
            assert [e.seq for e in missed] == list(range(seen.seq + 1, resumed.seq + 1))
            assert resumed.seq == seen.seq + 5


async def test_resume_beyond_history_gets_a_snapshot(
    make_settings: Callable[..., Settings],
) -> None:
    """When history no longer covers the seq, the resume is answered with a snapshot."""
    # H3
    settings = make_settings(snapshot_interval=5, history_retention=0)
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as creator:
        await live(creator, "cr")
        for i in range(12):
            await creator.send(c.FeedViewers(command_id=f"v{i}", room="cr", total=i))
            await creator.expect(Ack)
        async with raw_client(srv, srv.token(creator="cr")) as late:
            await late.send(Resume(room="cr", last_seq=1))
            snapshot: Snapshot = await late.expect(Snapshot)
            assert snapshot.reason == "history_truncated"
            assert snapshot.state.seq == 13


async def test_member_vanishing_mid_stream_ends_only_its_session(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A member whose connection drops while frames are being sent to it is just gone:
    no server error, and the room carries on for everyone else."""
    # H6
    async with raw_client(server, server.token(creator="cr")) as creator:
        await live(creator, "cr")
        for round_ in range(3):
            async with raw_client(server, server.token(creator="cr")) as member:
                await member.send(Join(room="cr"))
                await member.expect(Snapshot)
                for i in range(40):
                    await creator.send(
                        c.FeedComment(
                            command_id=f"r{round_}-{i}",
                            room="cr",
                            comment_id=f"r{round_}-{i}",
                            user=VIEWER,
                            content="y" * 1500,
                        )
                    )
                member.ws.transport.abort()  # gone without a close frame, mid-stream
            last = (await creator.expect(Ack)).seq
        await creator.send(c.FeedViewers(command_id="after", room="cr", total=1))
        final: Ack = await creator.expect(Ack)
        assert final.seq > last
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


async def test_a_creators_command_id_reused_by_staff_is_refused(server: Server) -> None:
    """A staff bag_add reusing the creator's command id is refused COMMAND_ID_REUSED;
    the creator's command stays applied once, and its resend still gets its ack."""
    # H1
    room = CREATOR.id
    await grant(server)
    async with (
        raw_client(server, server.token(creator=room)) as creator,
        raw_client(server, server.token(agency="agency-1", staff="anna"), "msgpack") as anna,
    ):
        await live(creator, room)
        mine = c.BagAdd(command_id="add-1", room=room, item=BagItem(product_id="p1"))
        await creator.send(mine)
        ack: Ack = await creator.expect(Ack)
        await anna.send(Join(room=room))
        await anna.expect(Snapshot)
        await anna.send(c.BagAdd(command_id="add-1", room=room, item=BagItem(product_id="p2")))
        refused = await anna.expect(Ack | Refused)
        assert isinstance(refused, Refused)
        assert (refused.command_id, refused.code) == ("add-1", Code.COMMAND_ID_REUSED)
        await creator.send(mine)
        assert await creator.expect(Ack) == ack
    async with raw_client(server, server.token(creator=room)) as again:
        await again.send(Join(room=room))
        snapshot: Snapshot = await again.expect(Snapshot)
        assert [i.product_id for i in snapshot.state.bag] == ["p1"]
