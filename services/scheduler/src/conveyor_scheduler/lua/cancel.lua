-- cancel.lua: cancel a task that has not started. A queued task's list entry stays as a
-- tombstone that claim.lua drops; a scheduled one leaves the scheduled set.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] task id
-- Returns the state after the call (CANCELLED), the unchanged state of an active or
-- finished task, or 0 for an unknown task.
local id = ARGV[5]
local key = task_key(id)
local state = tonumber(redis.call('HGET', key, 'st'))
if not state then
  return 0
end
if state == SCHEDULED or state == QUEUED then
  redis.call('ZREM', KEYS[11], id)
  finish(id, key, CANCELLED)
  return CANCELLED
end
return state
