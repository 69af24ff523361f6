-- ARGV: buyer, heartbeat timeout ms. A heartbeat; nil when the buyer is not in the room.
local buyer, heartbeat = ARGV[1], tonumber(ARGV[2])
local existing = redis.call('HGET', entries, buyer)
if not existing then
  return false
end
local ticket, seen, admitted_at = decode(existing)
local now = now_ms()
if admitted_at == 0 and now - seen > heartbeat then
  redis.call('HDEL', entries, buyer)
  redis.call('ZREM', waiting, buyer)
  return false
end
redis.call('HSET', entries, buyer, encode(ticket, now, admitted_at))
return status(ticket, admitted_at)
