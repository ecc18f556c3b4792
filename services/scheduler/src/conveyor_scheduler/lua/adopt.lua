-- adopt.lua: a new stream takes over leases its worker still runs (WorkerHello.held),
-- after a reconnect or a failover. From here on the lease is this stream's alone (field o):
-- the earlier stream's close or heartbeats no longer touch it, on any replica.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] owner (the new stream)   ARGV[6] worker id
-- ARGV[7] lease ms: the expiry becomes now + lease (never shorter, never past the deadline)
-- ARGV[8..]: pairs of id, lease token.
-- Returns per lease 1 when adopted, 0 when it is not current (handed back, finished,
-- leased anew or unknown).
local owner, worker, lease = ARGV[5], ARGV[6], tonumber(ARGV[7])
local out = {}
for i = 8, #ARGV, 2 do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'lt', 'dl', 'le')
  if tonumber(f[1]) == ACTIVE and f[2] == ARGV[i + 1] then
    local current = tonumber(f[4]) or 0
    local expiry = math.max(current, math.min(NOW + lease, tonumber(f[3])))
    redis.call('HSET', key, 'o', owner, 'w', worker, 'le', expiry)
    redis.call('ZADD', KEYS[12], 'XX', expiry, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
