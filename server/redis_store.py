"""The journal and the access events in Redis, shared by every node (decision 0024).

:class:`RedisJournal` is the :class:`~server.journal.Journal` (audit trail R16,
inbox R14/R15) and :class:`RedisAccessEventStore` the
:class:`~server.access_store.AccessEventStore` (R1-R9), on the same Redis as
:class:`~server.log.redis.RedisRoomLog`. Every key is a creator's
(``<prefix>:{<creator>}:<name>``, the room's slot); each write is one Lua script
on one creator's keys, durable as far as Redis persists it.

* ``audit`` (sorted set): score ``at``, member ``%016d(n)`` + the MessagePack
  :class:`~server.journal.AuditEntry`, ``n`` from ``audit:n``: reverse order is
  newest first, insertion order breaking ties (as SQLite's ``at, id``).
* ``notes`` (hash: id -> MessagePack Notification, first one kept), ``inbox`` and
  ``unread`` (sorted sets of ids by arrival ``n`` from ``notes:n``): read = not in
  ``unread``.
* ``access`` (stream, ids ``<n>-0``): the creator's access events in order;
  ``grants`` (hash): ``#n`` how many, and per agency the **grant version**: how
  many of them concern that (agency, creator) pair. The room append checks it
  (:class:`~server.log.base.GrantVersion`). Events of no creator (platform facts
  about an agency) are the pseudo-creator ``~platform``'s. ``<prefix>:access:creators``
  (a set, its own slot, added to before the append) lists the creators.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Final

import msgspec
from msgspec.structs import replace
from redis.typing import EncodableT

from protocol import access as a
from protocol.access import AccessEvent
from protocol.messages import Notification
from server.access_store import AccessMovedError
from server.journal import AuditEntry, AuditQuery
from server.log.redis_conn import RedisClient, Script, creator_key, run_batch
from server.log.redis_scripts import DEFAULT_PREFIX

__all__ = [
    "PLATFORM",
    "AccessMovedError",
    "AccessWake",
    "RedisAccessEventStore",
    "RedisJournal",
    "access_channel",
    "decode_access_wake",
]

PLATFORM: Final = "~platform"
"""Owner of the events about no creator (``~`` is not an id character)."""
PAGE: Final = 200

_AUDIT: Final = Script("""
-- KEYS: audit, audit:n; ARGV: at, entry, at, entry...
local count = #ARGV / 2
local n = redis.call('INCRBY', KEYS[2], count) - count
for i = 1, #ARGV, 2 do
  n = n + 1
  redis.call('ZADD', KEYS[1], ARGV[i], string.format('%016d', n) .. ARGV[i + 1])
end
return n
""")

_NOTIFY: Final = Script("""
-- KEYS: notes, inbox, unread, notes:n; ARGV: id, read ('1'/'0'), note, ...
for i = 1, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2]) == 1 then
    local n = redis.call('INCR', KEYS[4])
    redis.call('ZADD', KEYS[2], n, ARGV[i])
    if ARGV[i + 1] == '0' then redis.call('ZADD', KEYS[3], n, ARGV[i]) end
  end
