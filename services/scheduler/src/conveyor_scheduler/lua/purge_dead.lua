-- purge_dead.lua: delete dead letters and their task records.
-- KEYS, ARGV[1..4]: see lib.lua.   ARGV[5..] task ids ('*' alone: up to 1,000 of all)
-- Returns the number purged.
local ids = dead_selection()
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[13], id) == 1 then
    local key = task_key(id)
    redis.call('DEL', key)
    purged = purged + 1
  end
end
return purged
