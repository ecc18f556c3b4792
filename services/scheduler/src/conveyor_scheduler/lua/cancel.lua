-- cancel.lua: cancel tasks. A queued task's list entry stays as a tombstone that
-- claim.lua drops (lib.lua: add_tombstone; a parked one leaves its parked zset); a
-- scheduled one leaves the scheduled set; a running one gets a cancel request (cx) kept
-- here in Redis, and its worker is told through PREFIX:cancel.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5..] task ids
-- Returns per task {state after the call (CANCELLED; ACTIVE for a running task, which
-- stops through its worker; the state of a finished task; 0 for an unknown task), worker id}.
local out = {}
local function add_tombstone(key, prio)
  redis.call('HSET', key, 'tb', 1)
  redis.call('HINCRBY', PREFIX .. 'tb', tonumber(prio) or 0, 1)
end
for i = 5, #ARGV do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'w', 'pk', 'n', 'p')
  local state = tonumber(f[1])
  if not state then
    out[#out + 1] = {0, ''}
  elseif state == SCHEDULED or state == QUEUED then
    redis.call('ZREM', KEYS[11], id)
    if f[3] == '1' then
      unpark(id, f[4])
      redis.call('HDEL', key, 'pk')
    elseif state == QUEUED then
      add_tombstone(key, f[5])
    end
    finish(id, key, CANCELLED)
    out[#out + 1] = {CANCELLED, ''}
  else
    if state == ACTIVE then
      redis.call('HSET', key, 'cx', 1)
      publish(CANCEL_CHANNEL, id .. '|' .. (f[2] or ''))
    end
    out[#out + 1] = {state, f[2] or ''}
  end
end
return out
