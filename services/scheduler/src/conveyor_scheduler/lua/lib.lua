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
-- (The pause flag, the task index, the finished list, tombstone counts and activity
-- buckets are derived from PREFIX below: pz, x, f, tb and m:BUCKET.)
-- and the same first ARGV:
--   ARGV[1] key prefix "cv:{q:QUEUE}:"; task hashes (PREFIX.."t:"..id), idempotency keys
--           (PREFIX.."k:"..key), parked-task zsets (PREFIX.."p:"..name) and rate-limit
--           buckets are derived here because their names are only known inside the
--           script, but they share the queue's hash tag, so every script still touches
--           a single cluster slot.
--   ARGV[2] now (ms)   ARGV[3] result TTL (ms)   ARGV[4] pub/sub channel prefix CP:
--           CP:done, CP:state, CP:cancel, CP:wake and CP:wfo (payloads: keys.py). On one server
--           CP is "cv" (classic channels, PUBLISH); on a Redis Cluster it is PREFIX without its
--           last colon, and a prefix with a hash tag makes them shard channels (SPUBLISH,
--           cv:{q:QUEUE}:EVENT), which stay on the queue's primary, in the script's slot.
local PREFIX = ARGV[1]
local NOW = tonumber(ARGV[2])
local RESULT_TTL = tonumber(ARGV[3])
local DONE_CHANNEL = ARGV[4] .. ':done'
local STATE_CHANNEL = ARGV[4] .. ':state'
local CANCEL_CHANNEL = ARGV[4] .. ':cancel'
local WAKE_CHANNEL = ARGV[4] .. ':wake'
local WORKFLOW_CHANNEL = ARGV[4] .. ':wfo'
local SHARDED = string.find(ARGV[4], '{', 1, true) ~= nil

-- Publishes on one of the queue's channels: a shard channel on a Redis Cluster (see ARGV[4]).
local function publish(channel, payload)
  if SHARDED then
    redis.call('SPUBLISH', channel, payload)
  else
    redis.call('PUBLISH', channel, payload)
  end
end
local SCHEDULED, QUEUED, ACTIVE, SUCCEEDED, FAILED, CANCELLED, EXPIRED, DEAD = 1, 2, 3, 4, 5, 6, 7, 8
-- (Derived keys are built where they are used, PREFIX .. 'x' and so on: a name made here
-- would cost every call a string, used or not.)

-- Activity counts for ListQueues: one string per 10-second bucket,
-- PREFIX..'m:'..floor(NOW / 10000), read as an array of unsigned 32-bit big-endian
-- counters (BITFIELD u32 slots; STAT_SLOTS in keys.py): the events below, then the
-- queue-wait and run-time histograms in log-scale buckets K (slot WAIT_SLOT + K and
-- RUN_SLOT + K). Counted in SLOTS during the call and written by the epilogue with one
-- BITFIELD INCRBY for all of them; the key expires 61 minutes after it starts.
-- (The prelude runs on every call, so it creates as little as it can: tables on first use.)
local SUBMITTED, STARTED, SUCCEEDED_N, FAILED_N, EXPIRED_N, CANCELLED_N, DEAD_N, RETRIED = 0, 1, 2, 3, 4, 5, 6, 7
local WAIT_SLOT, RUN_SLOT, HIST_BUCKETS = 8, 136, 128
local SLOTS = nil
local function stat(slot, n)
  if not SLOTS then
    SLOTS = {}
  end
  SLOTS[slot] = (SLOTS[slot] or 0) + (n or 1)
end
-- Bucket K >= 1 holds [2^((K-1)/4), 2^(K/4)) ms, K = 0 under 1 ms, the last one the rest.
-- 0.1733 is ln(2) / 4.
local function stat_ms(first_slot, ms)
  local k = 0
  if ms >= 1 then
    k = math.min(HIST_BUCKETS - 1, math.floor(math.log(ms) / 0.17328679513998632) + 1)
  end
  stat(first_slot + k)
