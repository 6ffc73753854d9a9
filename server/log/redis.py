"""The shared room log: the :class:`~server.log.base.RoomLog` in Redis, for many nodes.

Every write is one Lua script (:mod:`server.log.redis_scripts`, the key layout
there), run atomically by Redis and called by SHA: an append checks the key
(H1), the grant version (a revoke another node made) and ``expected_seq``, adds
the events with explicit stream ids, the command record (R16), trims behind the
snapshot and publishes a wake-up (:class:`Wake` on :func:`wake_channel`). All
of a room's keys share the hash tag ``{room}``, so a Redis Cluster works.

Appends queued with :meth:`RedisRoomLog.append_soon` go out in queue order: one
writer task sends whatever is queued as one pipeline (a batch per round trip,
like the SQLite store's group commit) and resolves the futures in order once
Redis replied - an ack waits for the append's reply, and is as durable as the
server's persistence settings make it (:func:`~server.log.redis_conn.check_persistence`).
A reply that never came (the connection broke) fails the append with
:class:`LogWriteError` although Redis may have applied it: the client resends
and its key answers (H1).

Each room has an **epoch**, made when its ``meta`` hash is: if Redis lost the
room (a flush, a failover without the data), the next write makes a new one,
and a node or client holding the old epoch must reload the snapshot instead of
resuming by seq ("history lost", H3): :meth:`RedisRoomLog.epoch`, :class:`Wake`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Final

import anyio
import msgspec
from redis.exceptions import RedisClusterException, RedisError
from redis.typing import EncodableT

from protocol.messages import Event
from protocol.model import RoomState
from server.log.base import (
    Appended,
    AppendResult,
    AppliedCommand,
    AppliedQuery,
    CommandRecord,
    Conflict,
    Duplicate,
    GrantVersion,
    LogClosedError,
    LogError,
    LogWriteError,
    PendingEvent,
    Reused,
    RoomLogCodec,
    check_append_args,
    check_read_args,
    check_snapshot,
    stamp,
)
from server.log.keys import same_command
from server.log.redis_conn import RedisClient, Script, connect, creator_key, run_batch
from server.log.redis_scripts import (
    APPEND,
    DEFAULT_PREFIX,
    READ,
    SNAPSHOT,
    TRIM,
    Wake,
    decode_wake,
    wake_channel,
)

__all__ = ["DEFAULT_PREFIX", "RedisRoomLog", "Wake", "decode_wake", "wake_channel"]

logger = logging.getLogger("livepilot.log")

MAX_BATCH: Final = 256
"""At most this many appends per pipeline."""
TRIM_CHUNK: Final = 2000
"""At most this many events are trimmed per script run (a script blocks Redis)."""
APPLIED_PAGE: Final = 200
_FAILURES: Final = (RedisError, RedisClusterException, OSError)
"""What a call to Redis raises when it did not answer (the Cluster client's own
errors, a slot no node covers..., are not RedisErrors)."""


@functools.lru_cache(maxsize=65536)
def _room_keys(prefix: str, room: str) -> tuple[str, ...]:
    """meta, events, cmds, keyseq, applied, grants (one slot: ``{room}``)."""
    return tuple(
        creator_key(prefix, room, name)
        for name in ("meta", "events", "cmds", "keyseq", "applied", "grants")
    )


_KeyBlob = tuple[bytes | None, CommandRecord | None]
_decode_key = msgspec.msgpack.Decoder(_KeyBlob).decode
_decode_applied = msgspec.msgpack.Decoder(tuple[str, CommandRecord]).decode


def _answer(
    stored: bytes, digest: bytes | None, record: CommandRecord | None
) -> Duplicate | Reused:
    """What a command with a stored key's id gets (H1, decision 0016)."""
    first, last, blob = stored.split(b":", 2)
    stored_digest, stored_record = _decode_key(blob)
    by, action = (None, None) if stored_record is None else (stored_record.by, stored_record.action)
    if same_command(digest, record, stored_digest, by, action):
        return Duplicate(first_seq=int(first), last_seq=int(last))
    return Reused()


class _Job:
    __slots__ = ("args", "finish", "future", "keys", "then")

    def __init__(
        self,
        keys: tuple[str, ...],
        args: list[EncodableT],
        finish: Callable[[object], AppendResult],
        future: asyncio.Future[AppendResult],
        then: Callable[[], None] | None,
    ) -> None:
        self.keys = keys
        self.args = args
        self.finish = finish
        self.future = future
        self.then = then


