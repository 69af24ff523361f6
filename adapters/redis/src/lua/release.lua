-- ARGV: buyer. The buyer holds their admission no more (they ordered, or were told it is sold out).
return redis.call('ZREM', holding, ARGV[1])
