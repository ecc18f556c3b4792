-- release.lua: hand leases back unfinished (a worker's stream broke, or it drained);
-- each task returns to the front of its priority list at once.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] the owner releasing them: a lease is released
-- only while this stream owns it (field o; '' matches a lease with no owner), so a stream
-- that closes after another adopted its leases hands nothing back.
-- ARGV[6..]: pairs of id, lease token.
-- Returns the number of leases released (stale ones are ignored).
local owner = ARGV[5]
local released = 0
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'lt', 'o')
  if tonumber(f[1]) == ACTIVE and f[2] == ARGV[i + 1] and (f[3] or '') == owner then
    requeue_front(id, key)
    released = released + 1
  end
end
return released
