-- queue_stats.lua: a queue's depth as ListQueues reports it, read atomically.
-- KEYS, ARGV[1..4]: see lib.lua.
-- Returns {{ready list length per priority 0..9}, {tombstones per priority 0..9},
-- {parked tasks per priority 0..9}, scheduled, active, dead, 1 when paused else 0,
-- ms the longest-waiting QUEUED task became ready (-1: none found), {parked names}}.
-- The oldest is looked for among the first 16 entries of each ready list and parked
-- zset (tombstones at a list's front are skipped; a list of only tombstones says none).
local lengths, tombs, parked = {}, {}, {}
local oldest = -1

local function consider(ids)
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', task_key(id), 'st', 'eta')
    if tonumber(f[1]) == QUEUED then
      local since = math.max(id_ms(id), tonumber(f[2]) or 0)
      if oldest < 0 or since < oldest then
        oldest = since
      end
      return
    end
  end
end

local t = redis.call('HMGET', PREFIX .. 'tb', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
for prio = 0, 9 do
  lengths[prio + 1] = redis.call('LLEN', KEYS[prio + 1])
  tombs[prio + 1] = math.max(0, tonumber(t[prio + 1]) or 0)
  parked[prio + 1] = 0
  if lengths[prio + 1] > 0 then
    consider(redis.call('LRANGE', KEYS[prio + 1], 0, 15))
  end
end
local names = redis.call('SMEMBERS', KEYS[14])
for _, name in ipairs(names) do
  local pkey = parked_key(name)
  for prio = 0, 9 do
    parked[prio + 1] = parked[prio + 1] + redis.call('ZCOUNT', pkey, 9 - prio, 9 - prio)
  end
  consider(redis.call('ZRANGE', pkey, 0, 15))
end
return {lengths, tombs, parked, redis.call('ZCARD', KEYS[11]), redis.call('ZCARD', KEYS[12]),
  redis.call('ZCARD', KEYS[13]), redis.call('EXISTS', PREFIX .. 'pz'), oldest, names}
