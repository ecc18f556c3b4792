-- ack.lua: record the outcomes of leased attempts; only the current lease token counts.
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5..]: per ack 8 values: id, token, kind ('s' success | 'f' failure |
--   'r' failure asking for a retry | 'c' stopped on a cancel request), then for 's':
--   data, content type, '', '', '' and for 'f'/'r': error type, message, traceback,
--   delay ms (-1 = policy), jitter [0,1).
-- A task with a cancel request ends CANCELLED whatever the outcome.
-- Returns per ack: status (1 accepted, 2 stale lease, 3 not found), state after, attempt.
-- Each accepted ack adds its attempt's run time (since field sa) to the activity counts.
local out = {}
local succeeded = {}  -- members for one ZREM of the active set per call
for i = 5, #ARGV, 8 do
  local id, token, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'lt', 'cx', 'at', 'wt', 'sa', 'wf')
  local state = tonumber(f[1])
  if not state then
    out[#out + 1] = 3
    out[#out + 1] = 0
    out[#out + 1] = 0
  elseif state ~= ACTIVE or f[2] ~= token then
    out[#out + 1] = 2
    out[#out + 1] = state
    out[#out + 1] = tonumber(f[4]) or 0
  else
    stat_ms(RUN_SLOT, NOW - (tonumber(f[6]) or NOW))
    if kind == 'c' or f[3] == '1' then
      redis.call('ZREM', KEYS[12], id)
      finish(id, key, CANCELLED, f[5] == '1', f[7])
      state = CANCELLED
    elseif kind == 's' then
      succeeded[#succeeded + 1] = id
      if ARGV[i + 4] ~= '' then
        finish(id, key, SUCCEEDED, f[5] == '1', f[7], 'r', ARGV[i + 3], 'rc', ARGV[i + 4])
      else
        finish(id, key, SUCCEEDED, f[5] == '1', f[7], 'r', ARGV[i + 3])
      end
      state = SUCCEEDED
    else
      state = fail_attempt(id, key, ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], kind == 'r',
        tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]))
    end
    out[#out + 1] = 1
    out[#out + 1] = state
    out[#out + 1] = tonumber(f[4]) or 0
  end
end
for j = 1, #succeeded, 1000 do
  redis.call('ZREM', KEYS[12], unpack(succeeded, j, math.min(j + 999, #succeeded)))
end
return out
