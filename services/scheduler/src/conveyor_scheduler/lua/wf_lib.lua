-- wf_lib.lua: shared prelude of the workflow scripts (wf_*.lua), prepended when loaded.
-- Every workflow script gets the same KEYS, all under the workflow's hash tag {w:ID}:
--   KEYS[1] W   meta hash (WORKFLOW_FIELDS in ../keys.py)     cv:{w:ID}:w
--   KEYS[2] G   node key -> graph JSON {p parents, c children, m ParentResults, q queue, n name}
--   KEYS[3] S   node key -> its TaskSpec, serialized
--   KEYS[4] NS  node key -> 0 waiting, 2 submitted, or its task's terminal state (4-8)
--   KEYS[5] NT  node key -> its task id, once submitted
--   KEYS[6] NR  node key -> its outcome: "r"+JSON result, "b"+other result, "e"+error JSON
--   KEYS[7] PW  node key -> parents not finished yet
--   KEYS[8] RU  set: nodes whose parents are done, not yet marked submitted (wf_mark)
--   KEYS[9] O   list: node keys in request order
--   KEYS[10] LV set: leaf nodes (no node names them as a parent)
-- ARGV[1] now ms   ARGV[2] result TTL ms   ARGV[3] change channel   ARGV[4] workflow id
local W, G, S, NS, NT, NR, PW, RU, O, LV = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7],
  KEYS[8], KEYS[9], KEYS[10]
local NOW, TTL, CHANGES, ID = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local RUNNING, W_SUCCEEDED, W_FAILED, W_CANCELLED = 1, 2, 3, 4
local WAITING, SUBMITTED, SUCCEEDED, CANCELLED = 0, 2, 4, 6

-- HMGET of any number of fields (unpack is bounded by Lua's stack): missing ones are false.
local function hmget_all(key, fields)
  local out = {}
  for j = 1, #fields, 1000 do
    local part = redis.call('HMGET', key, unpack(fields, j, math.min(j + 999, #fields)))
    for k = 1, #part do
      out[#out + 1] = part[k]
    end
  end
  return out
end

-- What the caller needs to submit node `key`: {key, spec, ParentResults, parents, their outcomes}.
local function released(key)
  local graph = cjson.decode(redis.call('HGET', G, key))
  local outcomes = {}
  if graph.m ~= 0 and #graph.p > 0 then
    outcomes = hmget_all(NR, graph.p)
  end
  return {key, redis.call('HGET', S, key), graph.m, graph.p, outcomes}
end

local function all_nodes()
  return redis.call('LRANGE', O, 0, -1)
end

local function expire_all()
  for k = 1, #KEYS do
    redis.call('PEXPIRE', KEYS[k], TTL)
  end
end

-- Ends a running workflow `state` (FAILED or CANCELLED): nodes still waiting will never be
-- submitted (CANCELLED); returns the task ids of submitted nodes that have not finished.
local function stop(state)
  redis.call('HSET', W, 'st', state, 'fa', NOW)
  local nodes = all_nodes()
  local states = hmget_all(NS, nodes)
  local cancel = {}
  local never = 0
  for k = 1, #nodes do
    local s = tonumber(states[k])
    if s == WAITING then
      redis.call('HSET', NS, nodes[k], CANCELLED)
      never = never + 1
    elseif s == SUBMITTED then
      cancel[#cancel + 1] = redis.call('HGET', NT, nodes[k])
    end
  end
  if never > 0 then
    redis.call('HINCRBY', W, 'nf', never)
  end
  redis.call('DEL', RU)
  return cancel
end
