-- wf_apply.lua: applies one node's outcome to its workflow, exactly once: a node already
-- applied (a replayed outbox entry) changes nothing and returns again what its outcome
-- released and is not yet marked submitted. Children whose parents are all done are
-- released (fail fast: unless this node failed; then the workflow fails and the rest is
-- cancelled).
-- KEYS, ARGV[1..4]: see wf_lib.lua.
-- ARGV[5] node key   ARGV[6] task id   ARGV[7] run of that task   ARGV[8] task state (4-8)
-- ARGV[9] outcome ("r"+JSON result, "b"+other result, "e"+error JSON)
-- Returns {code, workflow state, released nodes, task ids to cancel}: code 0 ignored (no such
-- workflow or node, or a task of an earlier run), 1 applied, 2 applied before.
local node, tid, state, outcome = ARGV[5], ARGV[6], tonumber(ARGV[8]), ARGV[9]
local meta = redis.call('HMGET', W, 'st', 'run', 'pol', 'nn')
if not meta[1] or meta[2] ~= ARGV[7] then
  return {0, tonumber(meta[1]) or 0, {}, {}}
end
local current = tonumber(redis.call('HGET', NS, node))
if not current then
  return {0, tonumber(meta[1]), {}, {}}
end
local graph = cjson.decode(redis.call('HGET', G, node))
local out = {}
if current > SUBMITTED then
  for _, child in ipairs(graph.c) do
    if redis.call('SISMEMBER', RU, child) == 1 then
      out[#out + 1] = released(child)
    end
  end
  return {2, tonumber(meta[1]), out, {}}
end
local known = redis.call('HGET', NT, node)
if known and known ~= tid then
  return {0, tonumber(meta[1]), {}, {}}
end
redis.call('HSET', NS, node, state)
redis.call('HSET', NR, node, outcome)
redis.call('HSET', NT, node, tid)
redis.call('SREM', RU, node)
local finished = redis.call('HINCRBY', W, 'nf', 1)
local wstate = tonumber(meta[1])
local cancel = {}
if wstate == RUNNING then
  if state ~= SUCCEEDED and meta[3] ~= '1' then
    redis.call('HSET', W, 'en', node, 'ei', tid, 'es', state, 'ee', string.sub(outcome, 2))
    cancel = stop(W_FAILED)
    wstate = W_FAILED
  else
    for _, child in ipairs(graph.c) do
      if redis.call('HINCRBY', PW, child, -1) == 0 then
        redis.call('SADD', RU, child)
        out[#out + 1] = released(child)
      end
    end
    if finished >= tonumber(meta[4]) then
      wstate = W_SUCCEEDED
      local leaves = redis.call('SMEMBERS', LV)
      local states = hmget_all(NS, leaves)
      for k = 1, #leaves do
        if tonumber(states[k]) ~= SUCCEEDED then
          wstate = W_FAILED
          redis.call('HSET', W, 'en', leaves[k], 'ei', redis.call('HGET', NT, leaves[k]) or '', 'es', states[k],
            'ee', string.sub(redis.call('HGET', NR, leaves[k]) or 'e{}', 2))
          break
        end
      end
      redis.call('HSET', W, 'st', wstate, 'fa', NOW)
    end
  end
end
if wstate ~= RUNNING then
  expire_all()
end
redis.call('PUBLISH', CHANGES, ID)
return {1, wstate, out, cancel}
