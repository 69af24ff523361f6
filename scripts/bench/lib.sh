# Shared by the benchmark scripts (sourced): the two services on a database, over a dev broker
# (or KAFKA_BROKERS), and their clean-up. Needs `bin` (the ordership binary) and `work` (a
# scratch directory); fills `pids` (stopped by `stop_all`), `broker_pid`, `order_pid`,
# `delivery_pid`.
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

# The dev broker on port 19192, unless KAFKA_BROKERS names one; sets `brokers`.
start_broker() {
  brokers=${KAFKA_BROKERS:-}
  broker_pid=
  if [ -z "$brokers" ]; then
    "$bin" dev-broker --port 19192 >"$work/broker.log" 2>&1 & pids+=($!)
    broker_pid=$!
    brokers=127.0.0.1:19192
    until grep -q "dev broker ready" "$work/broker.log"; do sleep 0.2; done
  fi
}

# delivery-service on :18081 and order-service on :18080 over database `$1`, relay mode
# RELAY_MODE (poll), development tokens of this run's own key; returns once both are ready.
# RELAY_SHARDS=N migrates both outboxes to N shards first and runs the services with N.
start_services() {
  local url=$1
  export ORDERSHIP_DEV_AUTH=true ORDERSHIP_DEV_KEY_FILE="$work/dev-signing-key.pem"
  local common=(--database-url "$url" --kafka-brokers "$brokers" --log-format json --relay-mode "${RELAY_MODE:-poll}")
  if [ -n "${RELAY_SHARDS:-}" ]; then
    "$bin" migrate --database-url "$url" --relay-shards "$RELAY_SHARDS" >/dev/null
    common+=(--relay-shards "$RELAY_SHARDS")
  fi
  RUST_LOG=warn "$bin" delivery-service --http-addr 127.0.0.1:18081 "${common[@]}" >"$work/d.log" 2>&1 & pids+=($!)
  delivery_pid=$!
  RUST_LOG=warn "$bin" order-service --http-addr 127.0.0.1:18080 "${common[@]}" >"$work/o.log" 2>&1 & pids+=($!)
  order_pid=$!
  local port
  for port in 18080 18081; do
    until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.2; done
  done
}

# A fresh database `$1` (its inactive replication slots dropped first: they keep it from going).
fresh_bench_db() {
  psql -q -At -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
    WHERE database = '$1' AND NOT active" >/dev/null
  psql -q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}

# Prints t when PostgreSQL preloads pg_stat_statements, and then starts its counters again (f: not
# preloaded, nothing done).
reset_statements() {
  local preloaded
  preloaded=$(psql -At -d postgres -c "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'")
  if [ "$preloaded" = t ]; then
    psql -q -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null 2>&1
  fi
  echo "$preloaded"
}
