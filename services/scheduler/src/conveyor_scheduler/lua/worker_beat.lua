-- worker_beat.lua: refreshes a worker's registry entry, if its stream still owns it.
-- KEYS[1] the worker hash cv:{workers}:w:ID, KEYS[2] the index cv:{workers}:seen;
-- ARGV[1] worker id, ARGV[2] owner (the stream), ARGV[3] entry TTL ms, ARGV[4] now ms,
-- ARGV[5..] field, value pairs to set (WORKER_FIELDS in ../keys.py).
-- Returns 1 when refreshed, 0 when another stream owns the entry (the worker reconnected),
-- -1 when there is no entry (it lapsed: the caller registers it again).
local owner = redis.call('HGET', KEYS[1], 'o')
if not owner then
  return -1
end
if owner ~= ARGV[2] then
  return 0
end
local ttl = tonumber(ARGV[3])
local expiry = tonumber(ARGV[4]) + ttl
redis.call('HSET', KEYS[1], 'ex', expiry, unpack(ARGV, 5, #ARGV))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], expiry, ARGV[1])
return 1
