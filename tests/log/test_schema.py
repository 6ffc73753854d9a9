"""server.log.schema: a file written before a migration still works after it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from protocol.model import Actor, RoomState
from server.log.base import AppliedQuery, CommandRecord, Duplicate, Reused
from server.log.keys import DIGEST_BYTES
from server.log.schema import SCHEMA, SCHEMA_VERSION, migrate
from server.log.sqlite import SqliteRoomLog
from tests.log.conftest import STAFF, pending

ROOM = "room-1"


def index_names(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {str(name) for (name,) in rows}


async def test_commands_keyed_before_version_4_are_not_on_the_log_trail(tmp_path: Path) -> None:
    """After migration 4, commands stored before it (audited in journal_audit) are
    not listed as applied, and are trimmed with their events as before; commands
    recorded after it are listed and kept."""
    # R16 H1 H3
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, SCHEMA[:3])
    conn.execute("INSERT INTO log_rooms (room, last_seq) VALUES (?, 2)", (ROOM,))
    conn.execute(
        "INSERT INTO log_events (room, seq, data) VALUES (?, 1, x''), (?, 2, x'')", (ROOM, ROOM)
    )
    conn.execute(
        "INSERT INTO log_commands (room, command_id, first_seq, last_seq)"
        " VALUES (?, 'old1', 1, 1), (?, 'old2', 2, 2)",
        (ROOM, ROOM),
    )
    conn.close()

    log = await SqliteRoomLog.open(path)
    try:
        rec = CommandRecord(at=5, by=STAFF, family="bag", action="bag_pin")
        await log.append(ROOM, "new3", [pending("p3")], 2, rec)
        assert [a.command_id for a in await log.applied(ROOM, AppliedQuery())] == ["new3"]
        await log.save_snapshot(ROOM, RoomState(room=ROOM, creator=ROOM, seq=3))
        await log.trim(ROOM, 4)
        assert await log.lookup_command(ROOM, "old1") is None
        assert await log.lookup_command(ROOM, "new3") == Duplicate(first_seq=3, last_seq=3)
    finally:
        await log.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
        assert {"log_commands_by_seq", "log_commands_applied"} <= index_names(check)


async def test_keys_stored_before_version_5_keep_working_without_a_digest(
    tmp_path: Path,
) -> None:
    """After migration 5, a key stored before it (no digest) still answers its resend
    when actor and action match, refuses another actor's or action's (Reused), and a
    key with no record matches on its id as before; new keys keep their digest."""
    # H1 R16
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, SCHEMA[:4])
    conn.execute("INSERT INTO log_rooms (room, last_seq) VALUES (?, 2)", (ROOM,))
    conn.execute(
        "INSERT INTO log_events (room, seq, data) VALUES (?, 1, x''), (?, 2, x'')", (ROOM, ROOM)
    )
    conn.execute(
        "INSERT INTO log_commands (room, command_id, first_seq, last_seq, at, role,"
        " actor, agency, family, action)"
        " VALUES (?, 'old-rec', 1, 1, 5, 'staff', ?, ?, 'bag', 'bag_pin')",
        (ROOM, STAFF.id, STAFF.agency),
    )
    conn.execute(
        "INSERT INTO log_commands (room, command_id, first_seq, last_seq)"
        " VALUES (?, 'old-feed', 2, 2)",
        (ROOM,),
    )
    conn.close()

    mine, other = b"\x01" * DIGEST_BYTES, b"\x02" * DIGEST_BYTES
    rec = CommandRecord(at=9, by=STAFF, family="bag", action="bag_pin")
    creator = CommandRecord(at=9, by=Actor(role="creator", id=ROOM), family="bag", action="bag_pin")
    log = await SqliteRoomLog.open(path)
    try:
        assert await log.append(ROOM, "old-rec", [], 2, rec, digest=mine) == Duplicate(
            first_seq=1, last_seq=1
        )
        assert await log.append(ROOM, "old-rec", [], 2, creator, digest=mine) == Reused()
        assert await log.lookup_command(ROOM, "old-feed", digest=other) == Duplicate(
            first_seq=2, last_seq=2
        )
        await log.append(ROOM, "new", [pending("p3")], 2, rec, digest=mine)
        assert await log.append(ROOM, "new", [], 3, rec, digest=other) == Reused()
        assert await log.last_seq(ROOM) == 3
        trail = await log.applied(ROOM, AppliedQuery())
        assert [a.command_id for a in trail] == ["new", "old-rec"]  # old rows readable
    finally:
        await log.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
        stored = check.execute("SELECT command_id, digest FROM log_commands ORDER BY first_seq")
        assert stored.fetchall() == [("old-rec", None), ("old-feed", None), ("new", mine)]
