-- cancel.lua: cancel a task. A queued task's list entry stays as a tombstone that
-- claim.lua drops (a parked one leaves its parked zset); a scheduled one leaves the
-- scheduled set; a running one gets a cancel request (cx) kept here in Redis, and its
-- worker is told through PREFIX:cancel.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] task id
-- Returns {state after the call (CANCELLED; ACTIVE for a running task, which stops
-- through its worker; the state of a finished task; 0 for an unknown task), worker id}.
local id = ARGV[5]
local key = task_key(id)
local f = redis.call('HMGET', key, 'st', 'w', 'pk', 'n')
local state = tonumber(f[1])
if not state then
  return {0, ''}
end
if state == SCHEDULED or state == QUEUED then
  redis.call('ZREM', KEYS[11], id)
  if f[3] == '1' then
    unpark(id, f[4])
    redis.call('HDEL', key, 'pk')
  end
  finish(id, key, CANCELLED)
  return {CANCELLED, ''}
end
if state == ACTIVE then
  redis.call('HSET', key, 'cx', 1)
  redis.call('PUBLISH', CANCEL_CHANNEL, id .. '|' .. (f[2] or ''))
end
return {state, f[2] or ''}
