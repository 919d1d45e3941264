"""The Lua scripts behind every Redis round trip of the checkpoint savers.

Each public operation of ``RedisSaver`` / ``AsyncRedisSaver`` that touches one
thread is one ``EVALSHA`` of a script below: one network round trip, executed
atomically by Redis, so a crash (of the client or the server) never leaves a
half-written checkpoint. Every key a script touches belongs to one thread and
carries that thread's hash tag, so on a Redis Cluster a script runs on the one
node owning the thread's slot. The key layout is documented at the top of
``checkpoints/core.py``.

Only plain Redis >= 6 commands and the ``cmsgpack`` library that Redis (and
Valkey) bundle for Lua are used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "ALL_SCRIPTS",
    "COPY_IN",
    "DELETE",
    "DELETE_THREAD",
    "DUMP",
    "FETCH",
    "NAMESPACES",
    "PUT",
    "PUT_WRITES",
    "SKELETON",
    "Script",
]


@dataclass(frozen=True)
class Script:
    """A Lua script with its SHA1, for ``EVALSHA`` with a ``SCRIPT LOAD`` fallback."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# Shared Lua helpers, prepended to the scripts that need them. `base` is the
# thread's key prefix, "<prefix>:{<tag>}:"; per-namespace keys append a kind and
# the namespace, e.g. base .. "idx:" .. ns.
_KINDS = """
local KINDS = {'idx:', 'cp:', 'blob:', 'widx:', 'w:'}
"""

_REFRESH = """
local function refresh(nss, base, ms)
  redis.call('PEXPIRE', nss, ms)
  for _, ns in ipairs(redis.call('SMEMBERS', nss)) do
    for _, kind in ipairs(KINDS) do
      redis.call('PEXPIRE', base .. kind .. ns, ms)
    end
  end
end
"""

# Write fields of checkpoint `cid` are "<cid>\\0<task_id>\\0<idx>", so one lex
# range of the write index finds them all.
_WRITE_RANGE = """
local function wrange(cid)
  return '[' .. cid .. '\\0', '(' .. cid .. '\\1'
end
"""

# Deletes checkpoints `cids` of namespace `ns` with their writes, then drops
# the blobs no remaining checkpoint of the namespace references (blobs are
# shared between checkpoints, so only an unreferenced one may go).
_DROP = """
local function drop(nss, base, ns, cids)
  local idx, cp, blob = base .. 'idx:' .. ns, base .. 'cp:' .. ns, base .. 'blob:' .. ns
  local widx, w = base .. 'widx:' .. ns, base .. 'w:' .. ns
  for _, cid in ipairs(cids) do
    redis.call('ZREM', idx, cid)
    redis.call('HDEL', cp, cid, cid .. ':m', cid .. ':p', cid .. ':b', cid .. ':r')
    local lo, hi = wrange(cid)
    local wf = redis.call('ZRANGEBYLEX', widx, lo, hi)
    for i = 1, #wf, 500 do
      redis.call('HDEL', w, unpack(wf, i, math.min(i + 499, #wf)))
    end
    redis.call('ZREMRANGEBYLEX', widx, lo, hi)
  end
  local left = redis.call('ZRANGE', idx, 0, -1)
  if #left == 0 then
    redis.call('UNLINK', idx, cp, blob, widx, w)  -- freed off the main thread: never blocks Redis
    redis.call('SREM', nss, ns)
    return
  end
  local keep = {}
  for _, cid in ipairs(left) do
    local b = redis.call('HGET', cp, cid .. ':b')
    if b then
      for _, f in ipairs(cmsgpack.unpack(b)) do keep[f] = true end
    end
  end
  local gone = {}
  for _, f in ipairs(redis.call('HKEYS', blob)) do
    if not keep[f] then gone[#gone + 1] = f end
  end
  for i = 1, #gone, 500 do
    redis.call('HDEL', blob, unpack(gone, i, math.min(i + 499, #gone)))
  end
end
"""

PUT = Script(
    "put",
    _KINDS
    + _REFRESH
    + """
-- KEYS: nss, idx, cp, blob
-- ARGV: ns, cid, checkpoint, metadata, parent, blob-fields, run_id, ttl_ms, base,
--       then blob field/value pairs
local cid = ARGV[2]
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, cid)
redis.call('HSET', KEYS[3], cid, ARGV[3], cid .. ':m', ARGV[4], cid .. ':p', ARGV[5],
           cid .. ':b', ARGV[6], cid .. ':r', ARGV[7])
if #ARGV > 9 then
  redis.call('HSET', KEYS[4], unpack(ARGV, 10))
end
if ARGV[8] ~= '' then refresh(KEYS[1], ARGV[9], tonumber(ARGV[8])) end
return 1
""",
)

