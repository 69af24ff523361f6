-- ARGV: interval ms. {waiting, admitted, admitted in the current window, last ticket}.
local in_window = roll(now_ms(), tonumber(ARGV[1]))
return {
  redis.call('ZCARD', waiting),
  tonumber(redis.call('HGET', meta, 'admitted') or '0'),
  in_window,
  tonumber(redis.call('GET', seq) or '0'),
}
