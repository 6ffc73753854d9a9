"""What the store keeps stays readable: the largest values the API accepts survive a
restart (decision 0017), and a record that does not decode makes its room unavailable,
retryably, without taking the node, the socket or the other rooms with it."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from protocol import commands as c
from protocol.errors import Code
from protocol.messages import Ack, Error, Join, Ping, Pong, Refused, Resume, Resumed, Snapshot
from protocol.model import BagItem, Viewer
from server.config import Settings
from tests.e2e.conftest import Server, raw_client, run_server

CENTS_MAX, COUNT_MAX, QUANTITY_MAX = 10**12, 10**9, 10**6
VIEWER = Viewer(unique_id="v", member_level=COUNT_MAX)


def _api(srv: Server, creator: str) -> tuple[str, dict[str, str]]:
    base = f"http://127.0.0.1:{srv.settings.port}"
    return base, {"Authorization": f"Bearer {srv.token(creator=creator)}"}


async def test_the_largest_accepted_values_survive_a_restart(
    make_settings: Callable[..., Settings],
) -> None:
    """Orders, gifts and viewers at the bounds commands accept reach every console, are
    snapshotted, reload after a restart, and join and GET /api/lives still answer."""
    # H6, H4, R13 (the LIVE dashboard), R12 (post-LIVE data)
    settings = make_settings(snapshot_interval=4)
    async with (
        run_server(settings) as srv,
        raw_client(srv, srv.token(creator="cr")) as feed,
        raw_client(srv, srv.token(creator="cr"), fmt="msgpack") as console,
    ):
        for raw in (feed, console):
            await raw.send(Join(room="cr"))
            await raw.expect(Snapshot)
        commands: list[c.Command] = [
            c.StartLive(command_id="go", room="cr"),
            c.BagAdd(
                command_id="add",
                room="cr",
                item=BagItem(product_id="p", price_cents=CENTS_MAX, stock=COUNT_MAX),
            ),
            c.FeedViewers(command_id="v", room="cr", total=COUNT_MAX),
        ]
        for i in range(3):  # each sum passes the bound of one value
            commands += [
                c.FeedOrder(
                    command_id=f"o{i}",
                    room="cr",
                    order_id=f"o{i}",
                    user=VIEWER,
                    product_id="p",
                    quantity=QUANTITY_MAX,
                    amount_cents=CENTS_MAX,
                ),
                c.FeedGift(
                    command_id=f"g{i}",
                    room="cr",
                    user=VIEWER,
                    gift_id=COUNT_MAX,
                    repeat_count=COUNT_MAX,
                ),
            ]
        last = 0
        for command in commands:
            await feed.send(command)
            ack: Ack = await feed.expect(Ack)
            last = ack.seq
        # Both wire formats decode every event (a console once stopped here).
        for raw in (feed, console):
            assert [e.seq for e in await raw.events_until(last)] == list(range(1, last + 1))
    async with run_server(settings) as srv:  # a restart: snapshot + log
        async with raw_client(srv, srv.token(creator="cr"), fmt="msgpack") as raw:
            await raw.send(Join(room="cr"))
            snapshot: Snapshot = await raw.expect(Snapshot)
        current = snapshot.state.current
        assert current is not None
        assert (current.orders, current.units, current.gmv_cents) == (
            3,
            3 * QUANTITY_MAX,
            3 * CENTS_MAX,
        )
        assert (current.gifts, current.peak_viewers) == (3 * COUNT_MAX, COUNT_MAX)
        base, headers = _api(srv, "cr")
        async with httpx.AsyncClient() as http:
            lives = await http.get(f"{base}/api/lives", headers=headers)
        assert lives.status_code == 200, lives.text
        assert lives.json()["current"]["gmv_cents"] == 3 * CENTS_MAX


class Records(logging.Handler):
    """Every record a logger emits (the server's logging may not propagate to caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def recording(name: str) -> Iterator[Records]:
    logger = logging.getLogger(name)
    handler = Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _sql(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.mark.parametrize("kind", ["event", "snapshot"])
async def test_a_record_that_does_not_decode_makes_its_room_unavailable(
    make_settings: Callable[..., Settings],
    kind: str,
) -> None:
    """A stored event or snapshot that does not decode: that room's joins, commands and
    reads answer ROOM_UNAVAILABLE (retryable), logged once and counted; /readyz says 503;
    the socket and the other rooms go on; once repaired, the room reads again."""
    # H6 (never a crash, never other rooms), H3
    settings = make_settings()
    path = Path(settings.data_path)
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as raw:
        for command in (
            c.StartLive(command_id="go", room="cr"),
            c.BagAdd(command_id="a", room="cr", item=BagItem(product_id="p1")),
            c.BagAdd(command_id="b", room="cr", item=BagItem(product_id="p2")),
        ):
            await raw.send(command)
            await raw.expect(Ack)
        if kind == "snapshot":  # loading reads it, and no event after it
            rt = srv.runtime
            await rt.log.save_snapshot("cr", (await rt.hub.room("cr")).state)
    # Seq 2 of the log, or the room's one snapshot.
    table, where = ("log_events", "seq = 2") if kind == "event" else ("log_snapshots", "1")
    [(good,)] = _sql(path, f"SELECT data FROM {table} WHERE {where}")
    _sql(path, f"UPDATE {table} SET data = ? WHERE {where}", b"\xc1 not what was stored")

    async with (
        run_server(settings) as srv,
        raw_client(srv, srv.token(creator="cr")) as raw,
        raw_client(srv, srv.token(creator="other")) as other,
        httpx.AsyncClient() as http,
    ):
        base, headers = _api(srv, "cr")
        with recording("livepilot") as logged:
            for _ in range(2):  # a client retrying
                await raw.send(Join(room="cr"))
                error: Error = await raw.expect(Error)
                assert (error.code, error.retryable, error.room) == (
                    Code.ROOM_UNAVAILABLE,
                    True,
                    "cr",
                )
            await raw.send(c.BagAdd(command_id="c", room="cr", item=BagItem(product_id="p3")))
            refused: Refused = await raw.expect(Refused)
            assert refused.code == Code.ROOM_UNAVAILABLE
            lives = await http.get(f"{base}/api/lives", headers=headers)
            assert lives.status_code == 503
            assert lives.json()["code"] == Code.ROOM_UNAVAILABLE
            assert lives.json()["retryable"] is True
            await raw.send(Ping(nonce=7))  # the socket is still there
            assert (await raw.expect(Pong)).nonce == 7
            await other.send(Join(room="other"))  # and so are the other rooms
            await other.expect(Snapshot)
        ready = await http.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "degraded", "unreadable_rooms": ["cr"]}
        metrics = (await http.get(f"{base}/metrics")).text
        assert f'livepilot_unreadable_records_total{{kind="{kind}"}} 4.0' in metrics
        assert "livepilot_unreadable_rooms 1.0" in metrics
        # Logged once, for four failed reads, and without a traceback.
        errors = [r for r in logged.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "room cannot be read" in errors[0].getMessage()
        assert errors[0].exc_info is None

        _sql(path, f"UPDATE {table} SET data = ? WHERE {where}", good)  # repaired
        await raw.send(Join(room="cr"))
        snapshot: Snapshot = await raw.expect(Snapshot)
        assert [i.product_id for i in snapshot.state.bag] == ["p1", "p2"]
        ready = await http.get(f"{base}/readyz")
        assert ready.status_code == 200
        assert "livepilot_unreadable_rooms 0.0" in (await http.get(f"{base}/metrics")).text


async def test_a_resume_through_an_unreadable_event_is_retryable(
    make_settings: Callable[..., Settings],
) -> None:
    """A room that loads from its snapshot still joins; a resume that must read the
    damaged event before it answers ROOM_UNAVAILABLE (and /readyz 503) until repaired."""
    # H3, H6
    settings = make_settings()
    path = Path(settings.data_path)
    async with run_server(settings) as srv, raw_client(srv, srv.token(creator="cr")) as raw:
        for command in (
            c.StartLive(command_id="go", room="cr"),
            c.BagAdd(command_id="a", room="cr", item=BagItem(product_id="p1")),
            c.BagAdd(command_id="b", room="cr", item=BagItem(product_id="p2")),
        ):
            await raw.send(command)
            await raw.expect(Ack)
        rt = srv.runtime
        await rt.log.save_snapshot("cr", (await rt.hub.room("cr")).state)
    [(good,)] = _sql(path, "SELECT data FROM log_events WHERE seq = 2")
    _sql(path, "UPDATE log_events SET data = ? WHERE seq = 2", b"\xc1")
    async with (
        run_server(settings) as srv,
        raw_client(srv, srv.token(creator="cr")) as raw,
        httpx.AsyncClient() as http,
    ):
        base = f"http://127.0.0.1:{srv.settings.port}"
        await raw.send(Join(room="cr"))
        assert (await raw.expect(Snapshot)).seq == 3
        await raw.send(Resume(room="cr", last_seq=1))
        error: Error = await raw.expect(Error)
        assert (error.code, error.retryable) == (Code.ROOM_UNAVAILABLE, True)
        assert (await http.get(f"{base}/readyz")).status_code == 503
        _sql(path, "UPDATE log_events SET data = ? WHERE seq = 2", good)
        await raw.send(Resume(room="cr", last_seq=1))
        resumed: Resumed = await raw.expect(Resumed)
        assert resumed.seq == 3
        assert [e.seq for e in raw.events] == [2, 3]
        assert (await http.get(f"{base}/readyz")).status_code == 200
