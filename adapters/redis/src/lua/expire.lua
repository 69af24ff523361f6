-- ARGV: ms. Lets the room's keys expire after ARGV[1] ms, unless they are set to already (NX: asking
-- again does not put it off). Joining or an admitting tick keeps them again (keep()).
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[1], 'NX')
end
return 1
