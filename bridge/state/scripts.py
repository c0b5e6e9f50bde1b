"""Lua scripts: each update is one atomic script, so a crash or a duplicate never half-applies.

Redis runs a script as one step (nothing interleaves), replicates it as a whole, and the AOF
records it as a whole; redis-py's ``register_script`` re-loads it after a restart (NOSCRIPT).
"""

from __future__ import annotations

# KEYS: 1 meta, 2 event marker, 3 changes stream, 4 lease,
#       5 legs, 6 mutes, 7 bans, 8 roles, 9 bindings
# ARGV: 1 event-marker TTL ms, 2 fencing token ('' = unfenced), 3 JSON list of ops,
#       4 change-log length, 5 event id, 6 deadline in ms since the epoch ('' = none)
# op: {t = table, k = field, s = token, r = record JSON}; no r = delete
# Returns {status, version, n}: status 1 applied (n fields changed, 0 = nothing to change),
# 0 duplicate event id (version when first applied), -1 fenced (n = current token or ''),
# -2 expired: the client gave up long ago (Redis was paused with the command in its buffer)
# and has told its user the change was refused, so it must not happen behind their back.
APPLY = """
if ARGV[6] ~= '' then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[6]) then
    return {-2, 0, ''}
  end
end
local fence = ARGV[2]
if fence ~= '' then
  local cur = redis.call('GET', KEYS[4])
  if not cur then return {-1, 0, ''} end
  local token = tostring(cjson.decode(cur).token)
  if token ~= fence then return {-1, 0, token} end
end
local seen = redis.call('GET', KEYS[2])
if seen then return {0, tonumber(seen), '0'} end
local slot = {meta = 1, legs = 5, mutes = 6, bans = 7, roles = 8, bindings = 9}
local ops = cjson.decode(ARGV[3])
local changed = 0
for _, op in ipairs(ops) do
  local key = KEYS[slot[op.t]]
  local cur = redis.call('HGET', key, op.k)
  if op.r then
    if (not cur) or cjson.decode(cur).s ~= op.s then
      redis.call('HSET', key, op.k, op.r)
      changed = changed + 1
    end
  elseif cur then
    redis.call('HDEL', key, op.k)
    changed = changed + 1
  end
end
local version
if changed > 0 then
  version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',
             'version', version, 'event', ARGV[5], 'ops', ARGV[3])
else
  version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
end
redis.call('SET', KEYS[2], version, 'PX', ARGV[1])
return {1, version, tostring(changed)}
"""

# Lease value: JSON {token, node, contact}. KEYS: 1 lease, 2 fence counter.
# ARGV: 1 node id, 2 contact, 3 TTL ms.
# Returns {owned (1/0), token, node, contact, pttl}.
ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local lease = cjson.decode(cur)
  if lease.node ~= ARGV[1] then
    return {0, lease.token, lease.node, lease.contact, redis.call('PTTL', KEYS[1])}
  end
  lease.contact = ARGV[2]
  redis.call('SET', KEYS[1], cjson.encode(lease), 'PX', ARGV[3])
  return {1, lease.token, lease.node, lease.contact, tonumber(ARGV[3])}
end
local token = redis.call('INCR', KEYS[2])
local value = cjson.encode({token = token, node = ARGV[1], contact = ARGV[2]})
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[3])
return {1, token, ARGV[1], ARGV[2], tonumber(ARGV[3])}
"""

# KEYS: 1 lease. ARGV: 1 node id, 2 token, 3 TTL ms (renew) or '' (release).
# Returns 1 when the caller still held the lease (renewed / released), else 0.
RENEW_OR_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local lease = cjson.decode(cur)
if lease.node ~= ARGV[1] or tostring(lease.token) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

__all__ = ["ACQUIRE", "APPLY", "RENEW_OR_RELEASE"]