PUT_WRITES = Script(
    "put_writes",
    _KINDS
    + _REFRESH
    + """
-- KEYS: nss, widx, w
-- ARGV: ns, ttl_ms, base, then (field, value, mode) triples; mode 'n' keeps an
--       existing write (regular writes are idempotent), 's' replaces it
--       (special writes such as ERROR or INTERRUPT carry the latest value).
redis.call('SADD', KEYS[1], ARGV[1])
for i = 4, #ARGV, 3 do
  local f = ARGV[i]
  if ARGV[i + 2] == 'n' then
    if redis.call('HSETNX', KEYS[3], f, ARGV[i + 1]) == 1 then
      redis.call('ZADD', KEYS[2], 0, f)
    end
  else
    redis.call('HSET', KEYS[3], f, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], 0, f)
  end
end
if ARGV[2] ~= '' then refresh(KEYS[1], ARGV[3], tonumber(ARGV[2])) end
return 1
""",
)

FETCH = Script(
    "fetch",
    _WRITE_RANGE
    + """
-- KEYS: idx, cp, blob, widx, w
-- ARGV[1] = 'latest'                      newest checkpoint
--         | 'ids', cid...                 these checkpoints (missing ones left out)
--         | 'range', before, count, meta  newest first, ids < before ('' = no bound),
--                                         at most count (0 = all); meta = '1' returns
--                                         {cid, metadata} only
-- Returns a list of records {cid, checkpoint, metadata, parent, blob-fields,
-- {blob values}, {write values}}.
local function load(cid)
  local r = redis.call('HMGET', KEYS[2], cid, cid .. ':m', cid .. ':p', cid .. ':b')
  if not r[1] then return false end
  local blobs = {}
  if r[4] and #r[4] > 1 then
    local f = cmsgpack.unpack(r[4])
    if #f > 0 then blobs = redis.call('HMGET', KEYS[3], unpack(f)) end
  end
  local lo, hi = wrange(cid)
  local wf = redis.call('ZRANGEBYLEX', KEYS[4], lo, hi)
  local wv = {}
  if #wf > 0 then wv = redis.call('HMGET', KEYS[5], unpack(wf)) end
  return {cid, r[1], r[2], r[3], r[4], blobs, wv}
end

local mode = ARGV[1]
local out = {}
if mode == 'latest' then
  local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], '+', '-', 'LIMIT', 0, 1)
  if ids[1] then
    local rec = load(ids[1])
    if rec then out[1] = rec end
  end
elseif mode == 'ids' then
  for i = 2, #ARGV do
    local rec = load(ARGV[i])
    if rec then out[#out + 1] = rec end
  end
else
  local hi = '+'
  if ARGV[2] ~= '' then hi = '(' .. ARGV[2] end
  local ids
  local count = tonumber(ARGV[3])
  if count > 0 then
    ids = redis.call('ZREVRANGEBYLEX', KEYS[1], hi, '-', 'LIMIT', 0, count)
  else
    ids = redis.call('ZREVRANGEBYLEX', KEYS[1], hi, '-')
  end
  if ARGV[4] == '1' then
    for _, cid in ipairs(ids) do
      out[#out + 1] = {cid, redis.call('HGET', KEYS[2], cid .. ':m')}
    end
  else
    for _, cid in ipairs(ids) do
      local rec = load(cid)
      if rec then out[#out + 1] = rec end
    end
  end
end
return out
""",
)

DELETE_THREAD = Script(
    "delete_thread",
    _KINDS
    + """
-- KEYS: nss   ARGV: base
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  for _, kind in ipairs(KINDS) do
    redis.call('UNLINK', ARGV[1] .. kind .. ns)  -- a big thread is freed off Redis's main thread
  end
end
redis.call('UNLINK', KEYS[1])
return 1
""",
)

