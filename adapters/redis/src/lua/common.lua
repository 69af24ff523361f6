-- Shared by every script of one room. KEYS: the ticket counter, the waiting buyers (a sorted
-- set: buyer by ticket), the entries (a hash: buyer -> "ticket|last seen ms|admitted at ms",
-- 0 while waiting), the room's counters (a hash: admitted), the times of the last interval's
-- admissions (a list, oldest first: the sliding window) and the admitted buyers who have not
-- ordered yet (a sorted set: buyer by admission time). Every key carries the room's hash tag, so
-- one script touches one cluster slot.
local seq, waiting, entries, meta, recent_times, holding = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[6]

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

-- Admissions made within the last `interval` ms (a sliding window, as Rate::still_counts has
-- it); older ones are forgotten. At most the rate's admissions are ever kept.
local function recent(now, interval)
  while true do
    local oldest = redis.call('LINDEX', recent_times, 0)
    if not oldest or now - tonumber(oldest) < interval then
      break
    end
    redis.call('LPOP', recent_times)
  end
  return redis.call('LLEN', recent_times)
end

-- How many more buyers may be admitted before `limit` (-1: none) of them hold an admission they
-- have not ordered with (Holders::room); admissions older than `validity` ms are forgotten.
local function holding_room(now, validity, limit)
  redis.call('ZREMRANGEBYSCORE', holding, '-inf', now - validity)
  if limit < 0 then
    return 2147483647
  end
  return limit - redis.call('ZCARD', holding)
end

local function admit(buyer, ticket, now)
  redis.call('ZREM', waiting, buyer)
  redis.call('HSET', entries, buyer, encode(ticket, now, now))
  redis.call('RPUSH', recent_times, string.format('%d', now))
  redis.call('ZADD', holding, now, buyer)
  redis.call('HINCRBY', meta, 'admitted', 1)
end

local function status(ticket, admitted_at)
  if admitted_at > 0 then
    return {'admitted', ticket, admitted_at}
  end
  local ahead = redis.call('ZCOUNT', waiting, '-inf', '(' .. ticket)
  return {'waiting', ticket, ahead + 1, redis.call('ZCARD', waiting)}
end

-- A room that is joined or admits is in use: its keys stay (a closed room's were set to expire).
local function keep()
  for _, key in ipairs(KEYS) do
    redis.call('PERSIST', key)
  end
end

-- The opening draw, once per room: the first operation that finds the room admitting puts the
-- buyers queued before it in a random order (a Fisher-Yates shuffle of their tickets with
-- Lehmer's generator from the caller's seed, as ordership_domain::waiting_room::shuffle draws it),
-- so joining at the first millisecond wins nothing.
local function draw_once(seed)
  if redis.call('HSETNX', meta, 'drawn', 1) == 0 then
    return
  end
  local queued = redis.call('ZRANGE', waiting, 0, -1, 'WITHSCORES')
  local buyers, tickets = {}, {}
  for i = 1, #queued, 2 do
    buyers[#buyers + 1] = queued[i]
    tickets[#tickets + 1] = tonumber(queued[i + 1])
  end
  local state = seed % 2147483646 + 1
  for i = #buyers, 2, -1 do
    state = (state * 48271) % 2147483647
    local j = state % i + 1
    buyers[i], buyers[j] = buyers[j], buyers[i]
  end
  for i = 1, #buyers do
    redis.call('ZADD', waiting, tickets[i], buyers[i])
    local entry = redis.call('HGET', entries, buyers[i])
    if entry then
      local _, seen, admitted = decode(entry)
      redis.call('HSET', entries, buyers[i], encode(tickets[i], seen, admitted))
    end
  end
end