class RedisRoomLog:
    """A :class:`~server.log.base.RoomLog` in Redis (one server or a Cluster).

    ``prefix`` starts every key (several deployments, or tests, share a server);
    ``retain_events``, when set, has every append trim its room to that many
    events behind the latest snapshot (never past it), a bounded step at a time.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        retain_events: int | None = None,
        owns_client: bool = False,
    ) -> None:
        if retain_events is not None and retain_events < 0:
            raise ValueError("retain_events must be >= 0")
        self.client = client
        self.prefix = prefix
        self.retain_events = retain_events
        self._owns_client = owns_client
        self._codec = RoomLogCodec()
        self._encode_key = msgspec.msgpack.Encoder().encode
        self._queue: list[_Job] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, retain_events: int | None = None
    ) -> RedisRoomLog:
        """Connect to ``url`` (a server or a Cluster node) and own the client."""
        client = await connect(url)
        return cls(client, prefix=prefix, retain_events=retain_events, owns_client=True)

    async def close(self) -> None:
        """Send every append already queued, then stop; idempotent, and runs to
        completion even if the caller is cancelled. The client is closed if this
        log owns it."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        with anyio.CancelScope(shield=True):
            if self._writer is not None:
                await self._writer
            if self._owns_client:
                await self.client.aclose()

    def _keys(self, room: str) -> tuple[str, ...]:
        return _room_keys(self.prefix, room)

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the room log is closed")

    async def _run(
        self, script: Script, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> list[object]:
        self._check_open()
        try:
            reply = await script(self.client, keys, args)
        except _FAILURES as exc:
            raise LogError(f"redis: {exc}") from exc
        assert isinstance(reply, list)
        return reply

    async def _get(self, key: str, field: str) -> bytes | None:
        self._check_open()
        try:
            value = await self.client.hget(key, field)
        except _FAILURES as exc:
            raise LogError(f"redis: {exc}") from exc
        return value if isinstance(value, bytes) else None

    # --- appends --------------------------------------------------------------

    async def append(
        self,
        room: str,
        command_id: str | None,
        events: Sequence[PendingEvent],
        expected_seq: int,
        record: CommandRecord | None = None,
        *,
        digest: bytes | None = None,
        grant_version: GrantVersion | None = None,
    ) -> AppendResult:
        """See :meth:`RoomLog.append`: ``grant_version`` is checked in the script."""
        return await self.append_soon(
            room,
            command_id,
            events,
            expected_seq,
            record,
            digest=digest,
            grant_version=grant_version,
        )

    def append_soon(
        self,
        room: str,
        command_id: str | None,
        events: Sequence[PendingEvent],
        expected_seq: int,
        record: CommandRecord | None = None,
        *,
        digest: bytes | None = None,
        grant_version: GrantVersion | None = None,
        then: Callable[[], None] | None = None,
    ) -> asyncio.Future[AppendResult]:
        """See :meth:`RoomLog.append_soon`: queued for the writer task, which sends
        the queue in order, one pipeline per round trip; ``then`` runs right after
        the futures of its batch are resolved."""
        check_append_args(expected_seq)
        keys = self._keys(room)
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        try:
            self._check_open()
            stored = stamp(room, command_id, events, expected_seq)
            args = self._append_args(
                room,
                command_id,
                stored,
                expected_seq=expected_seq,
                record=record,
                digest=digest,
                grant=grant_version,
            )
        except Exception as exc:  # closed, or an event that does not encode
            future.set_exception(exc)
            if then is not None:
                future.add_done_callback(lambda _: then())
            return future

        def finish(reply: object) -> AppendResult:
            match reply:
                case [b"ok", int(last), _]:
                    if last != expected_seq + len(stored):
                        raise LogWriteError(
                            f"room {room}: appended at {last}, not at {expected_seq + len(stored)}"
                        )
                    return Appended(events=stored, last_seq=last)
                case [b"seen", bytes(value)]:
                    return _answer(value, digest, record)
                case [b"conflict", int(last), moved]:
                    return Conflict(
                        current_seq=last, grant_version=moved if isinstance(moved, int) else None
                    )
            raise LogWriteError(f"room {room}: unexpected reply {reply!r}")

        self._queue.append(_Job(keys, args, finish, future, then))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        self._wake.set()
        return future

    def _append_args(
        self,
        room: str,
        command_id: str | None,
        stored: tuple[Event, ...],
        *,
        expected_seq: int,
        record: CommandRecord | None,
        digest: bytes | None,
        grant: GrantVersion | None,
    ) -> list[EncodableT]:
        encode = self._codec.encode
        blobs = [encode(e) for e in stored]  # before queueing: all or nothing
        rec = (
            b"" if record is None or command_id is None else self._encode_key((command_id, record))
        )
        return [
            command_id or "",
            expected_seq,
            secrets.token_hex(8),
            self._encode_key((digest, record)),
            rec,
            0 if record is None else record.at,
            "" if grant is None else grant.agency,
            0 if grant is None else grant.version,
            -1 if self.retain_events is None else self.retain_events,
            TRIM_CHUNK,
            wake_channel(room, self.prefix),
            room,
            *blobs,
        ]

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                replies = await self._send(batch)
                self._settle(batch, replies)
        finally:  # cancelled (the loop is going away): nobody waits for ever
            for job in self._queue:
                if not job.future.done():
                    job.future.set_exception(LogClosedError("the room log was stopped"))
            self._queue.clear()

    async def _send(self, batch: list[_Job]) -> list[object]:
        """One pipeline for the batch, in order (a reply or an error per append)."""
        try:
            return await run_batch(self.client, APPEND, [(job.keys, job.args) for job in batch])
        except Exception as exc:  # no reply (any cause): none of the batch is acked
            return [exc] * len(batch)

    @staticmethod
    def _settle(batch: list[_Job], replies: list[object]) -> None:
        for job, reply in zip(batch, replies, strict=True):
            if job.future.done():  # cancelled by its caller
                continue
            if isinstance(reply, BaseException):
                error = LogWriteError(f"append not acknowledged by Redis: {reply}")
                error.__cause__ = reply
                job.future.set_exception(error)
                continue
            try:
                job.future.set_result(job.finish(reply))
            except Exception as exc:
                job.future.set_exception(exc)
        for job in batch:
            if job.then is not None:
                try:
                    job.then()
                except Exception:
                    logger.exception("an append's completion callback failed")

    # --- reads ----------------------------------------------------------------

    async def read_since(self, room: str, after_seq: int, limit: int) -> list[Event] | None:
        """See :meth:`RoomLog.read_since`; None too when the stream misses events the
        room's ``last`` says it has (Redis lost them: reload the snapshot, H3)."""
        check_read_args(after_seq, limit)
        reply = await self._run(READ, self._keys(room)[:2], [after_seq, limit])
        if len(reply) < 3:
            return None  # H3
        last, blobs = reply[0], reply[2]
        assert isinstance(last, int)
        assert isinstance(blobs, list)
        events = self._codec.decode_events(room, after_seq + 1, blobs)
        if len(events) != min(limit, last - after_seq) or (
            events and (events[0].seq != after_seq + 1 or events[-1].seq != after_seq + len(events))
        ):
            return None  # H3: not gap-free
        return events

    async def last_seq(self, room: str) -> int:
        """See :meth:`RoomLog.last_seq`."""
        value = await self._get(self._keys(room)[0], "last")
        return 0 if value is None else int(value)

    async def epoch(self, room: str) -> str | None:
        """The room's epoch (None: never written to, or lost). Another epoch than the
        one a client resumes from means that history is gone: send the snapshot (H3)."""
        value = await self._get(self._keys(room)[0], "epoch")
        return None if value is None else value.decode()

    async def lookup_command(
        self,
        room: str,
        command_id: str,
        *,
        digest: bytes | None = None,
        record: CommandRecord | None = None,
    ) -> Duplicate | Reused | None:
        """See :meth:`RoomLog.lookup_command`."""
        value = await self._get(self._keys(room)[2], command_id)
        return None if value is None else _answer(value, digest, record)

    async def applied(self, room: str, query: AppliedQuery) -> list[AppliedCommand]:
        """See :meth:`RoomLog.applied` (filters other than time scan the room's records
        newest first, a page at a time)."""
        self._check_open()
        if query.limit <= 0:
            return []
        key = self._keys(room)[4]
        high = "+inf" if query.until is None else f"({query.until}"
        low = "-inf" if query.since is None else str(query.since)
        found: list[AppliedCommand] = []
        offset = 0
        while len(found) < query.limit:
            try:
                page = await self.client.zrevrangebyscore(
                    key, high, low, start=offset, num=APPLIED_PAGE
                )
            except _FAILURES as exc:
                raise LogError(f"redis: {exc}") from exc
            for member in page:
                assert isinstance(member, bytes)
                command_id, record = _decode_applied(member[32:])
                if query.passes(record.at, record.by, record.family):
                    found.append(
                        AppliedCommand(
                            command_id=command_id, last_seq=int(member[:16]), record=record
                        )
                    )
            if len(page) < APPLIED_PAGE:
                break
            offset += APPLIED_PAGE
        return found[: query.limit]

    async def save_snapshot(self, room: str, state: RoomState) -> None:
        """See :meth:`RoomLog.save_snapshot`."""
        if state.room != room:
            check_snapshot(room, state, state.seq)  # raises: another room's
        keys = self._keys(room)[:4]
        reply = await self._run(
            SNAPSHOT, keys, [state.seq, self._codec.encode(state), secrets.token_hex(8)]
        )
        last = reply[1]
        assert isinstance(last, int)
        check_snapshot(room, state, last)

    async def load_snapshot(self, room: str) -> RoomState | None:
        """See :meth:`RoomLog.load_snapshot`."""
        value = await self._get(self._keys(room)[0], "snap")
        return None if value is None else self._codec.decode_state(room, value)

    async def trim(self, room: str, before_seq: int) -> int:
        """See :meth:`RoomLog.trim`: :data:`TRIM_CHUNK` events per script run."""
        keys = self._keys(room)[:4]
        total = 0
        while True:
            dropped, done = await self._run(TRIM, keys, [before_seq, TRIM_CHUNK])
            assert isinstance(dropped, int)
            total += dropped
            if done:
                return total
