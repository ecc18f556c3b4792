-- list_tasks.lua: one page of the task index (ListTasks and the bulk actions), newest
-- first, filtered. A position is (entry id, index of the task in the entry, from 1); the
-- walk goes down the entries and, inside one, from its last task to its first.
-- KEYS, ARGV[1..4]: see lib.lua.
-- ARGV[5] most matches   ARGV[6] most tasks to examine
-- ARGV[7] the entry to start at ('+': the newest)
-- ARGV[8] in that entry, examine only tasks below this index (0: all of it)
-- ARGV[9] where to stop: '-' or an entry id (inclusive)
-- ARGV[10] states as ',2,5,' ('' any)   ARGV[11] exact name ('' any)
-- ARGV[12] name prefix ('' any)   ARGV[13] worker id ('' any)
-- ARGV[14] what to return per match: 'id' (entry id, index, task id), 'rec' (entry id,
--   index, task id, the record without the payload and result fields d and r) or 'all'
--   (with them)
-- Tasks whose record is gone are skipped (their entry goes with its last task: lib.lua).
-- Returns {flat matches, the last position examined as {entry id, index} ({'', 0}: none),
-- 1 when no task is left in range else 0}.
local want, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local start, below, stop = ARGV[7], tonumber(ARGV[8]), ARGV[9]
local states, name, prefix, worker, mode = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]
local out, found, last_entry, last_index, done = {}, 0, '', 0, 0
local first_entry = start ~= '+' and start or nil

local function examine(entry, index, id)
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'st', 'n', 'w')
  if f[1] and (states == '' or string.find(states, ',' .. f[1] .. ',', 1, true))
      and (name == '' or f[2] == name)
      and (prefix == '' or string.sub(f[2] or '', 1, #prefix) == prefix)
      and (worker == '' or f[3] == worker) then
    found = found + 1
    out[#out + 1] = entry
    out[#out + 1] = index
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
end

-- Entries are read a few at a time, more while they are small: one submit call's entry can
-- hold 10,000 ids (270 KB), and 64 of those would be copied into Lua to fill one page.
local full, count = false, 4
while not full do
  local batch = redis.call('XREVRANGE', PREFIX .. 'x', start, stop, 'COUNT', count)
  local size = 0
  for _, e in ipairs(batch) do
    local entry, ids = e[1], {}
    size = size + #e[2][2]
    for id in string.gmatch(e[2][2], '[^,]+') do
      ids[#ids + 1] = id
    end
    local top = #ids
    if entry == first_entry and below > 0 then
      top = math.min(top, below - 1)
    end
    for index = top, 1, -1 do
      last_entry, last_index = entry, index
      budget = budget - 1
      examine(entry, index, ids[index])
      if found >= want or budget <= 0 then
        full = true
        break
      end
    end
    if full then
      break
    end
  end
  if not full and #batch < count then
    done = 1
    break
  end
  if #batch > 0 then
    start = '(' .. batch[#batch][1]
  end
  count = size > 16384 and 1 or math.min(64, count * 4)
end
return {out, {last_entry, last_index}, done}
