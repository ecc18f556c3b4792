-- beat_save.lua: create, replace, pause or resume one schedule. Optimistic: the caller
-- read the schedule at version ARGV[2] and computed its next fire time from that read.
-- Not a queue script (no lib.lua prelude); every key shares the tag {beat}.
-- KEYS[1] schedule hash cv:{beat}:s:ID   KEYS[2] due zset (id -> next fire ms)
-- KEYS[3] id index zset (all scored 0)
-- ARGV[1] id   ARGV[2] expected version (0: the schedule must not exist)
-- ARGV[3] next fire ms ('' = none: paused or ended)   ARGV[4] change channel
-- ARGV[5..] field/value pairs to set
-- Schedule hash fields: SCHEDULE_FIELDS in ../keys.py.
-- Returns the new version, or 0 when the version did not match (re-read and retry).
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[2]) then
  return 0
end
local version = current + 1
redis.call('HSET', KEYS[1], 'v', version, unpack(ARGV, 5))
redis.call('HDEL', KEYS[1], 'le')
redis.call('ZADD', KEYS[3], 0, ARGV[1])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'nx')
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'nx', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], ARGV[1])
return version
