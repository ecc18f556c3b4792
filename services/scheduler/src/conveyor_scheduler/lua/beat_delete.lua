-- beat_delete.lua: delete one schedule. Not a queue script; every key shares the tag {beat}.
-- KEYS[1] schedule hash   KEYS[2] due zset   KEYS[3] id index zset
-- ARGV[1] id   ARGV[2] change channel
-- Returns 1, or 0 when there was no such schedule.
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
