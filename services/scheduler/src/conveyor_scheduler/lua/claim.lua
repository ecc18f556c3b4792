-- claim.lua: lease up to N ready tasks, highest priority first, FIFO among equals,
-- among the tasks of the names the worker declares.
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5] max tasks   ARGV[6] lease ms (0 = until the attempt's deadline)
-- ARGV[7] token base (random per call)   ARGV[8] worker id   ARGV[9] default timeout ms
-- ARGV[10] the queue's rate limit ("count/period-ms") or ''
-- ARGV[11] owner: the stream that will hold the leases ('' for a polled lease)
-- ARGV[12..] the task names the worker declares (none: it takes any name)
-- Entries whose task is no longer QUEUED (cancelled, expired, gone) are dropped; a task
-- past its expires_at ends EXPIRED; a task with a cancel request ends CANCELLED. A
-- rate-limited task without a free slot reserves the next one and waits for it in the
-- scheduled set (it does not take a slot again when it comes back). A ready task of a
-- name the worker does not declare is parked (see lib.lua), at most 1,000 per call.
-- A paused queue (PREFIX..'pz' set: PauseQueue) leases nothing. An entry popped from a
-- ready list whose task is not QUEUED is a tombstone (cancel.lua) and is dropped.
-- Returns {earliest reserved start ms or -1, {one flat HGETALL array per leased task,
-- read before the lease was recorded, with the lease's fields (st at lt sa dl le w pk)
-- and 'id' appended: later pairs override earlier ones}, {names parked by this call},
-- 1 when the parking budget ran out (more may be ready) else 0, 1 when parked tasks
-- remain in the queue else 0}; the caller makes sure the promoter wakes for the
-- reservations. A paused queue answers as an empty one: {-1, {}, {}, 0, 0}.
if redis.call('EXISTS', PREFIX .. 'pz') == 1 then
  return {-1, {}, {}, 0, 0}
end
local want = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local base, worker, default_timeout, queue_rate, owner = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10], ARGV[11]
local names = nil
if #ARGV >= 12 then
  names = {}
  for i = 12, #ARGV do
    names[ARGV[i]] = true
  end
end
local out = {}
local active = {}  -- score, member pairs for one ZADD per call
local soonest = -1
local parked_now, parked_seen = {}, {}
local budget = 1000
local cut = 0

-- Leases (or ends) one task popped from a ready list or a parked zset. `rec` is its
-- HGETALL array; `parked` is true for a task taken from a parked zset, else `prio` is
-- the priority of the ready list it came from.
local function take(id, key, rec, parked, prio)
  local f = {}
  for j = 1, #rec, 2 do
    f[rec[j]] = rec[j + 1]
  end
  if tonumber(f.st) ~= QUEUED then
    if not parked then
      drop_tombstone(key, f.tb or (f.st == nil and '1'), prio)
    end
    return
  end
  local expires = tonumber(f.x)
  local watched = f.wt == '1'
  local start = NOW
  if expires and NOW >= expires then
    start = -1
    finish(id, key, EXPIRED, watched, f.wf or false)
  elseif f.cx == '1' then
    start = -1
    finish(id, key, CANCELLED, watched, f.wf or false)
  elseif names and not parked and not names[f.n] then
    redis.call('ZADD', parked_key(f.n), 9 - (tonumber(f.p) or 0), id)
    redis.call('SADD', KEYS[14], f.n)
    redis.call('HSET', key, 'pk', 1)
    if not parked_seen[f.n] then
      parked_seen[f.n] = true
      parked_now[#parked_now + 1] = f.n
    end
    budget = budget - 1
    return
  elseif f.rs ~= '1' then
    if f.rl then
      start = rate_slot(PREFIX .. 'rl:' .. f.n, f.rl)
    end
    if queue_rate ~= '' then
      start = math.max(start, rate_slot(PREFIX .. 'rlq', queue_rate))
    end
  end
  if parked then
    redis.call('HDEL', key, 'pk')
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
    if owner ~= '' then
      redis.call('HSET', key, 'st', ACTIVE, 'at', attempt, 'lt', token, 'sa', started, 'dl', deadline,
        'le', expiry, 'w', worker, 'o', owner)
    else
      redis.call('HSET', key, 'st', ACTIVE, 'at', attempt, 'lt', token, 'sa', started, 'dl', deadline,
        'le', expiry, 'w', worker)
    end
    if f.rs then
      redis.call('HDEL', key, 'rs')
    end
    stat(STARTED)
    -- Ready since its eta, else since its submit (the time its id carries; an eta is never earlier).
    stat_ms(WAIT_SLOT, started - (tonumber(f.eta) or id_ms(id)))
    active[#active + 1] = expiry
    active[#active + 1] = id
    announce(id, key, ACTIVE, watched)
    local n = #rec
    rec[n + 1], rec[n + 2], rec[n + 3], rec[n + 4] = 'st', tostring(ACTIVE), 'at', tostring(attempt)
    rec[n + 5], rec[n + 6], rec[n + 7], rec[n + 8] = 'lt', token, 'sa', string.format('%d', started)
    rec[n + 9], rec[n + 10], rec[n + 11], rec[n + 12] = 'dl', string.format('%d', deadline),
      'le', string.format('%d', expiry)
    rec[n + 13], rec[n + 14], rec[n + 15], rec[n + 16] = 'w', worker, 'id', id
    rec[n + 17], rec[n + 18] = 'pk', ''
    out[#out + 1] = rec
  end
end

-- The parked names this worker takes: their tasks come before each priority's list.
local mine = {}
local parked_names = redis.call('SMEMBERS', KEYS[14])
for _, name in ipairs(parked_names) do
  if names == nil or names[name] then
    mine[#mine + 1] = name
  end
end

for prio = 9, 0, -1 do
  while #mine > 0 and #out < want do
    local candidates = {}
    for _, name in ipairs(mine) do
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', parked_key(name), 9 - prio, 9 - prio, 'LIMIT', 0,
          want - #out)) do
        candidates[#candidates + 1] = {id, name}
      end
    end
    if #candidates == 0 then
      break
    end
    if #mine > 1 then
      table.sort(candidates, function(a, b) return a[1] < b[1] end)
    end
    for j = 1, math.min(#candidates, want - #out) do
      local id, name = candidates[j][1], candidates[j][2]
      unpark(id, name)
      local key = task_key(id)
      take(id, key, redis.call('HGETALL', key), true, prio)
    end
  end
  local key_list = KEYS[prio + 1]
  while #out < want and budget > 0 do
    local ids = redis.call('LPOP', key_list, math.min(want - #out, budget))
    if not ids then
      break
    end
    for j, id in ipairs(ids) do
      local key = task_key(id)
      take(id, key, redis.call('HGETALL', key), false, prio)
      if budget <= 0 and j < #ids then
        -- out of parking budget: the rest go back to the front, in order
        for k = #ids, j + 1, -1 do
          redis.call('LPUSH', key_list, ids[k])
        end
        break
      end
    end
  end
  if budget <= 0 then
    cut = 1
    break
  end
  if #out >= want then
    break
  end
end
for j = 1, #active, 1000 do
  redis.call('ZADD', KEYS[12], unpack(active, j, math.min(j + 999, #active)))
end
local parked_left = 0
if #parked_now > 0 or #mine > 0 then
  parked_left = redis.call('EXISTS', KEYS[14])
elseif #parked_names > 0 then
  parked_left = 1
end
return {soonest, out, parked_now, cut, parked_left}
