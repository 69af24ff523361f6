#!/usr/bin/env bash
# The waiting room's throughput through HTTP next to Redis running the same script directly, in
# one run on one Redis: joins/s and status calls/s of `ordership all --redis-url` (release build,
# `wrk` with a different buyer's token on each request), then `redis-benchmark` sending the join
# and status scripts by EVALSHA with the same concurrency; prints each and their ratio.
#   scripts/bench/waiting_room.sh [seconds=10] [connections=64]
# Needs redis-server, redis-benchmark and wrk (apt-get install redis-server wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
connections=${2:-64}
buyers=${BUYERS:-50000}
bin=target/release/ordership
cargo build --release --quiet -p ordership
for tool in redis-server redis-benchmark wrk; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install redis-server wrk)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }

redis_port=$(free_port 16400)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 & pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
http_port=$(free_port 18400)
export ORDERSHIP_DEV_KEY_FILE="$work/key.pem"
RUST_LOG=warn "$bin" all --http-addr "127.0.0.1:$http_port" --redis-url "redis://127.0.0.1:$redis_port" \
  --log-format json >"$work/ordership.log" 2>&1 & pids+=($!)
until curl -sf "http://127.0.0.1:$http_port/health/ready" >/dev/null; do sleep 0.2; done
base="http://127.0.0.1:$http_port"

# A paused room (everyone waits, so every join queues) whose buyers are never dropped.
admin=$("$bin" token --customer bench-admin --scope admin 2>/dev/null)
curl -sf -X PUT "$base/waiting-rooms/bench" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
  -d '{"skus":["BENCH-1"],"admissions":10,"interval_ms":5000,"heartbeat_timeout_ms":86400000,"state":"paused"}' >/dev/null
"$bin" token --customer buyer --count "$buyers" 2>/dev/null >"$work/tokens"

cat >"$work/bench.lua" <<'LUA'
-- wrk: each request as the next buyer of the token file; args: tokens file, method, path.
local tokens, i, step = {}, 0, 1
local counter = 0
function setup(thread)
  thread:set("offset", counter)
  counter = counter + 1
end
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  wrk.method = args[2]
  wrk.path = args[3]
  i = (offset or 0) * math.floor(#tokens / 2)
end
function request()
  i = i + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1] }, nil)
end
LUA
rate() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
errors() { awk '/Non-2xx or 3xx responses:/ { n = $5 } END { print n + 0 }' "$1"; }
wrk -t2 -c"$connections" -d"${seconds}s" -s "$work/bench.lua" "$base" -- "$work/tokens" POST /waiting-rooms/bench/entries >"$work/join.txt"
wrk -t2 -c"$connections" -d"${seconds}s" -s "$work/bench.lua" "$base" -- "$work/tokens" GET /waiting-rooms/bench/entries/me >"$work/status.txt"
waiting=$(curl -s "$base/waiting-rooms/bench" | sed -E 's/.*"waiting":([0-9]+).*/\1/')

# The same scripts, straight into Redis: the adapter's text (common.lua, then the operation).
lua=adapters/redis/src/lua
join_sha=$(redis-cli -p "$redis_port" SCRIPT LOAD "$(cat $lua/common.lua; printf '\n'; cat $lua/join.lua)")
status_sha=$(redis-cli -p "$redis_port" SCRIPT LOAD "$(cat $lua/common.lua; printf '\n'; cat $lua/status.lua)")
keys=("{wr:rb}:seq" "{wr:rb}:waiting" "{wr:rb}:entries" "{wr:rb}:meta" "{wr:rb}:recent" "{wr:rb}:holding")
requests=$((seconds * 40000))
redis-benchmark -p "$redis_port" -c "$connections" -n "$requests" -r "$buyers" -q \
  EVALSHA "$join_sha" 6 "${keys[@]}" buyer-__rand_int__ 0 10 5000 0 42 300000 -1 >"$work/rjoin.txt"
redis-benchmark -p "$redis_port" -c "$connections" -n "$requests" -r "$buyers" -q \
  EVALSHA "$status_sha" 6 "${keys[@]}" buyer-__rand_int__ 86400000 >"$work/rstatus.txt"
# The rate is the number just before "requests per second" on redis-benchmark's last line.
redis_rate() { tr '\r' '\n' <"$1" | awk '/requests per second/ { for (i = 2; i <= NF; i++) if ($i == "requests") r = $(i - 1) } END { print r }'; }

http_join=$(rate "$work/join.txt"); http_status=$(rate "$work/status.txt")
redis_join=$(redis_rate "$work/rjoin.txt"); redis_status=$(redis_rate "$work/rstatus.txt")
printf '\nwaiting room, %s connections, %s s each, one Redis (127.0.0.1:%s), %s buyers\n' "$connections" "$seconds" "$redis_port" "$buyers"
printf '  HTTP   POST /entries        %10.0f joins/s     (non-2xx: %s; %s buyers waiting after)\n' "$http_join" "$(errors "$work/join.txt")" "$waiting"
printf '  HTTP   GET /entries/me      %10.0f status/s    (non-2xx: %s)\n' "$http_status" "$(errors "$work/status.txt")"
printf '  Redis  EVALSHA join         %10.0f calls/s\n' "$redis_join"
printf '  Redis  EVALSHA status       %10.0f calls/s\n' "$redis_status"
awk -v a="$http_join" -v b="$redis_join" -v c="$http_status" -v d="$redis_status" \
  'BEGIN { printf "  ratio  HTTP ÷ EVALSHA        joins %.2f   status %.2f\n", a / b, c / d }'
