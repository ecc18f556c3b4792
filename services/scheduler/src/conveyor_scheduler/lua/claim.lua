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
-- read before the lease was recorded, with the lease's fields (st at lt sa dl le w) and
-- 'id' appended: later pairs override earlier ones}}; the caller makes sure the
-- promoter wakes for the reservations.
local want = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local base, worker, default_timeout, queue_rate = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10]
local out = {}
local active = {}  -- score, member pairs for one ZADD per call
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
      local rec = redis.call('HGETALL', key)
      local f = {}
      for j = 1, #rec, 2 do
        f[rec[j]] = rec[j + 1]
      end
      if tonumber(f.st) == QUEUED then
        local expires = tonumber(f.x)
        local watched = f.wt == '1'
        local start = NOW
        if expires and NOW >= expires then
          start = -1
          finish(id, key, EXPIRED, watched)
        elseif f.cx == '1' then
          start = -1
          finish(id, key, CANCELLED, watched)
        elseif f.rs ~= '1' then
          if f.rl then
            start = rate_slot(PREFIX .. 'rl:' .. f.n, f.rl)
          end
          if queue_rate ~= '' then
            start = math.max(start, rate_slot(PREFIX .. 'rlq', queue_rate))
          end
        end
        if start > NOW then
          local due = math.ceil(start)
          redis.call('HSET', key, 'st', SCHEDULED, 'eta', due, 'rs', 1)
          redis.call('ZADD', KEYS[11], due, id)
          announce(id, key, SCHEDULED, watched)
          if soonest < 0 or due < soonest then
            soonest = due
          end
        elseif start == NOW then
          -- This script may run a little after NOW was read; a promoted task cannot have
          -- started before its eta, so record the tighter of the two.
          local started = math.max(NOW, tonumber(f.eta) or 0)
          local attempt = (tonumber(f.at) or 0) + 1
          local deadline = started + (tonumber(f.to) or default_timeout)
          local expiry = lease_expiry(started, deadline, lease)
          local token = base .. '.' .. attempt
          redis.call('HSET', key, 'st', ACTIVE, 'at', attempt, 'lt', token, 'sa', started, 'dl', deadline,
            'le', expiry, 'w', worker)
          if f.rs then
            redis.call('HDEL', key, 'rs')
          end
          active[#active + 1] = expiry
          active[#active + 1] = id
          announce(id, key, ACTIVE, watched)
          local n = #rec
          rec[n + 1], rec[n + 2], rec[n + 3], rec[n + 4] = 'st', tostring(ACTIVE), 'at', tostring(attempt)
          rec[n + 5], rec[n + 6], rec[n + 7], rec[n + 8] = 'lt', token, 'sa', string.format('%d', started)
          rec[n + 9], rec[n + 10], rec[n + 11], rec[n + 12] = 'dl', string.format('%d', deadline),
            'le', string.format('%d', expiry)
          rec[n + 13], rec[n + 14], rec[n + 15], rec[n + 16] = 'w', worker, 'id', id
          out[#out + 1] = rec
        end
      end
    end
  end
  if #out >= want then
    break
  end
end
for j = 1, #active, 1000 do
  redis.call('ZADD', KEYS[12], unpack(active, j, math.min(j + 999, #active)))
end
return {soonest, out}
