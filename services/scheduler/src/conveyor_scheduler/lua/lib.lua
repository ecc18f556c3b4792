-- lib.lua: shared prelude, prepended to every queue script when it is loaded.
--
-- What each key, channel and task hash field is: KEY_PATTERNS and TASK_FIELDS in
-- ../keys.py (the one legend; tests/unit/test_key_legend.py fails when a script uses a
-- key or field missing there).
--
-- Every queue script receives the same KEYS, all inside the queue's hash tag {q:QUEUE}:
--   KEYS[1..10]  ready lists, priority 0..9       cv:{q:QUEUE}:r:P
--   KEYS[11]     scheduled zset                    cv:{q:QUEUE}:s
--   KEYS[12]     active zset                       cv:{q:QUEUE}:a
--   KEYS[13]     dead-letter zset                  cv:{q:QUEUE}:d
--   KEYS[14]     parked-names set                  cv:{q:QUEUE}:pn
-- and the same first ARGV:
--   ARGV[1] key prefix "cv:{q:QUEUE}:"; task hashes (PREFIX.."t:"..id), idempotency keys
--           (PREFIX.."k:"..key), parked-task zsets (PREFIX.."p:"..name) and rate-limit
--           buckets are derived here because their names are only known inside the
--           script, but they share the queue's hash tag, so every script still touches
--           a single cluster slot.
--   ARGV[2] now (ms)   ARGV[3] result TTL (ms)   ARGV[4] pub/sub channel prefix ("cv"):
--           PREFIX:done, PREFIX:state, PREFIX:cancel and PREFIX:wake (payloads: keys.py).
local PREFIX = ARGV[1]
local NOW = tonumber(ARGV[2])
local RESULT_TTL = tonumber(ARGV[3])
local DONE_CHANNEL = ARGV[4] .. ':done'
local STATE_CHANNEL = ARGV[4] .. ':state'
local CANCEL_CHANNEL = ARGV[4] .. ':cancel'
local WAKE_CHANNEL = ARGV[4] .. ':wake'
local SCHEDULED, QUEUED, ACTIVE, SUCCEEDED, FAILED, CANCELLED, EXPIRED, DEAD = 1, 2, 3, 4, 5, 6, 7, 8

local function task_key(id)
  return PREFIX .. 't:' .. id
end

