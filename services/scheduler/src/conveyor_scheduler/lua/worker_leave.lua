-- worker_leave.lua: removes a worker's registry entry when its stream closes, unless a
-- newer stream of the worker (on any replica) registered it since.
-- KEYS[1] the worker hash cv:{workers}:w:ID, KEYS[2] the index cv:{workers}:seen;
-- ARGV[1] worker id, ARGV[2] owner (the closing stream).
-- Returns 1 when removed, 0 otherwise.
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
