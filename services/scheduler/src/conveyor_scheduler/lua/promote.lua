-- promote.lua: move due tasks from the scheduled set to the back of their priority list.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] max tasks per call
-- A task past its expires_at ends EXPIRED instead.
-- Returns {tasks promoted, earliest remaining due ms or -1}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
local promoted = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[11], id)
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'p', 'x')
  if tonumber(f[1]) == SCHEDULED then
    local expires = tonumber(f[3])
    if expires and NOW >= expires then
      finish(id, key, EXPIRED)
    else
      redis.call('HSET', key, 'st', QUEUED)
      redis.call('RPUSH', ready_key(f[2]), id)
      announce(id, key, QUEUED)
      promoted = promoted + 1
    end
  end
end
local nxt = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
if nxt[2] then
  return {promoted, tonumber(nxt[2])}
end
return {promoted, -1}
