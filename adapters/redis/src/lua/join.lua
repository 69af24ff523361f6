-- ARGV: buyer, returning ticket (0: none), admissions, interval ms, admitting (1/0), draw seed,
-- admission validity ms, holding limit (-1: none).
local buyer, returning = ARGV[1], tonumber(ARGV[2])
local admissions, interval, admitting = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local now = now_ms()
keep()
if admitting then
  if returning > 0 then
    -- The queue lost its data while open: those coming back keep the tickets they hold.
    redis.call('HSETNX', meta, 'drawn', 1)
  end
  draw_once(tonumber(ARGV[6]))
end
local in_window = recent(now, interval)
local room_left = holding_room(now, tonumber(ARGV[7]), tonumber(ARGV[8]))
local existing = redis.call('HGET', entries, buyer)
if existing then
  local ticket, _, admitted_at = decode(existing)
  redis.call('HSET', entries, buyer, encode(ticket, now, admitted_at))
  return status(ticket, admitted_at)
end
local ticket
if returning > 0 and redis.call('ZCOUNT', waiting, returning, returning) == 0 then
  -- Back at the ticket of the buyer's queue token; new tickets go past it.
  ticket = returning
  if tonumber(redis.call('GET', seq) or '0') < returning then
    redis.call('SET', seq, returning)
  end
else
  ticket = redis.call('INCR', seq)
end
local before = redis.call('ZCOUNT', waiting, '-inf', '(' .. ticket)
redis.call('ZADD', waiting, ticket, buyer)
redis.call('HSET', entries, buyer, encode(ticket, now, 0))
if admitting and before == 0 and in_window < admissions and room_left > 0 then
  admit(buyer, ticket, now)
  return {'admitted', ticket, now}
end
return status(ticket, 0)
