-- submit.lua: store a batch of new tasks of one queue; each becomes QUEUED (appended to
-- its priority list), SCHEDULED (due in the future) or, by the sync-match fast path,
-- ACTIVE: leased at once to a worker with free credit on the calling replica, in the
-- same atomic step, while the queue holds no ready task it would overtake (nor a parked
-- task of the same name) and is not paused. The caller offers only a worker that
-- declares the tasks' names. The call's tasks get one entry in the task index (lib.lua).
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5] match worker id ('' = no match)   ARGV[6] match credit (most tasks to lease)
-- ARGV[7] lease ms   ARGV[8] token base (random per call)
-- ARGV[9] wake payload published on the wake channel when a task became QUEUED ('' = none)
-- ARGV[10] the matched stream (owner of the leases made here)
-- ARGV[11..]: per task: id, priority, due ms (0 = now), idempotency key ('' = none),
--            idempotency window ms, timeout ms if it may be leased here (0 = not: rate
--            limited, delayed or expired), field count N, then N field/value pairs.
-- Returns per task: id, state, duplicate (1 when the idempotency key matched an
-- existing task, whose id and state are returned and nothing is written), lease token
-- ('' unless leased here), lease expiry ms and deadline ms (0 unless leased here).
local out = {}
local ready = {}
local worker, credit, lease, base = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local queued = false
-- A match must not overtake ready tasks: only while every ready list is empty.
local can_match = worker ~= '' and credit > 0 and redis.call('EXISTS', unpack(KEYS, 1, 10)) == 0
  and redis.call('EXISTS', PREFIX .. 'pz') == 0
local owner = ARGV[10]
local any_parked = can_match and redis.call('EXISTS', KEYS[14]) == 1
-- One index entry for the call: its ids, in request order (a duplicate's unused id too: it
-- has no record, so listings skip it).
local ids, stored = {}, 0
local i = 11
while i <= #ARGV do
  local id, prio, due = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  ids[#ids + 1] = id
  local ikey, iwindow, timeout, nfields = ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
  local first = i + 7
  i = first + 2 * nfields
  local existing = false
  if ikey ~= '' then
    local k = PREFIX .. 'k:' .. ikey
    local prev = redis.call('GET', k)
    if prev then
      existing = true
      out[#out + 1] = prev
      out[#out + 1] = tonumber(redis.call('HGET', task_key(prev), 'st')) or 0
      out[#out + 1] = 1
      out[#out + 1] = ''
      out[#out + 1] = 0
      out[#out + 1] = 0
    else
      redis.call('SET', k, id, 'PX', iwindow)
    end
  end
  if not existing then
    local key = task_key(id)
    local state = QUEUED
    local token, expiry, deadline = '', 0, 0
    if due > NOW then
      state = SCHEDULED
      redis.call('ZADD', KEYS[11], due, id)
    elseif can_match and credit > 0 and timeout > 0
        and not (any_parked and redis.call('SISMEMBER', KEYS[14], ARGV[first + 1]) == 1) then
      state = ACTIVE
      credit = credit - 1
      stat(STARTED)
      stat_ms(WAIT_SLOT, 0)
      token = base .. '.' .. credit .. '.1'
      deadline = NOW + timeout
      expiry = lease_expiry(NOW, deadline, lease)
      redis.call('ZADD', KEYS[12], expiry, id)
    else
      can_match = false
      queued = true
      local list = ready[prio]
      if not list then
        list = {}
        ready[prio] = list
      end
      list[#list + 1] = id
    end
    stored = stored + 1
    redis.call('HSET', key, 'st', state, unpack(ARGV, first, first + 2 * nfields - 1))
    if token ~= '' then
      redis.call('HSET', key, 'at', 1, 'lt', token, 'sa', NOW, 'dl', deadline, 'le', expiry, 'w', worker,
        'o', owner)
    end
    out[#out + 1] = id
    out[#out + 1] = state
    out[#out + 1] = 0
    out[#out + 1] = token
    out[#out + 1] = expiry
    out[#out + 1] = deadline
  end
end
redis.call('XADD', PREFIX .. 'x', '*', 'i', table.concat(ids, ','))
if stored > 0 then
  stat(SUBMITTED, stored)
end
for prio, list in pairs(ready) do
  for j = 1, #list, 1000 do
    redis.call('RPUSH', ready_key(prio), unpack(list, j, math.min(j + 999, #list)))
  end
end
if queued and ARGV[9] ~= '' then
  publish(WAKE_CHANNEL, ARGV[9])
end
return out
