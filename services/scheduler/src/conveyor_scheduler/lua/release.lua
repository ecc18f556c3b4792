-- release.lua: hand leases back unfinished (a worker's stream broke, or it drained);
-- each task returns to the front of its priority list at once.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5..]: pairs of id, lease token.
-- Returns the number of leases released (stale ones are ignored).
local released = 0
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'lt')
  if tonumber(f[1]) == ACTIVE and f[2] == ARGV[i + 1] then
    requeue_front(id, key)
    released = released + 1
  end
end
return released
