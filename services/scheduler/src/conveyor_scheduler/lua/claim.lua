-- claim.lua: lease up to N ready tasks, highest priority first, FIFO among equals.
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5] max tasks   ARGV[6] lease ms (0 = until the attempt's deadline)
-- ARGV[7] token base (random per call)   ARGV[8] worker id   ARGV[9] default timeout ms
-- Entries whose task is no longer QUEUED (cancelled, expired, gone) are dropped;
-- a task past its expires_at ends EXPIRED instead of running.
-- Returns one flat HGETALL field/value array per leased task, with 'id' appended.
local want = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local base, worker, default_timeout = ARGV[7], ARGV[8], tonumber(ARGV[9])
local out = {}
for prio = 9, 0, -1 do
  local key_list = KEYS[prio + 1]
  while #out < want do
    local ids = redis.call('LPOP', key_list, want - #out)
    if not ids then
      break
    end
    for _, id in ipairs(ids) do
      local key = task_key(id)
      local f = redis.call('HMGET', key, 'st', 'x', 'to', 'at')
      if tonumber(f[1]) == QUEUED then
        local expires = tonumber(f[2])
        if expires and NOW >= expires then
          finish(id, key, EXPIRED)
        else
          local attempt = (tonumber(f[4]) or 0) + 1
          local deadline = NOW + (tonumber(f[3]) or default_timeout)
          local expiry = deadline
          if lease > 0 and NOW + lease < deadline then
            expiry = NOW + lease
          end
          redis.call('HSET', key, 'st', ACTIVE, 'at', attempt, 'lt', base .. '.' .. attempt,
            'sa', NOW, 'dl', deadline, 'le', expiry, 'w', worker)
          redis.call('ZADD', KEYS[12], expiry, id)
          local rec = redis.call('HGETALL', key)
          rec[#rec + 1] = 'id'
          rec[#rec + 1] = id
          out[#out + 1] = rec
        end
      end
    end
  end
  if #out >= want then
    break
  end
end
return out
