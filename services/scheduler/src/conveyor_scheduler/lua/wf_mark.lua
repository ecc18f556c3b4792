-- wf_mark.lua: records the tasks submitted for released nodes. A node the workflow no
-- longer wants (it was cancelled or failed meanwhile) gets its task id back in the reply,
-- for the caller to cancel.
-- KEYS, ARGV[1..4]: see wf_lib.lua. ARGV[5..]: pairs of node key, task id.
local wstate = tonumber(redis.call('HGET', W, 'st'))
local cancel = {}
if not wstate then
  return cancel
end
for i = 5, #ARGV, 2 do
  local node, tid = ARGV[i], ARGV[i + 1]
  if not redis.call('HGET', NT, node) then
    redis.call('HSET', NT, node, tid)
  end
  if redis.call('SREM', RU, node) == 1 and wstate == RUNNING then
    if tonumber(redis.call('HGET', NS, node)) == WAITING then
      redis.call('HSET', NS, node, SUBMITTED)
    end
  elseif wstate ~= RUNNING and tonumber(redis.call('HGET', NS, node)) == CANCELLED then
    cancel[#cancel + 1] = tid
  end
end
if #ARGV >= 5 then
  redis.call('PUBLISH', CHANGES, ID)
end
return cancel
