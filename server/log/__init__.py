"""Room event logs, snapshots and idempotency keys behind one interface (:class:`RoomLog`).

:mod:`server.log.memory` is the reference implementation (tests);
:mod:`server.log.sqlite` the embedded, durable one (single node), on the data
file of :mod:`server.log.sqlite_store`.
"""

from server.log.base import (
    Appended,
    AppendResult,
    Conflict,
    Duplicate,
    LogClosedError,
    LogError,
    LogWriteError,
    PendingEvent,
    RoomLog,
)

__all__ = [
    "AppendResult",
    "Appended",
    "Conflict",
    "Duplicate",
    "LogClosedError",
    "LogError",
    "LogWriteError",
    "PendingEvent",
    "RoomLog",
]
