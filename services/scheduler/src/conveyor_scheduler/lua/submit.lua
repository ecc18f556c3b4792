-- submit.lua: store a batch of new tasks of one queue; each becomes QUEUED (appended to
-- its priority list) or SCHEDULED (due in the future).
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5..]: per task: id, priority, due ms (0 = now), idempotency key ('' = none),
--            idempotency window ms, field count N, then N field/value pairs.
-- Returns per task: id, state, duplicate (1 when the idempotency key matched an
-- existing task, whose id and state are returned and nothing is written).
local out = {}
local ready = {}
local i = 5
while i <= #ARGV do
  local id, prio, due = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local ikey, iwindow, nfields = ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local first = i + 6
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
    else
      redis.call('SET', k, id, 'PX', iwindow)
    end
  end
  if not existing then
    local key = task_key(id)
    local state = QUEUED
    if due > NOW then
      state = SCHEDULED
      redis.call('ZADD', KEYS[11], due, id)
    else
      local list = ready[prio]
      if not list then
        list = {}
        ready[prio] = list
      end
      list[#list + 1] = id
    end
    redis.call('HSET', key, 'st', state, unpack(ARGV, first, first + 2 * nfields - 1))
    out[#out + 1] = id
    out[#out + 1] = state
    out[#out + 1] = 0
  end
end
for prio, ids in pairs(ready) do
  for j = 1, #ids, 1000 do
    redis.call('RPUSH', ready_key(prio), unpack(ids, j, math.min(j + 999, #ids)))
  end
end
return out
