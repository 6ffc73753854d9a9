"""server.log.schema: a file written before a migration still works after it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from protocol.model import RoomState
from server.log.base import AppliedQuery, CommandRecord, Duplicate
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
    conn.execute("INSERT INTO log_events (room, seq, data) VALUES (?, 1, x''), (?, 2, x'')",
                 (ROOM, ROOM))
    conn.execute("INSERT INTO log_commands (room, command_id, first_seq, last_seq)"
                 " VALUES (?, 'old1', 1, 1), (?, 'old2', 2, 2)", (ROOM, ROOM))
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
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert {"log_commands_by_seq", "log_commands_applied"} <= index_names(check)
