-- worker_join.lua: registers (or replaces) one connected worker's registry entry.
-- KEYS[1] the worker hash cv:{workers}:w:ID, KEYS[2] the index cv:{workers}:seen;
-- ARGV[1] worker id, ARGV[2] entry TTL ms, ARGV[3] now ms, ARGV[4..] field, value pairs
-- (WORKER_FIELDS in ../keys.py). The entry of an earlier stream of the same worker is
-- replaced whole. Returns 1.
local ttl = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3]) + ttl
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'ex', expiry, unpack(ARGV, 4, #ARGV))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], expiry, ARGV[1])
return 1