end
return 1
""")

_INBOX: Final = Script("""
-- KEYS: notes, inbox, unread; ARGV: unread only ('1'/'0'), limit
-- note, unread (1/0), note, unread... newest first
local source = KEYS[2]
if ARGV[1] == '1' then source = KEYS[3] end
local ids = redis.call('ZREVRANGE', source, 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
  out[#out + 1] = redis.call('ZSCORE', KEYS[3], id) and 1 or 0
end
return out
""")

_ACCESS_APPEND: Final = Script("""
-- KEYS: access, grants; ARGV: 1 events seen, 2 wake channel, 3 creator,
--   then agency ('' none), event, ...
-- Appends only if the caller has seen every event of the creator, so each node's
-- book folds them in one order and its grant versions count the same events.
local n = tonumber(redis.call('HGET', KEYS[2], '#n') or 0)
if n ~= tonumber(ARGV[1]) then return {'moved', n} end
for i = 4, #ARGV, 2 do
  n = n + 1
  redis.call('XADD', KEYS[1], string.format('%d-0', n), 'e', ARGV[i + 1])
  if ARGV[i] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[i], 1) end
end
redis.call('HSET', KEYS[2], '#n', n)
redis.call('PUBLISH', ARGV[2], cmsgpack.pack({ARGV[3], n}))
return {'ok', n, redis.call('HGETALL', KEYS[2])}
""")

_ACCESS_READ: Final = Script("""
-- KEYS: access, grants; ARGV: events seen -> {the later events, the grants hash}
local entries = redis.call('XRANGE', KEYS[1], string.format('%d-0', tonumber(ARGV[1]) + 1), '+')
local out = {}
for i = 1, #entries do out[i] = entries[i][2][2] end
return {out, redis.call('HGETALL', KEYS[2])}
""")


class AccessWake(msgspec.Struct, array_like=True, frozen=True):
    """What an access append publishes: ``creator`` has ``count`` access events."""

    creator: str
    count: int


_decode_access_wake = msgspec.msgpack.Decoder(AccessWake).decode


def decode_access_wake(payload: bytes) -> AccessWake:
    """The :class:`AccessWake` in a message of :func:`access_channel`."""
    return _decode_access_wake(payload)


def access_channel(prefix: str = DEFAULT_PREFIX) -> str:
    """The channel every access append publishes its :class:`AccessWake` on (a
    node may listen here and :meth:`RedisAccessEventStore.catch_up`). Not the bus's
    ``lp:access``, where the nodes' :class:`~server.bus.base.AccessNotice`\\ s go:
    with the default prefixes the two were one channel, and every node logged each
    wake-up as a notice that did not decode."""
    return f"{prefix}:access:wake"


def _owner(event: AccessEvent) -> tuple[str, str]:
    """(creator or :data:`PLATFORM`, agency or ''): whose stream and whose grant."""
    match event:
        case a.RequestSent(request=request):
            return request.creator, request.agency
        case a.AgencyRegistered():
            return PLATFORM, ""
        case _:
            return event.creator, event.agency


class RedisJournal:
    """A :class:`~server.journal.Journal` in Redis (the client is not owned)."""

    def __init__(self, client: RedisClient, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode_entry = msgspec.msgpack.Decoder(AuditEntry).decode
        self._decode_note = msgspec.msgpack.Decoder(Notification).decode

    def _key(self, creator: str, name: str) -> str:
        return creator_key(self.prefix, creator, name)

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        """Record entries (one script per creator); durable as Redis persists it."""
        calls: dict[str, list[EncodableT]] = {}
        for e in entries:
            calls.setdefault(e.creator, []).extend((e.at, self._encode(e)))
        await self._run(
            _AUDIT,
            [((self._key(c, "audit"), self._key(c, "audit:n")), args) for c, args in calls.items()],
        )

    async def _run(
        self, script: Script, calls: list[tuple[tuple[str, ...], list[EncodableT]]]
    ) -> None:
        if not calls:
            return
        for reply in await run_batch(self.client, script, calls):
            if isinstance(reply, Exception):
                raise reply

    async def notify(self, notes: Sequence[Notification]) -> None:
        """Store notifications; an id already in the creator's inbox is ignored."""
        calls: dict[str, list[EncodableT]] = {}
        for n in notes:
            calls.setdefault(n.creator, []).extend(
                (n.notification_id, "1" if n.read else "0", self._encode(n))
            )
        await self._run(
            _NOTIFY,
            [
                (tuple(self._key(c, k) for k in ("notes", "inbox", "unread", "notes:n")), args)
                for c, args in calls.items()
            ],
        )

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching every filter of ``query``, newest first, at most ``limit``
        (filters other than time scan the creator's trail newest first)."""
        if query.limit <= 0:
            return []
        key = self._key(query.creator, "audit")
        high = "+inf" if query.until is None else f"({query.until}"
        low = "-inf" if query.since is None else str(query.since)
        found: list[AuditEntry] = []
        offset = 0
        while len(found) < query.limit:
            page = await self.client.zrevrangebyscore(key, high, low, start=offset, num=PAGE)
            for member in page:
                assert isinstance(member, bytes)
                entry = self._decode_entry(member[16:])
                if query.matches(entry):
                    found.append(entry)
            if len(page) < PAGE:
                break
            offset += PAGE
        return found[: query.limit]

    async def inbox(
        self, creator: str, *, unread_only: bool = False, limit: int = 100
    ) -> list[Notification]:
        """The creator's notifications, newest first (arrival order)."""
        if limit <= 0:
            return []
        keys = [self._key(creator, k) for k in ("notes", "inbox", "unread")]
        reply = await _INBOX(self.client, keys, ["1" if unread_only else "0", limit])
        assert isinstance(reply, list)
        notes: list[Notification] = []
        for blob, unread in zip(reply[::2], reply[1::2], strict=True):
            note = self._decode_note(blob)
            if note.read != (not unread):
                note = replace(note, read=not unread)
            notes.append(note)
        return notes

    async def mark_read(self, creator: str, ids: Sequence[str]) -> int:
        """Mark the creator's notifications read; returns how many changed."""
        if not ids:
            return 0
        return int(await self.client.zrem(self._key(creator, "unread"), *ids))


class RedisAccessEventStore:
    """An :class:`~server.access_store.AccessEventStore` in Redis, with the grant
    versions of what this node has seen (the client is not owned).

    What this store loaded, appended or caught up on is what the node's access book
    folded; :meth:`grant_version` counts those events per pair, as Redis does."""

    def __init__(self, client: RedisClient, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(AccessEvent).decode
        self._seen: dict[str, int] = {}
        """Per creator (or PLATFORM): how many of its access events this node has."""
        self._versions: dict[str, dict[str, int]] = {}
        """Per creator: agency -> grant version, as of ``_seen``."""

    def _keys(self, owner: str) -> tuple[str, str]:
        return creator_key(self.prefix, owner, "access"), creator_key(self.prefix, owner, "grants")

    def grant_version(self, agency: str, creator: str) -> int:
        """The version of the agency's grant to the creator, as of the events this
        node has: what a staff command decided now passes as its
        :class:`~server.log.base.GrantVersion`."""
        return self._versions.get(creator, {}).get(agency, 0)

    def _saw(self, owner: str, count: int, grants: object) -> None:
        self._seen[owner] = count
        assert isinstance(grants, list)
        self._versions[owner] = {
            k.decode(): int(v) for k, v in zip(grants[::2], grants[1::2], strict=True) if k != b"#n"
        }

    async def load_access_events(self) -> list[AccessEvent]:
        """Every stored access event: each creator's in their order, creators merged
        by time (the platform's first at a tie). Resets what this node has seen."""
        index = await self.client.smembers(f"{self.prefix}:access:creators")
        owners = [PLATFORM, *sorted(c.decode() if isinstance(c, bytes) else c for c in index)]
        replies = await run_batch(
            self.client, _ACCESS_READ, [(self._keys(owner), [0]) for owner in owners]
        )
        streams: list[list[AccessEvent]] = []
        for owner, reply in zip(owners, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            streams.append(self._read(owner, 0, reply))
        return list(heapq.merge(*streams, key=lambda e: e.at))

    def _read(self, owner: str, after: int, reply: object) -> list[AccessEvent]:
        assert isinstance(reply, list)
        blobs, grants = reply
        events = [self._decode(blob) for blob in blobs]
        self._saw(owner, after + len(events), grants)
        return events

    async def catch_up(self, creator: str | None) -> list[AccessEvent]:
        """The access events of ``creator`` (None: of no creator) that other nodes
        stored since this one last saw them, in order; fold them into the book."""
        owner = PLATFORM if creator is None else creator
        after = self._seen.get(owner, 0)
        reply = await _ACCESS_READ(self.client, self._keys(owner), [after])
        return self._read(owner, after, reply)

    async def append_access_events(self, events: Sequence[AccessEvent]) -> None:
        """Store events in order, one script per creator (a decision concerns one);
        :class:`AccessMovedError` if another node stored some of theirs first."""
        groups: dict[str, list[EncodableT]] = {}
        for e in events:  # every event encodes before anything is written
            owner, agency = _owner(e)
            groups.setdefault(owner, []).extend((agency, self._encode(e)))
        channel = access_channel(self.prefix)
        for owner, args in groups.items():
            if owner != PLATFORM:
                await self.client.sadd(f"{self.prefix}:access:creators", owner)
            reply = await _ACCESS_APPEND(
                self.client, self._keys(owner), [self._seen.get(owner, 0), channel, owner, *args]
            )
            match reply:
                case [b"ok", int(count), grants]:
                    self._saw(owner, count, grants)
                case [b"moved", int(count)]:
                    raise AccessMovedError(owner, count)
                case _:
                    raise AssertionError(f"unexpected reply {reply!r}")
