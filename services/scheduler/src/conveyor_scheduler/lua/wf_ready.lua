-- wf_ready.lua: the nodes of a workflow whose parents are done but that are not marked
-- submitted yet (after a crash between the two), each as wf_lib's released() gives it.
-- KEYS, ARGV[1..4]: see wf_lib.lua. Returns {state or 0 when gone, run, released...}.
local meta = redis.call('HMGET', W, 'st', 'run')
if not meta[1] then
  return {0, 0, {}}
end
local out = {}
if tonumber(meta[1]) == RUNNING then
  for _, key in ipairs(redis.call('SMEMBERS', RU)) do
    out[#out + 1] = released(key)
  end
end
return {tonumber(meta[1]), tonumber(meta[2]), out}
