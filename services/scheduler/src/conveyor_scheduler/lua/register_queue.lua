-- register_queue.lua: give a queue its stable number (embedded in its task ids).
-- The registry is global, not per queue: KEYS share the tag {cv}.
-- KEYS[1] hash name -> number   KEYS[2] hash number -> name   KEYS[3] counter
-- ARGV[1] queue name   ARGV[2] largest number allowed
-- Returns the queue's number, or 0 when the numbers are used up.
local code = redis.call('HGET', KEYS[1], ARGV[1])
if code then
  return tonumber(code)
end
local n = redis.call('INCR', KEYS[3])
if n > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[3])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], n)
redis.call('HSET', KEYS[2], n, ARGV[1])
return n
