-- reap.lua: return leases that lapsed. A lease past the attempt's deadline is a failed
-- attempt (TimeLimitExceeded, retried per policy); one that lapsed before it means the
-- worker is gone, and the task goes back to the front of its priority list.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] max leases per call   ARGV[6] jitter [0,1)
-- Then it trims the task index of about 1,000 tasks whose records lapsed (trim_finished).
-- Returns {leases handled, earliest remaining lease expiry ms or -1, 1 when more
-- index trimming is due else 0}.
-- The due items of PREFIX..'f', until about `budget` tasks were looked at: one PTTL per
-- task, one count update per index entry. The reaper calls this script until it says it is
-- done: off the hot path. Returns true when it stopped on its budget.
local function trim_finished(budget)
  local head = redis.call('LINDEX', PREFIX .. 'f', 0)
  if not head or tonumber(string.match(head, '^%d+') or 0) > NOW then
    return false
  end
  local popped, seen, gone, again = 0, 0, {}, {}  -- gone: index entry -> tasks of it gone
  for _, item in ipairs(redis.call('LRANGE', PREFIX .. 'f', 0, 9)) do
    local due, rest = string.match(item, '^(%d+)|(.*)$')
    if due and tonumber(due) > NOW or seen >= budget then
      break
    end
    popped = popped + 1
    for entry, id in string.gmatch(rest or '', '(%S+) (%S+)') do
      seen = seen + 1
      local ttl = redis.call('PTTL', PREFIX .. 't:' .. id)
      if ttl == -2 then
        gone[entry] = (gone[entry] or 0) + 1
      elseif ttl > 0 then  -- clocks differ, or it finished again: look again when it lapses
        again[#again + 1] = (NOW + ttl) .. '|' .. entry .. ' ' .. id
      end  -- ttl -1: it runs again (RetryTasks); a later finish lists it again
    end
  end
  redis.call('LTRIM', PREFIX .. 'f', popped, -1)
  for entry, n in pairs(gone) do
    forget_indexed(entry, n)
  end
  if #again > 0 then
    redis.call('RPUSH', PREFIX .. 'f', unpack(again))
  end
  return seen >= budget or popped == 10
end

local ids = redis.call('ZRANGEBYSCORE', KEYS[12], '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'dl', 'to', 'cx', 'sa')
  if tonumber(f[1]) ~= ACTIVE then
    redis.call('ZREM', KEYS[12], id)
  elseif f[4] == '1' then
    redis.call('ZREM', KEYS[12], id)
    finish(id, key, CANCELLED)
  elseif NOW >= tonumber(f[2]) then
    stat_ms(RUN_SLOT, NOW - (tonumber(f[5]) or NOW))
    fail_attempt(id, key, 'TimeLimitExceeded',
      'the attempt ran past its time limit of ' .. (tonumber(f[3]) / 1000) .. 's', '',
      true, -1, tonumber(ARGV[6]))
  else
    requeue_front(id, key)
  end
end
local more_trim = trim_finished(1000) and 1 or 0
local nxt = redis.call('ZRANGE', KEYS[12], 0, 0, 'WITHSCORES')
if nxt[2] then
  return {#ids, tonumber(nxt[2]), more_trim}
end
return {#ids, -1, more_trim}