DELETE = Script(
    "delete",
    _WRITE_RANGE
    + _DROP
    + """
-- KEYS: nss
-- ARGV: base, 'runs', run_id...              delete checkpoints whose run is listed
--     | base, 'ids', (ns, n, cid * n)...     delete these checkpoints
-- Returns the number of checkpoints deleted.
local base, mode = ARGV[1], ARGV[2]
local deleted = 0
if mode == 'runs' then
  local runs = {}
  for i = 3, #ARGV do runs[ARGV[i]] = true end
  for _, ns in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local cp = base .. 'cp:' .. ns
    local doomed = {}
    for _, cid in ipairs(redis.call('ZRANGE', base .. 'idx:' .. ns, 0, -1)) do
      local run = redis.call('HGET', cp, cid .. ':r')
      if run and runs[run] then doomed[#doomed + 1] = cid end
    end
    if #doomed > 0 then
      drop(KEYS[1], base, ns, doomed)
      deleted = deleted + #doomed
    end
  end
else
  local i = 3
  while i <= #ARGV do
    local ns, n = ARGV[i], tonumber(ARGV[i + 1])
    local cids = {}
    for j = 1, n do cids[j] = ARGV[i + 1 + j] end
    if n > 0 then drop(KEYS[1], base, ns, cids) end
    deleted = deleted + n
    i = i + 2 + n
  end
end
return deleted
""",
)

SKELETON = Script(
    "skeleton",
    """
-- KEYS: nss   ARGV: base
-- For each namespace: {ns, {cid...} oldest first, {parent...}, {blob-fields...},
-- metadata of the newest checkpoint, {stored blob field...}}.
local base = ARGV[1]
local out = {}
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local cp = base .. 'cp:' .. ns
  local ids = redis.call('ZRANGE', base .. 'idx:' .. ns, 0, -1)
  local parents, fields = {}, {}
  for i, cid in ipairs(ids) do
    local r = redis.call('HMGET', cp, cid .. ':p', cid .. ':b')
    parents[i] = r[1]
    fields[i] = r[2]
  end
  local meta = false
  if #ids > 0 then meta = redis.call('HGET', cp, ids[#ids] .. ':m') end
  out[#out + 1] = {ns, ids, parents, fields, meta, redis.call('HKEYS', base .. 'blob:' .. ns)}
end
return out
""",
)

DUMP = Script(
    "dump",
    """
-- KEYS: nss   ARGV: base
-- For each namespace: {ns, {idx members}, {cp hash k, v...}, {blob k, v...},
-- {widx members}, {w k, v...}}.
local base = ARGV[1]
local out = {}
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = {
    ns,
    redis.call('ZRANGE', base .. 'idx:' .. ns, 0, -1),
    redis.call('HGETALL', base .. 'cp:' .. ns),
    redis.call('HGETALL', base .. 'blob:' .. ns),
    redis.call('ZRANGE', base .. 'widx:' .. ns, 0, -1),
    redis.call('HGETALL', base .. 'w:' .. ns),
  }
end
return out
""",
)

COPY_IN = Script(
    "copy_in",
    _KINDS
    + _REFRESH
    + """
-- KEYS: nss (target thread)   ARGV: base, ttl_ms, then per namespace:
--   ns, n_idx, idx members..., n_cp, cp k/v..., n_blob, blob k/v...,
--   n_widx, widx members..., n_w, w k/v...
-- Merges the data into the target thread (what a DUMP of the source returned).
local base = ARGV[1]
local i = 3
while i <= #ARGV do
  local ns = ARGV[i]
  i = i + 1
  redis.call('SADD', KEYS[1], ns)
  local n = tonumber(ARGV[i]); i = i + 1
  for j = i, i + n - 1 do redis.call('ZADD', base .. 'idx:' .. ns, 0, ARGV[j]) end
  i = i + n
  for _, kind in ipairs({'cp:', 'blob:'}) do
    n = tonumber(ARGV[i]); i = i + 1
    for j = i, i + n - 1, 2 do redis.call('HSET', base .. kind .. ns, ARGV[j], ARGV[j + 1]) end
    i = i + n
  end
  n = tonumber(ARGV[i]); i = i + 1
  for j = i, i + n - 1 do redis.call('ZADD', base .. 'widx:' .. ns, 0, ARGV[j]) end
  i = i + n
  n = tonumber(ARGV[i]); i = i + 1
  for j = i, i + n - 1, 2 do redis.call('HSET', base .. 'w:' .. ns, ARGV[j], ARGV[j + 1]) end
  i = i + n
end
if ARGV[2] ~= '' then refresh(KEYS[1], base, tonumber(ARGV[2])) end
return 1
""",
)

NAMESPACES = Script(
    "namespaces",
    """
-- KEYS: nss   Returns the thread's namespaces.
return redis.call('SMEMBERS', KEYS[1])
""",
)

ALL_SCRIPTS = (NAMESPACES, PUT, PUT_WRITES, FETCH, DELETE_THREAD, DELETE, SKELETON, DUMP, COPY_IN)
