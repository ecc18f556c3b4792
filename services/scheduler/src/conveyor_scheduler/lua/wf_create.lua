-- wf_create.lua: stores a chunk of a new workflow's nodes; the last chunk writes its meta
-- hash, which is what makes the workflow exist (a reader seeing no 'st' sees no workflow).
-- Until then its keys expire in an hour, so a workflow whose replica died midway leaks nothing.
-- KEYS, ARGV[1..4]: see wf_lib.lua.
-- ARGV[5] "1" on the last chunk   ARGV[6] name   ARGV[7] FailurePolicy   ARGV[8] trace headers JSON
-- ARGV[9] node count (of the whole workflow)
-- ARGV[10..]: per node: key, graph JSON, TaskSpec bytes, parent count, "1" for a leaf.
local i = 10
while i <= #ARGV do
  local key, parents = ARGV[i], tonumber(ARGV[i + 3])
  redis.call('HSET', G, key, ARGV[i + 1])
  redis.call('HSET', S, key, ARGV[i + 2])
  redis.call('HSET', NS, key, WAITING)
  redis.call('HSET', PW, key, parents)
  redis.call('RPUSH', O, key)
  if ARGV[i + 4] == '1' then
    redis.call('SADD', LV, key)
  end
  if parents == 0 then
    redis.call('SADD', RU, key)
  end
  i = i + 5
end
if ARGV[5] ~= '1' then  -- a workflow left half stored (its replica died) goes away by itself
  for k = 1, #KEYS do
    redis.call('PEXPIRE', KEYS[k], 3600000)
  end
else
  for k = 1, #KEYS do
    redis.call('PERSIST', KEYS[k])
  end
  redis.call('HSET', W, 'st', RUNNING, 'nm', ARGV[6], 'pol', ARGV[7], 'tp', ARGV[8], 'run', 1, 'ca', NOW,
    'nn', ARGV[9], 'nf', 0)
  redis.call('PUBLISH', CHANGES, ID)
end
return 1
