-- watch.lua: mark a task as watched (its state changes are published) and read it.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] task id
-- Returns the task's HGETALL, or an empty array for an unknown task.
local key = task_key(ARGV[5])
if redis.call('EXISTS', key) == 0 then
  return {}
end
redis.call('HSET', key, 'wt', 1)
return redis.call('HGETALL', key)
