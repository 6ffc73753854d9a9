"""The multi-node safeguards of access, wired: a staff command decided on a node
that has not heard of a revoke is stopped by the shared log and decided again on
the caught-up grant (R6); an access decision racing another node's on the same
creator is caught up and decided again, never lost (decision 0024). Two nodes'
hubs and access services on one real Redis, no bus: nothing tells a node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

from protocol import access as a
from protocol import commands as c
from protocol.codec import Codec
from protocol.errors import Code
from protocol.messages import Ack, Refused, ServerMessage
from protocol.model import Actor, BagItem
from server.access_service import AccessService
from server.hub.hub import Hub
from server.hub.session import Session
from server.journal import MemoryJournal
from server.log.redis import RedisRoomLog
from server.log.redis_conn import RedisClient, connect
from server.metrics import Metrics
from server.redis_store import RedisAccessEventStore
from tests.redis_fixtures import unique_prefix

pytestmark = pytest.mark.redis

T0 = 1_700_000_000_000
CODEC = Codec("json")
CREATOR = Actor(role="creator", id="cr-1")
STAFF = Actor(role="staff", id="st", agency="ag-1")
TIMEOUT = 5.0


class RacingStore(RedisAccessEventStore):
    """A store that lets another node store first, right after this one caught up
    on the creator: the race the append's check exists for."""

    race: Callable[[], Awaitable[object]] | None = None

    async def catch_up(self, creator: str | None) -> list[a.AccessEvent]:
        events = await super().catch_up(creator)
        if creator is not None and self.race is not None:
            race, self.race = self.race, None
            await race()
        return events


@dataclass
class Node:
    store: RacingStore
    access: AccessService
    hub: Hub
    log: RedisRoomLog


@asynccontextmanager
async def two_nodes(url: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes as ``serve --redis-url`` wires them (runtime.open_runtime)."""
    yield_nodes: list[Node] = []
    client: RedisClient = await connect(url)
    prefix = unique_prefix()
    try:
        for _ in range(2):
            store = RacingStore(client, prefix=prefix)
            access = AccessService(store, MemoryJournal(), clock=lambda: T0)
            access.shared = True
            await access.start()
            log = RedisRoomLog(client, prefix=prefix)
            hub = Hub(
                log,
                MemoryJournal(),
                access.grant_for,
                related=access.related,
                clock=lambda: T0,
                metrics=Metrics(),
            )
            hub.grant_version = store.grant_version
            hub.catch_up_access = access.catch_up
            yield_nodes.append(Node(store, access, hub, log))
        yield yield_nodes[0], yield_nodes[1]
    finally:
        for node in yield_nodes:
            node.access.close()
            await node.log.close()
        await client.aclose()


def session(hub: Hub, actor: Actor, sid: str) -> Session:
    s = Session(sid, actor, CODEC, expires_at=T0 + 3_600_000, max_buffered=1 << 22)
    hub.connect(s)
    return s


async def answer(s: Session, cid: str) -> ServerMessage:
    """The Ack or Refused of command ``cid``."""
    with anyio.fail_after(TIMEOUT):
        while True:
            for frame in s.take_frames():
                message = CODEC.decode_server(frame)
                if isinstance(message, Ack | Refused) and message.command_id == cid:
                    return message
            await s.wait_frames()


async def link(node: Node) -> None:
    sent = await node.access.submit(
        STAFF, a.RequestLink(request_id="r1", creator="cr-1", with_access=True)
    )
    assert isinstance(sent, list)
    assert isinstance(await node.access.submit(CREATOR, a.AcceptRequest(request_id="r1")), list)


async def test_a_staff_command_after_a_revoke_on_another_node_is_refused(redis_url: str) -> None:
    """Node B revokes; node A, not told, decides a staff command on the old grant:
    the shared log refuses the moved grant, A catches up and refuses the command."""
    # R6 H5 (every server node, even one that missed the notice)
    async with two_nodes(redis_url) as (node_a, node_b):
        await link(node_a)
        creator = session(node_a.hub, CREATOR, "c1")
        await node_a.hub.command(creator, c.StartLive(command_id="go", room="cr-1"))
        assert isinstance(await answer(creator, "go"), Ack)
        staff = session(node_a.hub, STAFF, "s1")
        assert node_a.access.grant_for("ag-1", "cr-1", T0) is not None
        await node_b.access.catch_up("cr-1")
        assert isinstance(await node_b.access.submit(CREATOR, a.RevokeAccess(agency="ag-1")), list)
        assert node_a.access.grant_for("ag-1", "cr-1", T0) is not None  # A was not told
        cmd = c.BagAdd(command_id="late", room="cr-1", item=BagItem(product_id="p1"))
        await node_a.hub.command(staff, cmd)
        refused = await answer(staff, "late")
        assert isinstance(refused, Refused), refused
        assert refused.code != Code.UNAVAILABLE
        stored = await node_a.log.read_since("cr-1", 0, 100) or []
        assert "late" not in [e.command_id for e in stored]
        assert node_a.access.grant_for("ag-1", "cr-1", T0) is None  # caught up


async def test_access_decisions_racing_on_one_creator_are_both_stored(redis_url: str) -> None:
    """Another node stores an event of the creator between this node's catch-up and
    its append: the append is refused (moved), caught up, decided again, stored."""
    # R1 R14 (nothing lost across nodes)
    async with two_nodes(redis_url) as (node_a, node_b):
        other = Actor(role="staff", id="st2", agency="ag-2")

        async def b_first() -> None:
            sent = await node_b.access.submit(
                STAFF, a.RequestLink(request_id="rb", creator="cr-1", with_access=True)
            )
            assert isinstance(sent, list)

        node_a.store.race = b_first
        sent = await node_a.access.submit(
            other, a.RequestLink(request_id="ra", creator="cr-1", with_access=True)
        )
        assert isinstance(sent, list), sent
        assert {"ra", "rb"} <= set(node_a.access.book.requests)
        stored = await RedisAccessEventStore(
            node_a.store.client, prefix=node_a.store.prefix
        ).load_access_events()
        assert sorted(e.request.request_id for e in stored if isinstance(e, a.RequestSent)) == [
            "ra",
            "rb",
        ]
