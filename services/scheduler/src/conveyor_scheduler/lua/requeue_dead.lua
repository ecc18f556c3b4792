-- requeue_dead.lua: send dead letters back to the back of their priority list with a
-- fresh set of attempts.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5..] task ids ('*' alone: up to 1,000 of all)
-- Returns the number requeued.
local ids = dead_selection()
local requeued = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[13], id) == 1 then
    local key = task_key(id)
    if tonumber(redis.call('HGET', key, 'st')) == DEAD then
      redis.call('HSET', key, 'st', QUEUED, 'at', 0)
      redis.call('HDEL', key, 'fa', 'et', 'em', 'eb', 'w', 'sa', 'dl', 'le', 'cx', 'r', 'rc')
      redis.call('RPUSH', ready_key(redis.call('HGET', key, 'p')), id)
      announce(id, key, QUEUED)
      requeued = requeued + 1
    end
  end
end
return requeued
