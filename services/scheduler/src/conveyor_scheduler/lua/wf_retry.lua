-- wf_retry.lua: runs a FAILED or CANCELLED workflow again: every node that did not succeed
-- waits again (its outcome and task forgotten), the run goes up by one (so a late outcome
-- of the old run is ignored), and the nodes whose parents all succeeded are released.
-- KEYS, ARGV[1..4]: see wf_lib.lua. Returns {state before (0: none), run, released}.
local wstate = tonumber(redis.call('HGET', W, 'st'))
if not wstate then
  return {0, 0, {}}
end
if wstate ~= W_FAILED and wstate ~= W_CANCELLED then
  return {wstate, 0, {}}
end
local run = redis.call('HINCRBY', W, 'run', 1)
redis.call('HSET', W, 'st', RUNNING)
redis.call('HDEL', W, 'fa', 'en', 'ei', 'es', 'ee')
local nodes = all_nodes()
local states = hmget_all(NS, nodes)
local succeeded = {}
local done = 0
for k = 1, #nodes do
  if tonumber(states[k]) == SUCCEEDED then
    succeeded[nodes[k]] = true
    done = done + 1
  else
    redis.call('HSET', NS, nodes[k], WAITING)
    redis.call('HDEL', NR, nodes[k])
    redis.call('HDEL', NT, nodes[k])
  end
end
redis.call('HSET', W, 'nf', done)
redis.call('DEL', RU)
local out = {}
for k = 1, #nodes do
  local key = nodes[k]
  if not succeeded[key] then
    local graph = cjson.decode(redis.call('HGET', G, key))
    local waiting = 0
    for _, parent in ipairs(graph.p) do
      if not succeeded[parent] then
        waiting = waiting + 1
      end
    end
    redis.call('HSET', PW, key, waiting)
    if waiting == 0 then
      redis.call('SADD', RU, key)
      out[#out + 1] = released(key)
    end
  end
end
for k = 1, #KEYS do
  redis.call('PERSIST', KEYS[k])
end
redis.call('PUBLISH', CHANGES, ID)
return {wstate, run, out}
