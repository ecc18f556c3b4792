-- extend.lua: push lease expiries out, never past the attempt's deadline.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5..]: triples of id, lease token, extend-by ms.
-- Returns per lease the new expiry ms, or -1 for a stale lease, -2 for an unknown task.
local out = {}
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'lt', 'dl')
  if not f[1] then
    out[#out + 1] = -2
  elseif tonumber(f[1]) ~= ACTIVE or f[2] ~= ARGV[i + 1] then
    out[#out + 1] = -1
  else
    local expiry = math.min(NOW + tonumber(ARGV[i + 2]), tonumber(f[3]))
    redis.call('ZADD', KEYS[12], 'XX', expiry, id)
    redis.call('HSET', key, 'le', expiry)
    out[#out + 1] = expiry
  end
end
return out
