-- ARGV: interval ms, admission validity ms. {waiting, admitted, admitted within the last interval,
-- last ticket, admitted and not ordered yet}.
local now = now_ms()
local in_window = recent(now, tonumber(ARGV[1]))
holding_room(now, tonumber(ARGV[2]), -1)
return {
  redis.call('ZCARD', waiting),
  tonumber(redis.call('HGET', meta, 'admitted') or '0'),
  in_window,
  tonumber(redis.call('GET', seq) or '0'),
  redis.call('ZCARD', holding),
}
