-- Shared by every script of one room. KEYS: the ticket counter, the waiting buyers (a sorted
-- set: buyer by ticket), the entries (a hash: buyer -> "ticket|last seen ms|admitted at ms",
-- 0 while waiting) and the room's counters (a hash: window, in_window, admitted). Every key
-- carries the room's hash tag, so one script touches one cluster slot.
local seq, waiting, entries, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

-- Redis's own clock, in milliseconds: every instance of every service agrees on it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function decode(value)
  local ticket, seen, admitted = string.match(value, '^(%d+)|(%d+)|(%d+)$')
  return tonumber(ticket), tonumber(seen), tonumber(admitted)
end

local function encode(ticket, seen, admitted)
  return string.format('%d|%d|%d', ticket, seen, admitted)
end

-- Admissions made in the window `now` falls in (fixed windows of `interval` ms).
local function roll(now, interval)
  local window = math.floor(now / interval)
  if tonumber(redis.call('HGET', meta, 'window') or '-1') ~= window then
    redis.call('HSET', meta, 'window', window, 'in_window', 0)
  end
  return tonumber(redis.call('HGET', meta, 'in_window') or '0')
end

local function admit(buyer, ticket, now)
  redis.call('ZREM', waiting, buyer)
  redis.call('HSET', entries, buyer, encode(ticket, now, now))
  redis.call('HINCRBY', meta, 'in_window', 1)
  redis.call('HINCRBY', meta, 'admitted', 1)
end

local function status(ticket, admitted_at)
  if admitted_at > 0 then
    return {'admitted', ticket, admitted_at}
  end
  local ahead = redis.call('ZCOUNT', waiting, '-inf', '(' .. ticket)
  return {'waiting', ticket, ahead + 1, redis.call('ZCARD', waiting)}
end
