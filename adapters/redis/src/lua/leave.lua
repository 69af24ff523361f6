-- ARGV: buyer. 1 if the buyer was in the room.
redis.call('ZREM', waiting, ARGV[1])
redis.call('ZREM', holding, ARGV[1])
return redis.call('HDEL', entries, ARGV[1])
