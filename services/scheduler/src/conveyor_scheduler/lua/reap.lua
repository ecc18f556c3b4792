-- reap.lua: return leases that lapsed. A lease past the attempt's deadline is a failed
-- attempt (TimeLimitExceeded, retried per policy); one that lapsed before it means the
-- worker is gone, and the task goes back to the front of its priority list.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5] max leases per call   ARGV[6] jitter [0,1)
-- Then it goes on with the current pass over the task index (trim_index), about 1,000 tasks.
-- Returns {leases handled, earliest remaining lease expiry ms or -1, 1 when the pass is
-- not over else 0}.

-- The task index is trimmed in passes, oldest entry first: an entry none of whose tasks'
-- records live is deleted (EXISTS over its ids, 100 at a time, up to the first that
-- lives). PREFIX..'xk' holds the pass, "start ms|last entry examined" while it goes on and
-- "start ms||end ms" once it is over; the reaper calls this script until the pass is over.
-- The next pass starts 10 s after the last one started, and no sooner than 19 times the
-- last pass's length after it ended, so trimming keeps Redis busy a twentieth of the time
-- at most however long the index is. Nothing on the hot path keeps the index: this costs
-- nothing per task submitted or finished, and a lapsed record is already invisible to
-- listings, which skip tasks whose record is gone.
-- Returns true when the pass stopped on its budget (about `budget` ids looked at).
local function trim_index(budget)
  local mark = redis.call('GET', PREFIX .. 'xk')
  local started, cursor = NOW, '-'
  if mark then
    local s, at, ended = string.match(mark, '^(%d+)|([^|]*)|?(%d*)$')
    if ended ~= '' then
      s, ended = tonumber(s), tonumber(ended)
      if NOW < math.max(s + 10000, ended + 19 * (ended - s)) then
        return false
      end
    elseif s then
      started, cursor = tonumber(s), '(' .. at
    end
  end
  local seen, last = 0, nil
  while seen < budget do
    -- One entry at a time: an entry holds a whole submit call's ids (up to 10,000).
    local batch = redis.call('XRANGE', PREFIX .. 'x', cursor, '+', 'COUNT', 1)
    local e = batch[1]
    if not e then
      redis.call('SET', PREFIX .. 'xk', started .. '||' .. NOW)
      return false
    end
    -- Its ids in chunks of 100, up to the first live record: a live entry costs one EXISTS.
    local live, keys = 0, {}
    for id in string.gmatch(e[2][2], '[^,]+') do
      keys[#keys + 1] = PREFIX .. 't:' .. id
      if #keys == 100 then
        seen = seen + 100
        live = redis.call('EXISTS', unpack(keys))
        if live > 0 then
          break
        end
        keys = {}
      end
    end
    if live == 0 and #keys > 0 then
      seen = seen + #keys
      live = redis.call('EXISTS', unpack(keys))
    end
    if live == 0 then
      redis.call('XDEL', PREFIX .. 'x', e[1])
    end
    last = e[1]
    cursor = '(' .. last
  end
  redis.call('SET', PREFIX .. 'xk', started .. '|' .. last)
  return true
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
local more_trim = trim_index(1000) and 1 or 0
local nxt = redis.call('ZRANGE', KEYS[12], 0, 0, 'WITHSCORES')
if nxt[2] then
  return {#ids, tonumber(nxt[2]), more_trim}
end
return {#ids, -1, more_trim}
