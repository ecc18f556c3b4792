-- extend.lua: push lease expiries out: to now + extend-by, never past the attempt's
-- deadline and never shorter than they are.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] owner: when not '', only leases this stream owns
-- (field o) are extended (a stream's heartbeat); '' extends any holder of the token
-- (ExtendLease).   ARGV[6..]: triples of id, lease token, extend-by ms.
-- Returns per lease the expiry ms, or -1 for a stale lease (or one another stream owns),
-- -2 for an unknown task.
local owner = ARGV[5]
local out = {}
for i = 6, #ARGV, 3 do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'lt', 'dl', 'le', 'o')
  if not f[1] then
    out[#out + 1] = -2
  elseif tonumber(f[1]) ~= ACTIVE or f[2] ~= ARGV[i + 1] or (owner ~= '' and f[5] ~= owner) then
    out[#out + 1] = -1
  else
    local current = tonumber(f[4]) or 0
    local expiry = math.max(current, math.min(NOW + tonumber(ARGV[i + 2]), tonumber(f[3])))
    if expiry ~= current then
      redis.call('ZADD', KEYS[12], 'XX', expiry, id)
      redis.call('HSET', key, 'le', expiry)
    end
    out[#out + 1] = expiry
  end
end
return out
