"""The schema of livepilot's SQLite data file, as numbered migrations.

One data file holds the room logs, the access events, the notifications and
the audit trail. ``PRAGMA user_version`` is one number per file, so there is one
ordered list of steps for the whole file: :data:`SCHEMA`. A module that needs
tables adds the next step here (version = previous + 1); a step is never edited
once released. :func:`migrate` applies the missing steps, each in its own
transaction together with the ``user_version`` bump, so a crash mid-migration
leaves the file at the previous version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Migration", "SchemaError", "migrate", "schema_version"]

Migration = tuple[int, tuple[str, ...]]
"""(version, statements): the statements take the file from ``version - 1`` to ``version``."""

LOG_V1: Final[tuple[str, ...]] = (
    # One row per room ever written: its last seq and how far history is trimmed
    # (every event with seq <= trimmed_seq is gone, H3).
    """CREATE TABLE log_rooms (
        room TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL CHECK (last_seq >= 0),
        trimmed_seq INTEGER NOT NULL DEFAULT 0 CHECK (trimmed_seq <= last_seq)
    ) WITHOUT ROWID""",
    # The events: the whole protocol Event, MessagePack-encoded (H2: (room, seq) unique).
    """CREATE TABLE log_events (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL CHECK (seq >= 1),
        data BLOB NOT NULL,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID""",
    # Idempotency keys (H1): the seqs a command's first application got.
    """CREATE TABLE log_commands (
        room TEXT NOT NULL,
        command_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (room, command_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX log_commands_by_seq ON log_commands (room, last_seq)",
    # The latest snapshot per room (RoomState, MessagePack-encoded, as of seq).
    """CREATE TABLE log_snapshots (
        room TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
)

JOURNAL_V2: Final[tuple[str, ...]] = (
    # The audit trail (R16): one row per attempted action on a creator's room or
    # access, with its real actor. Queried by creator, newest first, filtered by
    # agency, staff member, family and time (:mod:`server.store`).
    """CREATE TABLE journal_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        creator TEXT NOT NULL,
        at INTEGER NOT NULL,
        role TEXT NOT NULL,
        actor TEXT NOT NULL,
        agency TEXT,
        staff TEXT,
        family TEXT NOT NULL,
        action TEXT NOT NULL,
        command_id TEXT,
        code INTEGER,
        seq INTEGER
    )""",
    "CREATE INDEX journal_audit_by_creator ON journal_audit (creator, at)",
    "CREATE INDEX journal_audit_by_agency ON journal_audit (creator, agency, at)",
    "CREATE INDEX journal_audit_by_staff ON journal_audit (creator, staff, at)",
    # The creator's inbox (R14, R15): the Notification MessagePack-encoded, unique
    # per (creator, notification_id); ``id`` keeps arrival order (newest first).
    """CREATE TABLE journal_notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        creator TEXT NOT NULL,
        notification_id TEXT NOT NULL,
        read INTEGER NOT NULL DEFAULT 0 CHECK (read IN (0, 1)),
        data BLOB NOT NULL,
        UNIQUE (creator, notification_id)
    )""",
    "CREATE INDEX journal_notifications_inbox ON journal_notifications (creator, id)",
    """CREATE INDEX journal_notifications_unread ON journal_notifications (creator, id)
        WHERE read = 0""",
    # The access workflow's events (R1-R9), MessagePack-encoded, in order: the
    # access book is rebuilt from them at start.
    """CREATE TABLE access_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        data BLOB NOT NULL
    )""",
)

JOURNAL_V3: Final[tuple[str, ...]] = (
    # Every audit entry updated this index too, with rows scattered by staff id:
    # ~15 % of a durable command's CPU in the load test (decision 0008). A query
    # by staff member now uses the agency index when it names the agency, or
    # scans the creator's trail newest first.
    "DROP INDEX IF EXISTS journal_audit_by_staff",
)

LOG_V4: Final[tuple[str, ...]] = (
    # A command applied by someone carries its audit record (R16) in its idempotency
    # row, written in the same append as its events (decision 0009): acked means on
    # the trail, and the three B-trees of a journal_audit row are not written for
    # every command. Rows with ``at`` are kept for good; rows without (feed items,
    # and commands applied before this step, whose audit entry is in journal_audit)
    # are trimmed with their events, through the seq index that only they are in.
    "ALTER TABLE log_commands ADD COLUMN at INTEGER",
    "ALTER TABLE log_commands ADD COLUMN role TEXT",
    "ALTER TABLE log_commands ADD COLUMN actor TEXT",
    "ALTER TABLE log_commands ADD COLUMN agency TEXT",
    "ALTER TABLE log_commands ADD COLUMN family TEXT",
    "ALTER TABLE log_commands ADD COLUMN action TEXT",
    "DROP INDEX log_commands_by_seq",
    "CREATE INDEX log_commands_by_seq ON log_commands (room, last_seq) WHERE at IS NULL",
    """CREATE INDEX log_commands_applied ON log_commands (room, at, last_seq)
        WHERE at IS NOT NULL""",
)

LOG_V5: Final[tuple[str, ...]] = (
    # A command id names one command by one actor (H1, decision 0016): each key
    # keeps a 16-byte digest of its command's actor and content, and a resend
    # must match it. Rows from before this step keep NULL: they are matched on
    # the actor and action they recorded, if any (server.log.keys.same_command).
    "ALTER TABLE log_commands ADD COLUMN digest BLOB",
)

SCHEMA: Final[tuple[Migration, ...]] = (
    (1, LOG_V1),
    (2, JOURNAL_V2),
    (3, JOURNAL_V3),
    (4, LOG_V4),
    (5, LOG_V5),
)
SCHEMA_VERSION: Final = SCHEMA[-1][0]


class SchemaError(Exception):
    """The data file's schema cannot be used by this build (e.g. it is newer)."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's ``PRAGMA user_version``: the last migration applied (0: empty)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, steps: Sequence[Migration] = SCHEMA) -> int:
    """Bring the file to the last version of ``steps``; returns that version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Safe against
    a concurrent migrator: the version is re-read inside the write transaction.
    """
    for i, (version, _) in enumerate(steps, start=1):
        if version != i:
            raise SchemaError(f"migration #{i} is numbered {version}: steps must be 1, 2, 3...")
    latest = len(steps)
    if schema_version(conn) > latest:
        raise SchemaError(f"data file is at schema {schema_version(conn)}, newer than {latest}")
    for version, statements in steps:
        if schema_version(conn) >= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) < version:  # nobody migrated meanwhile
                for sql in statements:
                    conn.execute(sql)
                conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return latest
