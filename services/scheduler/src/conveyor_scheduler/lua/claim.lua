-- claim.lua: lease up to N ready tasks, highest priority first, FIFO among equals.
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5] max tasks   ARGV[6] lease ms (0 = until the attempt's deadline)
-- ARGV[7] token base (random per call)   ARGV[8] worker id   ARGV[9] default timeout ms
-- ARGV[10] the queue's rate limit ("count/period-ms") or ''
-- Entries whose task is no longer QUEUED (cancelled, expired, gone) are dropped; a task
-- past its expires_at ends EXPIRED; a task with a cancel request ends CANCELLED. A
-- rate-limited task without a free slot reserves the next one and waits for it in the
-- scheduled set (it does not take a slot again when it comes back).
-- Returns {earliest reserved start ms or -1, {one flat HGETALL array per leased task,
-- with 'id' appended}}; the caller makes sure the promoter wakes for the reservations.
local want = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local base, worker, default_timeout, queue_rate = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10]
local out = {}
local soonest = -1
for prio = 9, 0, -1 do
  local key_list = KEYS[prio + 1]
  while #out < want do
    local ids = redis.call('LPOP', key_list, want - #out)
    if not ids then
      break
    end
    for _, id in ipairs(ids) do
      local key = task_key(id)
      local f = redis.call('HMGET', key, 'st', 'x', 'to', 'at', 'cx', 'rl', 'rs', 'n', 'eta')
      if tonumber(f[1]) == QUEUED then
        local expires = tonumber(f[2])
        local start = NOW
        if expires and NOW >= expires then
          start = -1
          finish(id, key, EXPIRED)
        elseif f[5] == '1' then
          start = -1
          finish(id, key, CANCELLED)
        elseif f[7] ~= '1' then
          if f[6] then
            start = rate_slot(PREFIX .. 'rl:' .. f[8], f[6])
          end
          if queue_rate ~= '' then
            start = math.max(start, rate_slot(PREFIX .. 'rlq', queue_rate))
          end
        end
        if start > NOW then
          local due = math.ceil(start)
          redis.call('HSET', key, 'st', SCHEDULED, 'eta', due, 'rs', 1)
          redis.call('ZADD', KEYS[11], due, id)
          announce(id, key, SCHEDULED)
          if soonest < 0 or due < soonest then
            soonest = due
          end
        elseif start == NOW then
          -- This script may run a little after NOW was read; a promoted task cannot have
          -- started before its eta, so record the tighter of the two.
          local started = math.max(NOW, tonumber(f[9]) or 0)
          local attempt = (tonumber(f[4]) or 0) + 1
          local deadline = started + (tonumber(f[3]) or default_timeout)
          local expiry = deadline
          if lease > 0 and started + lease < deadline then
            expiry = started + lease
          end
          redis.call('HSET', key, 'st', ACTIVE, 'at', attempt, 'lt', base .. '.' .. attempt,
            'sa', started, 'dl', deadline, 'le', expiry, 'w', worker)
          redis.call('HDEL', key, 'rs')
          redis.call('ZADD', KEYS[12], expiry, id)
          announce(id, key, ACTIVE)
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
return {soonest, out}
