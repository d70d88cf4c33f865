"""The Lua scripts behind ``RedisStore``: every change to the store is one of these, atomic on the server.

Each names its KEYS and ARGV and what it returns. Values read from Redis inside a script are
checked for type first (a key of another type, planted or left over, never makes a script fail
halfway), and the version counter is bumped with ``pcall`` for the same reason.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "CLEAR_MARKER", "DELETE", "EXTEND", "PUT", "READ", "RELEASE"]

# KEYS: lock, login, id, version   ARGV: owner, ttl_ms, size cap, "1" to hand off, the version last seen
# -> {1} acquired, or {0, pttl, login marker, version, entry, tried}: all a waiter needs, in one round
# trip. A waiter that may be handed a token does not take a free lock when the version moved since
# it last looked: it first judges the entry (a herd must not queue, one by one, for a lock none of
# them needs any more).
ACQUIRE = """
local function text(key)
  if redis.call('TYPE', key).ok ~= 'string' or redis.call('STRLEN', key) > 4096 then return false end
  return redis.call('GET', key)
end
local version = text(KEYS[4])
local handoff = ARGV[4] == '1'
local tried = 0
if not handoff or (version or '') == ARGV[5] then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
  tried = 1
end
local entry = false
if handoff and redis.call('TYPE', KEYS[3]).ok == 'hash'
   and redis.call('HSTRLEN', KEYS[3], 'data') <= tonumber(ARGV[3]) then
  entry = redis.call('HGET', KEYS[3], 'data')
end
return {0, redis.call('PTTL', KEYS[1]), text(KEYS[2]), version, entry, tried}
"""
# KEYS: lock, login   ARGV: owner, ttl_ms, login marker ("" for none), login ttl_ms -> 1 extended, 0 lost
EXTEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 1
"""
# KEYS: lock   ARGV: owner, channel -> 1 released, 0 it was no longer ours
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'unlock')
return 1
"""
# KEYS: login   ARGV: marker -> 1 removed
CLEAR_MARKER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
BUMP = """
local function bump(key)
  local ok = redis.pcall('INCR', key)
  if type(ok) == 'table' and ok.err then redis.call('SET', key, '1') end
end
local function stored_rt(key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return '' end
  if kind ~= 'hash' then return '\\0wrongtype' end
  return redis.call('HGET', key, 'rt') or ''
end
"""
# KEYS: id, version, index, server   ARGV: expected rt, new rt, data, channel, member, server doc ("": keep)
# -> 1 stored, 0 the stored refresh token is no longer the expected one
PUT = (
    BUMP
    + """
local current = stored_rt(KEYS[1])
if current ~= ARGV[1] then
  if not (current == ARGV[2] and redis.call('HGET', KEYS[1], 'data') == ARGV[3]) then return 0 end
end
if current == '\\0wrongtype' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'rt', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[5])
if ARGV[6] ~= '' then redis.call('SET', KEYS[4], ARGV[6]) end
bump(KEYS[2])
redis.call('PUBLISH', ARGV[4], 'put')
return 1
"""
)
# KEYS: id, version, index   ARGV: expected rt, channel, member -> 1 deleted
DELETE = (
    BUMP
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) return 0 end
if stored_rt(KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[3])
bump(KEYS[2])
redis.call('PUBLISH', ARGV[2], 'delete')
return 1
"""
)
# KEYS: key   ARGV: hash field ("" for a string key), size cap -> {value, rt} / {false} / {'toobig'}
READ = (
    BUMP
    + """
local kind = redis.call('TYPE', KEYS[1]).ok
if ARGV[1] == '' then
  if kind ~= 'string' then return {false} end
  if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[2]) then return {'toobig'} end
  return {redis.call('GET', KEYS[1])}
end
if kind == 'none' then return {false, ''} end
if kind ~= 'hash' then return {false, stored_rt(KEYS[1])} end
if redis.call('HSTRLEN', KEYS[1], ARGV[1]) > tonumber(ARGV[2]) then return {'toobig', stored_rt(KEYS[1])} end
return {redis.call('HGET', KEYS[1], ARGV[1]) or false, stored_rt(KEYS[1])}
"""
)