end

-- The creation ms a task id carries in its first 10 characters (Crockford base32: digits,
-- then the letters without I, L, O and U): Lua's own base-32 digits once the letters from J
-- on are moved down to close the gaps. Ids of one submit call mostly share their first ten
-- characters, so the ms of each head is remembered for the rest of the call. Measured per
-- call (EVAL of 100,000 decodes): 0.8-1.1 us digit by digit, 0.4 us by gsub and tonumber,
-- 0.1 us for a head seen before in the call. The tables are made on first use: the prelude
-- runs on every call.
local CROCKFORD, ID_MS = nil, nil
local function id_ms(id)
  local head = string.sub(id, 1, 10)
  if not ID_MS then
    ID_MS, CROCKFORD = {}, {}
    local from, to = 'JKMNPQRSTVWXYZ', 'ijklmnopqrstuv'
    for j = 1, #from do
      CROCKFORD[string.sub(from, j, j)] = string.sub(to, j, j)
    end
  end
  local ms = ID_MS[head]
  if not ms then
    ms = tonumber((string.gsub(head, '[J-Z]', CROCKFORD)), 32)
    ID_MS[head] = ms
  end
  return ms
end

-- The task index (ListTasks): the stream PREFIX..'x' holds one entry {i: "id,id,..."} per submit
-- call (submit.lua: one XADD per call, not per task), its tasks in request order. Nothing
-- on the hot path keeps it: listings skip a task whose record is gone, and reap.lua's
-- trim_index deletes, in passes off the hot path, each entry none of whose records live.

