-- wf_apply.lua: applies node outcomes to their workflow (one workflow, any number of its
-- outcomes, in order), each exactly once: a node already applied (a replayed outbox entry)
-- changes nothing and returns again what its outcome released and is not yet marked
-- submitted. Children whose parents are all done are released (fail fast: unless the node
-- failed; then the workflow fails and the rest is cancelled).
-- KEYS, ARGV[1..4]: see wf_lib.lua.
-- ARGV[5..]: per outcome: node key, task id, run of that task, task state (4-8), outcome
-- ("r"+JSON result, "b"+other result, "e"+error JSON).
-- Returns {codes, workflow state, released nodes, task ids to cancel, the workflow's trace
-- headers and FailurePolicy (fields tp and pol, for submitting what was released)}: per outcome code 0 ignored (no
-- such workflow or node, or a task of an earlier run), 1 applied, 2 applied before.
local meta = redis.call('HMGET', W, 'st', 'run', 'pol', 'nn', 'tp')
local codes, out, cancel = {}, {}, {}
if not meta[1] then
  for i = 5, #ARGV, 5 do
    codes[#codes + 1] = 0
  end
  return {codes, 0, out, cancel, '', '0'}
end
local wstate = tonumber(meta[1])
local changed = false
for i = 5, #ARGV, 5 do
  local node, tid, run, state, outcome = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local current = tonumber(redis.call('HGET', NS, node))
  local known = current and redis.call('HGET', NT, node)
  if run ~= meta[2] or not current or (current <= SUBMITTED and known and known ~= tid) then
    codes[#codes + 1] = 0
  elseif current > SUBMITTED then
    codes[#codes + 1] = 2
    for _, child in ipairs(cjson.decode(redis.call('HGET', G, node)).c) do
      if redis.call('SISMEMBER', RU, child) == 1 then
        out[#out + 1] = released(child)
      end
    end
  else
    codes[#codes + 1] = 1
    changed = true
    redis.call('HSET', NS, node, state)
    redis.call('HSET', NR, node, outcome)
    redis.call('HSET', NT, node, tid)
    redis.call('SREM', RU, node)
    local finished = redis.call('HINCRBY', W, 'nf', 1)
    if wstate == RUNNING then
      if state ~= SUCCEEDED and meta[3] ~= '1' then
        redis.call('HSET', W, 'en', node, 'ei', tid, 'es', state, 'ee', string.sub(outcome, 2))
        for _, t in ipairs(stop(W_FAILED)) do
          cancel[#cancel + 1] = t
        end
        wstate = W_FAILED
      else
        for _, child in ipairs(cjson.decode(redis.call('HGET', G, node)).c) do
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
              redis.call('HSET', W, 'en', leaves[k], 'ei', redis.call('HGET', NT, leaves[k]) or '', 'es',
                states[k], 'ee', string.sub(redis.call('HGET', NR, leaves[k]) or 'e{}', 2))
              break
            end
          end
          redis.call('HSET', W, 'st', wstate, 'fa', NOW)
        end
      end
    end
  end
end
if changed then
  if wstate ~= RUNNING then
    expire_all()
  end
  redis.call('PUBLISH', CHANGES, ID)
end
return {codes, wstate, out, cancel, meta[5] or '', meta[3] or '0'}
