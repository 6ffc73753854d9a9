"""Room event logs, snapshots and idempotency keys behind one interface (:class:`RoomLog`).

:mod:`server.log.memory` is the reference implementation (tests);
:mod:`server.log.sqlite` the embedded, durable one (single node), on the data
file of :mod:`server.log.sqlite_store`. :mod:`server.log.keys` says what a key
remembers of its command and when a resend matches it (decision 0016).
"""

from server.log.base import (
    Appended,
    AppendResult,
    Conflict,
    Duplicate,
    GrantVersion,
    LogClosedError,
    LogError,
    LogWriteError,
    PendingEvent,
    Reused,
    RoomLog,
)

__all__ = [
    "AppendResult",
    "Appended",
    "Conflict",
    "Duplicate",
    "GrantVersion",
    "LogClosedError",
    "LogError",
    "LogWriteError",
    "PendingEvent",
    "Reused",
    "RoomLog",
]
