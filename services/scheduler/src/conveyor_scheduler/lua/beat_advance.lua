-- beat_advance.lua: the beat leader records a firing pass of one schedule, after it has
-- submitted the pass's tasks (so a crash in between re-submits them, and their idempotency
-- keys make that a no-op, instead of losing them). Not a queue script; keys share {beat}.
-- KEYS[1] schedule hash   KEYS[2] due zset   KEYS[3] leader lease key
-- ARGV[1] leader token   ARGV[2] schedule version the pass was planned from
-- ARGV[3] latest fire ms submitted (-1: none)   ARGV[4] its task id
-- ARGV[5] firings submitted   ARGV[6] fire times missed   ARGV[7] next fire ms ('' = ended)
-- ARGV[8] schedule id   ARGV[9] error text ('' = none)
-- Returns -1 when the caller no longer holds the lease (nothing written), 0 when the
-- schedule is gone, 2 when it changed since the read (history recorded, its new next fire
-- time kept), 1 otherwise.
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[8])
  return 0
end
local fired = tonumber(ARGV[3])
if fired >= 0 and fired > tonumber(redis.call('HGET', KEYS[1], 'lf') or '-1') then
  redis.call('HSET', KEYS[1], 'lf', fired, 'lt', ARGV[4])
end
redis.call('HINCRBY', KEYS[1], 'fc', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'ms', ARGV[6])
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'le', ARGV[9])
end
if tonumber(redis.call('HGET', KEYS[1], 'v')) ~= tonumber(ARGV[2]) then
  return 2
end
if ARGV[7] == '' then
  redis.call('HDEL', KEYS[1], 'nx')
  redis.call('ZREM', KEYS[2], ARGV[8])
else
  redis.call('HSET', KEYS[1], 'nx', ARGV[7])
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[8])
end
return 1
