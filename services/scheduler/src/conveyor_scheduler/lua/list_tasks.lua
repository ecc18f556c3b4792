-- list_tasks.lua: one page of the task index (ListTasks and the bulk actions), newest
-- first, filtered.
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5] most matches   ARGV[6] most index entries to examine
-- ARGV[7] where to start: '+' or an entry id, exclusive with a '(' in front
-- ARGV[8] where to stop: '-' or an entry id (inclusive)
-- ARGV[9] states as ',2,5,' ('' any)   ARGV[10] exact name ('' any)
-- ARGV[11] name prefix ('' any)   ARGV[12] worker id ('' any)
-- ARGV[13] what to return per match: 'id' (entry id, task id), 'rec' (entry id, task
--   id, the record without the payload and result fields d and r) or 'all' (with them)
-- Entries whose task record is gone (it lapsed) are deleted on the way.
-- Returns {flat matches, the last entry id examined ('' none), 1 when no entry is left
-- in range else 0}.
local want, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local start, stop = ARGV[7], ARGV[8]
local states, name, prefix, worker, mode = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local out, found, last, done = {}, 0, '', 0
while found < want and budget > 0 do
  local count = math.min(budget, 256)
  local batch = redis.call('XREVRANGE', INDEX, start, stop, 'COUNT', count)
  for _, e in ipairs(batch) do
    local entry, id = e[1], e[2][2]
    last = entry
    budget = budget - 1
    local key = task_key(id)
    local f = redis.call('HMGET', key, 'st', 'n', 'w')
    if not f[1] then
      redis.call('XDEL', INDEX, entry)
    elseif (states == '' or string.find(states, ',' .. f[1] .. ',', 1, true))
        and (name == '' or f[2] == name)
        and (prefix == '' or string.sub(f[2] or '', 1, #prefix) == prefix)
        and (worker == '' or f[3] == worker) then
      found = found + 1
      out[#out + 1] = entry
      out[#out + 1] = id
      if mode ~= 'id' then
        local rec = redis.call('HGETALL', key)
        if mode == 'rec' then
          local brief = {}
          for j = 1, #rec, 2 do
            if rec[j] ~= 'd' and rec[j] ~= 'r' then
              brief[#brief + 1] = rec[j]
              brief[#brief + 1] = rec[j + 1]
            end
          end
          rec = brief
        end
        out[#out + 1] = rec
      end
    end
    if found >= want or budget <= 0 then
      break
    end
  end
  if #batch < count and budget > 0 and found < want then
    done = 1
    break
  end
  start = '(' .. last
end
return {out, last, done}
