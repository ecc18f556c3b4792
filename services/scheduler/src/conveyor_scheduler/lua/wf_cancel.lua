-- wf_cancel.lua: ends a running workflow CANCELLED. KEYS, ARGV[1..4]: see wf_lib.lua.
-- Returns {state before (0: no such workflow), task ids to cancel}.
local wstate = tonumber(redis.call('HGET', W, 'st'))
if not wstate then
  return {0, {}}
end
if wstate ~= RUNNING then
  return {wstate, {}}
end
local cancel = stop(W_CANCELLED)
expire_all()
redis.call('PUBLISH', CHANGES, ID)
return {RUNNING, cancel}
