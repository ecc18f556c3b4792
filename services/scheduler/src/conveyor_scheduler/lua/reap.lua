-- reap.lua: return leases that lapsed. A lease past the attempt's deadline is a failed
-- attempt (TimeLimitExceeded, retried per policy); one that lapsed before it means the
-- worker is gone, and the task goes back to the front of its priority list.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] max leases per call   ARGV[6] jitter [0,1)
-- Then it trims the task index of up to 1,000 tasks whose records lapsed (lib.lua).
-- Returns {leases handled, earliest remaining lease expiry ms or -1, 1 when more
-- index trimming is due else 0}.
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
