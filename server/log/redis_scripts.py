"""The Lua scripts of the Redis room log (:mod:`server.log.redis`, decision 0024).

Nothing but these scripts writes a room's keys, and each runs atomically on the
server, so every rule of :class:`~server.log.base.RoomLog` holds across nodes.
A room's keys (``<prefix>:{<room>}:<name>``, one Cluster slot):

* ``meta`` (hash): ``last`` seq, ``trimmed`` seq (every event <= it is gone),
  ``epoch`` (made when the hash is; a new one means the history was lost, H3),
  ``snap_seq`` and ``snap`` (the latest snapshot).
* ``events`` (stream): entry id ``<seq>-0``, field ``e``: the MessagePack Event.
* ``cmds`` (hash): command id -> ``<first>:<last>:`` + MessagePack
  ``(digest, record)`` (H1, decision 0016).
* ``keyseq`` (sorted set): the ids of commands without a record, by last seq:
  what a trim forgets with the events.
* ``applied`` (sorted set): a recorded command (R16, decision 0009), score
  ``at``, member ``%016d(last)%016d(first)`` + MessagePack ``(id, record)``:
  newest first is reverse order.
* ``grants`` (hash): agency -> the version of its grant to this creator
  (room id = creator id), written by the access store (:mod:`server.redis_store`).
"""

from __future__ import annotations

from typing import Final

import msgspec

from server.log.redis_conn import Script, creator_key

__all__ = [
    "APPEND",
    "DEFAULT_PREFIX",
    "READ",
    "SNAPSHOT",
    "TRIM",
    "Wake",
    "decode_wake",
    "wake_channel",
]

DEFAULT_PREFIX: Final = "lp"
"""The first part of every key (several deployments, or tests, may share a server)."""


class Wake(msgspec.Struct, array_like=True, frozen=True):
    """What an append publishes: the room's log reached ``last_seq`` in ``epoch``."""

    room: str
    last_seq: int
    epoch: str


_decode_wake = msgspec.msgpack.Decoder(Wake).decode


def decode_wake(payload: bytes) -> Wake:
    """The :class:`Wake` in a message of :func:`wake_channel` (``msgspec.DecodeError``
    if it is not one)."""
    return _decode_wake(payload)


