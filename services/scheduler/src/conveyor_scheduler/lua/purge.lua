-- purge.lua: cancel up to ARGV[5] QUEUED and SCHEDULED tasks of the queue (PurgeQueue
-- calls it until it reports none left). The ready lists are emptied from the front
-- (tombstones are dropped on the way), then the parked zsets, then the scheduled set.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] most tasks to handle in this call
-- Returns {tasks ended CANCELLED, 1 when the call used up its budget (more may remain) else 0}.
local budget = tonumber(ARGV[5])
local purged = 0

local function end_if(id, key, state)
  if tonumber(redis.call('HGET', key, 'st')) == state then
    finish(id, key, CANCELLED)
    purged = purged + 1
  end
end

for prio = 9, 0, -1 do
  while budget > 0 do
    local ids = redis.call('LPOP', KEYS[prio + 1], math.min(budget, 100))
    if not ids then
      break
    end
    budget = budget - #ids
    for _, id in ipairs(ids) do
      local key = task_key(id)
      local f = redis.call('HMGET', key, 'st', 'tb')
      if tonumber(f[1]) == QUEUED then
        finish(id, key, CANCELLED)
        purged = purged + 1
      else
        drop_tombstone(key, f[2] or (not f[1] and '1'), prio)
      end
    end
  end
end
for _, name in ipairs(redis.call('SMEMBERS', KEYS[14])) do
  if budget <= 0 then
    break
  end
  local pkey = parked_key(name)
  local popped = redis.call('ZPOPMIN', pkey, budget)
  for j = 1, #popped, 2 do
    local id = popped[j]
    local key = task_key(id)
    budget = budget - 1
    redis.call('HDEL', key, 'pk')
    end_if(id, key, QUEUED)
  end
  if redis.call('EXISTS', pkey) == 0 then
    redis.call('SREM', KEYS[14], name)
  end
end
if budget > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[11], budget)
  for j = 1, #popped, 2 do
    budget = budget - 1
    end_if(popped[j], task_key(popped[j]), SCHEDULED)
  end
end
if budget <= 0 then
  return {purged, 1}
end
return {purged, 0}
