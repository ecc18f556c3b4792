-- beat_lease.lua: renew or release the beat leader's lease, only if the caller holds it.
-- (It is taken with SET NX PX.) Not a queue script; the key has the tag {beat}.
-- KEYS[1] leader lease key   ARGV[1] the caller's token   ARGV[2] lease ms (0 = release)
-- ARGV[3] change channel (told "released", so a follower takes over at once)
-- Returns 1, or 0 when the caller does not hold the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[3], 'released')
end
return 1
