#!/usr/bin/env bash
# A flash sale on a Redis Cluster: two order-service instances and a delivery service (release
# builds, one PostgreSQL database, the dev broker) behind one room on a local 3+3 cluster, and
# `ordership load --flash-sale` with a buyer per development customer, each following their place
# on an event stream. Prints the load report (joins/s, admissions per interval, time to admission,
# orders, stock, sold-out notice) and each service's resident memory before and after.
#   scripts/bench/flash_sale.sh [buyers=10000] [admissions-per-second=200] [stock=2000]
# Needs PostgreSQL (PGHOST etc.), redis-server and redis-cli.
set -euo pipefail
cd "$(dirname "$0")/../.."
buyers=${1:-10000}
rate=${2:-200}
stock=${3:-2000}
cargo build --release --quiet -p ordership
bin=$PWD/target/release/ordership
work=$(mktemp -d)
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
cleanup() { stop_all; scripts/redis-cluster.sh stop "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

nodes=$(REDIS_CLUSTER_BASE_PORT=17700 scripts/redis-cluster.sh start "$work/cluster")
fresh_bench_db bench_flash
url="postgres://${PGUSER:-postgres}@${PGHOST:-127.0.0.1}/bench_flash"
start_broker
export ORDERSHIP_DEV_AUTH=true ORDERSHIP_DEV_KEY_FILE="$work/dev-signing-key.pem"
# The development key, made once before the services start (made by each at once, they would race).
admin=$("$bin" token --customer bench-admin --scope admin 2>/dev/null)
common=(--database-url "$url" --kafka-brokers "$brokers" --log-format json)
RUST_LOG=warn "$bin" delivery-service --http-addr 127.0.0.1:18081 "${common[@]}" >"$work/d.log" 2>&1 & pids+=($!)
order_pids=()
for port in 18080 18082; do
  RUST_LOG=warn "$bin" order-service --http-addr "127.0.0.1:$port" "${common[@]}" \
    --redis-url "$nodes" --redis-cluster >"$work/o$port.log" 2>&1 & pids+=($!)
  order_pids+=($!)
done
for port in 18080 18081 18082; do
  until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.2; done
done
curl -sS --fail-with-body -X PUT http://127.0.0.1:18080/waiting-rooms/bench -H "Authorization: Bearer $admin" \
  -H 'Content-Type: application/json' \
  -d "{\"skus\":[\"BENCH-1\"],\"admissions\":$rate,\"interval_ms\":1000,\"state\":\"open\",\"stock\":$stock}" >/dev/null
# Every instance knows the room before the buyers come (each reads the rooms every second).
for port in 18080 18082; do
  until curl -sf "http://127.0.0.1:$port/waiting-rooms/bench" >/dev/null; do sleep 0.2; done
done
rss() { for p in "${order_pids[@]}"; do printf '%s ' "$(ps -o rss= -p "$p" | tr -d ' ')"; done; }
before=$(rss)
"$bin" load --flash-sale bench --buyers "$buyers" --concurrency 128 --patience 3s --deadline 120s \
  --target http://127.0.0.1:18080,http://127.0.0.1:18082 | tee "$work/report.txt"
after=$(rss)
printf 'order-service RSS (KiB), two instances: before %s  after %s\n' "$before" "$after"