-- Name-aware dispatch: a QUEUED task that a claim popped for a worker that does not
-- declare its name is parked in PREFIX..'p:'..name, a zset scored 9 - priority (so one
-- priority's members sort by id, which is creation order), and its name is added to
-- KEYS[14]. A claim for a worker that takes the name reads parked tasks of each
-- priority before that priority's ready list, so parking never reorders what a worker
-- can take.
local function parked_key(name)
  return PREFIX .. 'p:' .. name
end

-- Takes a task out of its parked zset (cancel, or a claim leasing it).
local function unpark(id, name)
  local pkey = parked_key(name)
  redis.call('ZREM', pkey, id)
  if redis.call('EXISTS', pkey) == 0 then
    redis.call('SREM', KEYS[14], name)
  end
end

local function ready_key(priority)
  return KEYS[(tonumber(priority) or 0) + 1]
end

-- When the lease of an attempt started at `started` lapses: `lease` ms later (0 = at the
-- attempt's deadline), never past the deadline.
local function lease_expiry(started, deadline, lease)
  if lease > 0 and started + lease < deadline then
    return started + lease
  end
  return deadline
end

-- Tells watchers (WatchTask) about a state change. `watched` is whether the task's 'wt'
-- field is set, when the caller has read it already; nil costs one HEXISTS to find out.
-- Payload "id|state|attempt|seq": seq (field ev) orders the changes of one task.
local function announce(id, key, state, watched)
  if watched == nil then
    watched = redis.call('HEXISTS', key, 'wt') == 1
  end
  if watched then
    local seq = redis.call('HINCRBY', key, 'ev', 1)
    redis.call('PUBLISH', STATE_CHANNEL,
      id .. '|' .. state .. '|' .. (redis.call('HGET', key, 'at') or '0') .. '|' .. seq)
  end
end

-- Ends a task: record the state (with any further field/value pairs given), keep it for
-- the result TTL (dead letters are kept until requeued or purged) and announce it to
-- result waiters on every replica. `watched`: see announce.
local function finish(id, key, state, watched, ...)
  redis.call('HSET', key, 'st', state, 'fa', NOW, ...)
  redis.call('HDEL', key, 'lt', 'o')
  if state == DEAD then
    redis.call('ZADD', KEYS[13], NOW, id)
  else
    redis.call('PEXPIRE', key, RESULT_TTL)
  end
  redis.call('PUBLISH', DONE_CHANNEL, id)
  announce(id, key, state, watched)
end

-- Puts an active task back at the front of its priority list (it keeps its place),
-- or ends it CANCELLED when a cancel was requested while it ran.
local function requeue_front(id, key)
  redis.call('ZREM', KEYS[12], id)
  if redis.call('HGET', key, 'cx') == '1' then
    finish(id, key, CANCELLED)
    return
  end
  redis.call('HSET', key, 'st', QUEUED)
  redis.call('HDEL', key, 'lt', 'w', 'le', 'o')
  redis.call('LPUSH', ready_key(redis.call('HGET', key, 'p')), id)
  announce(id, key, QUEUED)
end

-- A failed attempt. Without a retry request, or for a task with no retries, it ends
-- FAILED; out of retries it ends DEAD; otherwise it waits in the scheduled set.
-- delay_ms < 0 means the task's backoff policy decides (equal jitter from `jitter`).
local function fail_attempt(id, key, etype, emsg, etb, want_retry, delay_ms, jitter)
  redis.call('ZREM', KEYS[12], id)
  redis.call('HSET', key, 'et', etype, 'em', emsg, 'eb', etb)
  local f = redis.call('HMGET', key, 'at', 'mr', 'ib', 'mb', 'mu', 'nj', 'cx')
  if f[7] == '1' then
    finish(id, key, CANCELLED)
    return CANCELLED
  end
  local attempt = tonumber(f[1]) or 1
  local max_retries = tonumber(f[2]) or 0
  if (not want_retry) or max_retries == 0 then
    finish(id, key, FAILED)
    return FAILED
  end
  if attempt > max_retries then
    finish(id, key, DEAD)
    return DEAD
  end
  if delay_ms < 0 then
    local initial = tonumber(f[3]) or 1000
    local cap = tonumber(f[4]) or 600000
    local mult = tonumber(f[5]) or 2
    delay_ms = math.min(cap, initial * mult ^ (attempt - 1))
    if f[6] ~= '1' then
      delay_ms = delay_ms / 2 + delay_ms / 2 * jitter
    end
  end
  local due = math.floor(NOW + delay_ms)
  redis.call('HSET', key, 'st', SCHEDULED, 'eta', due)
  redis.call('HDEL', key, 'lt', 'w', 'le', 'o')
  redis.call('ZADD', KEYS[11], due, id)
  announce(id, key, SCHEDULED)
  return SCHEDULED
end

-- GCRA rate limiting with reservations: returns the time the next task of `bucket`
-- may start and reserves that slot. rate is "count/period-ms"; a burst of a tenth of a
-- second's worth (at least 1) may start at once.
local function rate_slot(bucket, rate)
  local count, period = string.match(rate, '^(%d+)/(%d+)$')
  count, period = tonumber(count), tonumber(period)
  local interval = period / count
  local burst = math.max(1, math.floor(count * 100 / period))
  local tat = tonumber(redis.call('GET', bucket)) or NOW
  if tat < NOW then
    tat = NOW
  end
  local start = math.max(NOW, tat - interval * (burst - 1))
  redis.call('SET', bucket, tostring(tat + interval), 'PX', math.ceil(tat + interval - NOW + period))
  return start
end

-- The dead letters named in ARGV[5..], or up to 1,000 of all when ARGV[5] is '*'.
local function dead_selection()
  if ARGV[5] == '*' then
    return redis.call('ZRANGE', KEYS[13], 0, 999)
  end
  local ids = {}
  for i = 5, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
  return ids
end
