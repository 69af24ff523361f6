-- One token of a per-caller quota, as ordership_domain::rate_limit takes it (GCRA: the bucket is
-- the instant it would be full again). KEYS[1]: the caller's bucket. ARGV: the interval (window /
-- quota) and the window, in ms, and the quota. Time is Redis's, so every instance agrees on it.
-- The key expires when the bucket is full again: a full bucket and no key are the same.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, window, quota = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local next = tat + interval
if next - now > window then
  return {0, 0, tat - now, next - now - window}
end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', string.format('%d', next - now))
local remaining = math.min(math.floor((window - (next - now)) / interval), quota - 1)
return {1, remaining, next - now, 0}
