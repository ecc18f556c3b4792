-- retry.lua: run finished tasks again (RetryTasks). FAILED, DEAD, CANCELLED and EXPIRED
-- tasks become QUEUED at the back of their priority list with a fresh set of attempts,
-- as requeue_dead.lua does for dead letters: attempt restarts at 0, the outcome, error,
-- worker, times and expires_at are cleared, the record stops expiring, and the queue
-- wait counts from now (eta). A cancelled task whose tombstone is still in its list
-- takes that entry back instead (lib.lua: drop_tombstone).
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5..] task ids
-- Returns the number queued again (tasks in other states are skipped).
local again = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'p', 'tb')
  local state = tonumber(f[1])
  if state == FAILED or state == DEAD or state == CANCELLED or state == EXPIRED then
    if state == DEAD then
      redis.call('ZREM', KEYS[13], id)
    end
    redis.call('PERSIST', key)
    redis.call('HSET', key, 'st', QUEUED, 'at', 0, 'eta', NOW)
    redis.call('HDEL', key, 'fa', 'et', 'em', 'eb', 'w', 'sa', 'dl', 'le', 'cx', 'r', 'rc', 'x', 'rs')
    if f[3] == '1' then
      drop_tombstone(key, '1', tonumber(f[2]) or 0)
    else
      redis.call('RPUSH', ready_key(f[2]), id)
    end
    announce(id, key, QUEUED)
    again = again + 1
  end
end
return again