def wake_channel(room: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The pub/sub channel a room's appends publish on (``<prefix>:{<room>}:wake``:
    in the room's slot, ready for sharded pub/sub)."""
    return creator_key(prefix, room, "wake")


_COMMON: Final = """
local function open_room(meta, events, cmds, keyseq, epoch)
  -- A room never written to, or one whose history Redis lost (a flush, a failover
  -- without the data): a new epoch, and nothing left over of another history (H3).
  redis.call('DEL', events, cmds, keyseq)
  redis.call('HSET', meta, 'last', 0, 'trimmed', 0, 'epoch', epoch)
end

local function trim_to(meta, events, cmds, keyseq, cut)
  -- Events <= cut go, and the keys of unrecorded commands with them (H1 window);
  -- recorded commands are the audit trail and stay (R16).
  redis.call('XTRIM', events, 'MINID', string.format('%d-0', cut + 1))
  local gone = redis.call('ZRANGEBYSCORE', keyseq, '-inf', cut)
  for i = 1, #gone, 1000 do
    redis.call('HDEL', cmds, unpack(gone, i, math.min(i + 999, #gone)))
  end
  redis.call('ZREMRANGEBYSCORE', keyseq, '-inf', cut)
  redis.call('HSET', meta, 'trimmed', cut)
end
"""

APPEND: Final = Script(
    _COMMON
    + """
-- KEYS: meta, events, cmds, keyseq, applied, grants
-- ARGV: 1 command id ('' none), 2 expected seq, 3 a new epoch, 4 key blob,
--   5 record blob ('' none), 6 record at, 7 grant agency ('' none), 8 grant version,
--   9 events kept behind the snapshot (-1: no trim), 10 trim chunk,
--   11 wake channel, 12 room, 13.. the events (MessagePack)
local meta, events, cmds, keyseq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cid = ARGV[1]
local s = redis.call('HMGET', meta, 'last', 'trimmed', 'epoch', 'snap_seq')
local last, trimmed, epoch = tonumber(s[1]), tonumber(s[2]), s[3]
if not last then
  open_room(meta, events, cmds, keyseq, ARGV[3])
  last, trimmed, epoch = 0, 0, ARGV[3]
end
-- 1. idempotency: a known id appends nothing (H1); Python compares the digest.
if cid ~= '' then
  local seen = redis.call('HGET', cmds, cid)
  if seen then return {'seen', seen} end
end
-- 2. the grant the node decided with, and 3. the seq it decided against (H5).
local moved = false
if ARGV[7] ~= '' then
  local version = tonumber(redis.call('HGET', KEYS[6], ARGV[7]) or 0)
  if version ~= tonumber(ARGV[8]) then moved = version end
end
if last ~= tonumber(ARGV[2]) or moved then
  return {'conflict', last, moved}
end
-- 4. the events, with explicit ids: seqs without gaps (H2).
local n = #ARGV - 12
for i = 1, n do
  redis.call('XADD', events, string.format('%d-0', last + i), 'e', ARGV[12 + i])
end
local new_last = last + n
if n > 0 then redis.call('HSET', meta, 'last', new_last) end
-- 5. the key, and the command record of the audit trail (R16).
if cid ~= '' then
  redis.call('HSET', cmds, cid, string.format('%d:%d:', last + 1, new_last) .. ARGV[4])
  if ARGV[5] ~= '' then
    local order = string.format('%016d%016d', new_last, last + 1)
    redis.call('ZADD', KEYS[5], ARGV[6], order .. ARGV[5])
  else
    redis.call('ZADD', keyseq, new_last, cid)
  end
end
-- 6. trimming, never past the snapshot (H3), a bounded step per append.
local retain = tonumber(ARGV[9])
if retain >= 0 and s[4] then
  local cut = math.min(tonumber(s[4]), new_last - retain, trimmed + tonumber(ARGV[10]))
  if cut > trimmed then trim_to(meta, events, cmds, keyseq, cut) end
end
-- 7. wake the nodes up: the stream is the truth, this only says where it is.
if n > 0 then
  redis.call('PUBLISH', ARGV[11], cmsgpack.pack({ARGV[12], new_last, epoch}))
end
return {'ok', new_last, epoch}
"""
)

READ: Final = Script("""
-- KEYS: meta, events; ARGV: after seq, limit
-- {last, trimmed} when history cannot continue from after (H3), else
-- {last, trimmed, events}.
local s = redis.call('HMGET', KEYS[1], 'last', 'trimmed')
local last, trimmed = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local after = tonumber(ARGV[1])
if after < trimmed or after > last then return {last, trimmed} end
local out = {}
if after < last then
  local entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', after + 1), '+',
                             'COUNT', ARGV[2])
  for i = 1, #entries do out[i] = entries[i][2][2] end
end
return {last, trimmed, out}
""")

SNAPSHOT: Final = Script(
    _COMMON
    + """
-- KEYS: meta, events, cmds, keyseq; ARGV: seq, state (MessagePack), a new epoch
local s = redis.call('HMGET', KEYS[1], 'last', 'snap_seq')
local last = tonumber(s[1])
if not last then
  open_room(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[3])
  last = 0
end
local seq = tonumber(ARGV[1])
if seq > last then return {'ahead', last} end
if s[2] and tonumber(s[2]) > seq then return {'older', last} end
redis.call('HSET', KEYS[1], 'snap_seq', seq, 'snap', ARGV[2])
return {'saved', last}
"""
)

TRIM: Final = Script(
    _COMMON
    + """
-- KEYS: meta, events, cmds, keyseq; ARGV: before seq, chunk
-- {events dropped, 1 when done}: at most chunk events per call.
local s = redis.call('HMGET', KEYS[1], 'trimmed', 'snap_seq')
if not s[2] then return {0, 1} end
local trimmed = tonumber(s[1]) or 0
local cut = math.min(tonumber(ARGV[1]) - 1, tonumber(s[2]))
if cut <= trimmed then return {0, 1} end
local step = math.min(cut, trimmed + tonumber(ARGV[2]))
trim_to(KEYS[1], KEYS[2], KEYS[3], KEYS[4], step)
if step == cut then return {step - trimmed, 1} end
return {step - trimmed, 0}
"""
)
