-- ARGV: admissions, interval ms, heartbeat timeout ms, admitting (1/0), draw seed, admission
-- validity ms, holding limit (-1: none). Admits the next buyers in ticket order, no more than the
-- last interval's admissions and the holding limit leave, dropping the silent ones; returns
-- {buyer, ticket, buyer, ticket, ...}. Atomic, so any number of instances may tick.
if ARGV[4] ~= '1' then
  return {}
end
keep()
draw_once(tonumber(ARGV[5]))
local admissions, interval, heartbeat = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local left = math.min(admissions - recent(now, interval),
  holding_room(now, tonumber(ARGV[6]), tonumber(ARGV[7])))
local out = {}
while left > 0 do
  local first = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
  if #first == 0 then
    break
  end
  local buyer, ticket = first[1], tonumber(first[2])
  local existing = redis.call('HGET', entries, buyer)
  local seen = -1
  if existing then
    local _, s = decode(existing)
    seen = s
  end
  if seen < 0 or now - seen > heartbeat then
    redis.call('ZREM', waiting, buyer)
    redis.call('HDEL', entries, buyer)
  else
    admit(buyer, ticket, now)
    left = left - 1
    out[#out + 1] = buyer
    out[#out + 1] = ticket
  end
end
return out
