-- ARGV: interval ms. {waiting, admitted, admitted within the last interval, last ticket}.
local in_window = recent(now_ms(), tonumber(ARGV[1]))
return {
  redis.call('ZCARD', waiting),
  tonumber(redis.call('HGET', meta, 'admitted') or '0'),
  in_window,
  tonumber(redis.call('GET', seq) or '0'),
}