-- Runs after every queue script (store.py wraps each one): the activity counts of the call.
-- The counts go in with one BITFIELD call whatever their number: a script call's fixed
-- cost matters, as claims and acks often carry a few tasks each. A counter that comes back
-- equal to what was added was new in this bucket, which is always so when the key was just
-- made: only then is its TTL set.
local function epilogue()
  if SLOTS then
    local key = PREFIX .. 'm:' .. math.floor(NOW / 10000)  -- STAT_BUCKET_MS in keys.py
    local ops, adds = {}, {}
    for slot, n in pairs(SLOTS) do
      ops[#ops + 1], ops[#ops + 2], ops[#ops + 3], ops[#ops + 4] = 'INCRBY', 'u32', '#' .. slot, n
      adds[#adds + 1] = n
    end
    local now = redis.call('BITFIELD', key, unpack(ops))
    for j = 1, #adds do
      if now[j] == adds[j] then
        redis.call('PEXPIRE', key, 3670000)  -- STAT_RETENTION_MS in keys.py
        break
      end
    end
  end
end

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

-- Tombstones: cancel.lua leaves a cancelled QUEUED task's entry in its ready list
-- (finding it would scan the list) and marks the task 'tb'; PREFIX..'tb' counts them per
-- priority so ListQueues can subtract them. Whoever drops such an entry (claim, purge)
-- or revives its task in place (RetryTasks) takes the count back.
local function drop_tombstone(key, marked, prio)
  if marked == '1' then
    if redis.call('HINCRBY', PREFIX .. 'tb', prio, -1) < 0 then
      redis.call('HSET', PREFIX .. 'tb', prio, 0)
    end
    redis.call('HDEL', key, 'tb')
  end
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
    publish(STATE_CHANNEL,
      id .. '|' .. state .. '|' .. (redis.call('HGET', key, 'at') or '0') .. '|' .. seq)
  end
end

-- Ends a task: record the state (with any further field/value pairs given), keep it for
-- the result TTL (dead letters are kept until requeued or purged) and announce it to
-- result waiters on every replica. `watched`: see announce. `node`: the task's 'wf' field
-- (its workflow id, false when it has none) when the caller has read it already; nil costs
-- one HGET to find out (the ack path reads it with its own HMGET).
local function finish(id, key, state, watched, node, ...)
  redis.call('HSET', key, 'st', state, 'fa', NOW, 'lt', '', 'o', '', ...)  -- one call, not an HDEL too
  if state == DEAD then
    redis.call('ZADD', KEYS[13], NOW, id)
  else
    redis.call('PEXPIRE', key, RESULT_TTL)
  end
  if state == SUCCEEDED then
    stat(SUCCEEDED_N)
  elseif state == FAILED then
    stat(FAILED_N)
  elseif state == CANCELLED then
    stat(CANCELLED_N)
  elseif state == EXPIRED then
    stat(EXPIRED_N)
  else
    stat(DEAD_N)
  end
  publish(DONE_CHANNEL, id)
  announce(id, key, state, watched)
  if node == nil then
    node = redis.call('HGET', key, 'wf')
  end
  if node then  -- a workflow's node: its outcome goes to the workflow's outbox (workflows.py)
    local r = redis.call('HMGET', key, 'wn', 'wr', 'r', 'rc', 'et', 'em')
    redis.call('XADD', PREFIX .. 'wo', '*', 't', id, 'w', node, 'n', r[1], 'u', r[2], 's', state,
      'r', r[3] or '', 'rc', r[4] or '', 'et', r[5] or '', 'em', r[6] or '')
    publish(WORKFLOW_CHANNEL, PREFIX)
  end
end

-- The attempts that failed or came back unfinished (Task.attempts): field 'ah', a JSON array,
-- oldest first, of {a = attempt, w = worker, s = started ms, e = ended ms, and for a failure
-- t = error type, m = message, b = traceback cut to 8,192 characters}, the last 16 only.
-- Written when an attempt fails or is handed back: never on the success path. `raw` is the
-- field's value as the caller read it (with the others it needs, in one HMGET); returns the
-- new value, which the caller writes with its own HSET.
local function attempts_with(raw, attempt, worker, started, etype, emsg, etb)
  local list = raw and cjson.decode(raw) or {}
  local entry = {a = tonumber(attempt) or 0, w = worker or '', s = tonumber(started) or 0, e = NOW}
  if etype then
    entry.t, entry.m, entry.b = etype, emsg, string.sub(etb or '', 1, 8192)
  end
  list[#list + 1] = entry
  while #list > 16 do
    table.remove(list, 1)
  end
  return cjson.encode(list)
end

-- Puts an active task back at the front of its priority list (it keeps its place),
-- or ends it CANCELLED when a cancel was requested while it ran.
local function requeue_front(id, key)
  local f = redis.call('HMGET', key, 'at', 'w', 'sa', 'ah', 'cx', 'p')
  local attempts = attempts_with(f[4], f[1], f[2], f[3])
  redis.call('ZREM', KEYS[12], id)
  if f[5] == '1' then
    finish(id, key, CANCELLED, nil, nil, 'ah', attempts)
    return
  end
  redis.call('HSET', key, 'st', QUEUED, 'ah', attempts)
  redis.call('HDEL', key, 'lt', 'w', 'le', 'o')
  redis.call('LPUSH', ready_key(f[6]), id)
  announce(id, key, QUEUED)
end

-- A failed attempt. Without a retry request, or for a task with no retries, it ends
-- FAILED; out of retries it ends DEAD; otherwise it waits in the scheduled set.
-- delay_ms < 0 means the task's backoff policy decides (equal jitter from `jitter`).
local function fail_attempt(id, key, etype, emsg, etb, want_retry, delay_ms, jitter)
  redis.call('ZREM', KEYS[12], id)
  local f = redis.call('HMGET', key, 'at', 'mr', 'ib', 'mb', 'mu', 'nj', 'cx', 'w', 'sa', 'ah')
  redis.call('HSET', key, 'et', etype, 'em', emsg, 'eb', etb,
    'ah', attempts_with(f[10], f[1], f[8], f[9], etype, emsg, etb))
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
  stat(RETRIED)
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
