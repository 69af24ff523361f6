#!/usr/bin/env bash
# How fast each outbox relay drains a backlog, next to the three limits a relay can approach, in
# one run on one machine:
#   - poll:  N rows in the order service's outbox, drained by `order-service --relay-mode poll`;
#   - cdc:   N rows written through the log (inserted and deleted in their transaction, as the
#            service does in CDC mode), drained by `order-service --relay-mode cdc`;
#   - broker limit:       `ordership bench-publish`, the relays' producer sending N messages of the
#                         same size and keys as fast as it can;
#   - database, polling:  pgbench of a fixed claim + mark (the oldest unpublished rows of a batch
#                         FOR UPDATE SKIP LOCKED, marked, one transaction, one connection);
#   - database, CDC:      pg_recvlogical with pgoutput streaming the same backlog to /dev/null.
# Rows are written as the services write them: two messages per transaction, 1,000 keys, ~300-byte
# payloads. Prints events/s of each (medians of RUNS=3 runs, interleaved) and each mode's ratio to
# the tightest of its limits. Then, with cdc, once: both services in CDC mode under `ordership load`
# — the ingress (outbox rows written per second), the slot lag while steady, and how fast a backlog
# of N more rows is caught up while the load runs.
# With RELAYS="1x1 1x4 2x4 4x4" (instances x shards) the polling relay drains the same backlog with
# that many order services at once on an outbox of that many shards (leased among them, ADR 0028),
# each run's published stream read back from the broker to check every key's messages came in
# order (`ordership bench-check-order`). Default: one instance, the migration's 4 shards.
#   scripts/bench/relay_drain.sh [rows=100000]
# RELAY_BATCH_SIZE (default the service's) is passed to the relays and to the reference claim;
# MODES="poll" (or "cdc") drains with one relay only (default "poll cdc"); with cdc, STEADY=0 skips
# the run under load (slot lag, catch-up). RELAY_BATCHES_PER_TRANSACTION goes to the polling relay.
# Uses KAFKA_BROKERS when set, else a dev broker; PostgreSQL at PGHOST/PGUSER (127.0.0.1/postgres)
# with wal_level=logical; a release build. KEEP_WORK=1 keeps the services' logs (and says where).
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${1:-100000}
batch=${RELAY_BATCH_SIZE:-256}
keys=1000
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
# ORDERSHIP_BIN: another build to measure (e.g. an earlier commit's), else this tree's release build.
bin=${ORDERSHIP_BIN:-target/release/ordership}
[ -n "${ORDERSHIP_BIN:-}" ] || cargo build --release --quiet -p ordership
command -v pg_recvlogical >/dev/null || { echo "pg_recvlogical is missing (postgresql-client)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; if [ -n "${KEEP_WORK:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT
free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
export ORDERSHIP_DEV_KEY_FILE="$work/key.pem"

brokers=${KAFKA_BROKERS:-}
if [ -z "$brokers" ]; then
  port=$(free_port 19300)
  "$bin" dev-broker --port "$port" >"$work/broker.log" 2>&1 & pids+=($!)
  brokers=127.0.0.1:$port
  until grep -q "dev broker ready" "$work/broker.log"; do sleep 0.2; done
fi
db=ordership_drain
url="postgres://$PGUSER@$PGHOST/$db"
sql() { psql -q -At -X -v ON_ERROR_STOP=1 -d "$db" "$@"; }

fresh_db() {
  psql -q -At -X -d postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
    WHERE database = '$db' AND NOT active" >/dev/null
  psql -q -X -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  RUST_LOG=warn "$bin" migrate --database-url "$url" >/dev/null 2>&1
  sql <<'SQL'
-- Two messages per transaction, as placing an order writes them (or per_tx), in CDC mode deleted
-- again in the same transaction (only the log keeps them).
CREATE PROCEDURE public.fill(n int, keys int, cdc boolean, per_tx int DEFAULT 2,
                             second_topic text DEFAULT 'ordership.delivery.commands')
LANGUAGE plpgsql AS $$
DECLARE
  filler text := repeat('x', 230);
  first_id bigint;
  second_id bigint;
BEGIN
  FOR i IN 0 .. n - 1 BY 2 LOOP
    INSERT INTO orders.outbox (message_id, topic, key, message_type, payload, headers, created_at)
    VALUES (gen_random_uuid(), 'ordership.order.events', 'order-' || (i / 2) % keys,
            'ordership.order.placed.v1', jsonb_build_object('n', i, 'filler', filler),
            jsonb_build_object('source', '/orders', 'correlation_id', gen_random_uuid(),
                               'causation_id', NULL, 'traceparent', NULL), now())
    RETURNING id INTO first_id;
    INSERT INTO orders.outbox (message_id, topic, key, message_type, payload, headers, created_at)
    VALUES (gen_random_uuid(), second_topic, 'order-' || (i / 2) % keys,
            'ordership.delivery.schedule.v1', jsonb_build_object('n', i + 1, 'filler', filler),
            jsonb_build_object('source', '/orders', 'correlation_id', gen_random_uuid(),
                               'causation_id', NULL, 'traceparent', NULL), now())
    RETURNING id INTO second_id;
    IF cdc THEN
      DELETE FROM orders.outbox WHERE id IN (first_id, second_id);
    END IF;
    IF (i + 2) % per_tx = 0 THEN
      COMMIT;
    END IF;
  END LOOP;
  COMMIT;
END $$;
SQL
}
# The backlog, then its statistics (as autovacuum would gather them on a backlog that grew).
fill() { sql -c "SET synchronous_commit = off" -c "CALL public.fill($rows, $keys, $1)" -c "ANALYZE orders.outbox"; }

# One order service, its relay in `mode`; waits until it answers. Each started is added to
# `services`.
services=()
service() {
  local mode=$1 http
  http=$(free_port 18600)
  RUST_LOG=warn "$bin" order-service --dev-auth --http-addr "127.0.0.1:$http" --database-url "$url" \
    --kafka-brokers "$brokers" --kafka-namespace "${namespace:-drain-$mode-$(date +%s%N).}" --relay-mode "$mode" \
    --relay-batch-size "$batch" ${RELAY_BATCHES_PER_TRANSACTION:+--relay-batches-per-transaction "$RELAY_BATCHES_PER_TRANSACTION"} \
    --log-format json >"$work/$mode-$http.log" 2>&1 & pids+=($!)
  service_pid=$! service_url="http://127.0.0.1:$http"
  services+=("$service_pid")
  until curl -sf "$service_url/health/live" >/dev/null; do sleep 0.1; done
}
stop_service() { kill "${services[@]}"; wait "${services[@]}" 2>/dev/null || true; services=(); }
published() { curl -s "$service_url/metrics" | awk '/^ordership_relay_published_total/ { n += $2 } END { print n + 0 }'; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

modes=${MODES:-poll cdc}
runs=${RUNS:-3}

# Polling relay: a backlog in an outbox of `$2` shards (4), then `$1` services (1); the rows'
# published_at times the drain. The relays are held (a session takes the outbox's old whole-outbox lock, which every
# shard's relay takes shared) until the services have divided the shards, so all start at once.
# Then the stream the broker got is read back and checked, each key in order.
measure_poll() {
  local instances=${1:-1} shards=${2:-4} holder seconds
  fresh_db
  RUST_LOG=warn "$bin" outbox reshard --shards "$shards" --database-url "$url" >/dev/null
  fill false
  namespace="drain-poll-$instances-$(date +%s%N)."
  PGAPPNAME=drain-holder sql -c "SELECT pg_advisory_lock(hashtextextended('orders.outbox-relay', 0)), pg_sleep(600)" \
    >/dev/null 2>&1 &
  holder=$!
  until [ "$(sql -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
      WHERE a.application_name = 'drain-holder' AND l.locktype = 'advisory' AND l.granted")" = 1 ]; do
    sleep 0.1
  done
  for _ in $(seq 1 "$instances"); do service poll; done
  until [ "$(sql -c "SELECT count(DISTINCT owner) FILTER (WHERE leased_until > now()) = least($instances, $shards) \
      AND count(*) FILTER (WHERE leased_until > now()) = count(*) FROM orders.relay_shards")" = t ]; do
    sleep 0.2
  done
  # The backend, not just psql: a sleeping backend does not notice its client is gone.
  sql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'drain-holder'" >/dev/null
  wait "$holder" 2>/dev/null || true
  until [ "$(sql -c "SELECT count(*) FROM orders.outbox")" = 0 ]; do sleep 0.2; done
  seconds=$(sql -c "SELECT extract(epoch FROM max(published_at) - min(published_at)) FROM orders.outbox_published")
  echo "$instances instances, $shards shards: $(sql -c "SELECT string_agg(owner || ':' || n, ' ') FROM (SELECT owner, count(*) n \
    FROM orders.relay_shards GROUP BY owner) o") shards" >&2
  stop_service
  RUST_LOG=warn "$bin" bench-check-order --kafka-brokers "$brokers" --kafka-namespace "$namespace" \
    --topic ordership.order.events --topic ordership.delivery.commands --messages "$rows" \
    >>"$work/order-checks" 2>"$work/order-check.log" || { cat "$work/order-check.log" >&2; exit 1; }
  unset namespace
  rate "$rows" "$seconds"
}

# CDC relay: the service once, to make its slot; the backlog written through the log while it is
# stopped; then the service again, timed by its published-messages counter.
measure_cdc() {
  fresh_db
  service cdc
  stop_service
  fill true
  service cdc
  until [ "$(published)" -gt 0 ]; do sleep 0.02; done
  local started seconds
  started=$(now)
  until [ "$(published)" -ge "$rows" ]; do sleep 0.05; done
  seconds=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
  stop_service
  rate "$rows" "$seconds"
}

# Broker limit: the relays' producer, as fast as it can.
measure_broker() {
  local per_second
  per_second=$(RUST_LOG=warn "$bin" bench-publish --kafka-brokers "$brokers" --kafka-namespace "drain-broker-$(date +%s%N)." \
    --messages "$rows" --keys "$keys" --payload-bytes 300 2>/dev/null | sed -E 's/.*"per_second":([0-9.]+).*/\1/')
  printf '%.0f' "$per_second"
}

# Database limit for polling: a fixed claim + mark statement, one connection, batch by batch.
measure_claim_mark() {
  fresh_db
  fill false
  cat >"$work/claim_mark.sql" <<SQL
WITH batch AS (SELECT id FROM orders.outbox WHERE parked_at IS NULL ORDER BY id LIMIT $batch FOR UPDATE SKIP LOCKED),
published AS (DELETE FROM orders.outbox o USING batch WHERE o.id = batch.id
  RETURNING o.id, message_id, topic, key, message_type, payload, headers, created_at)
INSERT INTO orders.outbox_published (id, message_id, topic, key, message_type, payload, headers, created_at, published_at)
SELECT id, message_id, topic, key, message_type, payload, headers, created_at, now() FROM published;
SQL
  local tps
  tps=$(pgbench -n -c 1 -t $((rows / batch)) -f "$work/claim_mark.sql" "$db" 2>/dev/null \
    | awk '/^tps = / { print $3 }')
  awk -v t="$tps" -v b="$batch" 'BEGIN { printf "%.0f", t * b }'
}

# Database limit for CDC: pg_recvlogical streaming the same backlog (pgoutput) to /dev/null.
measure_recvlogical() {
  fresh_db
  sql -c "SELECT pg_create_logical_replication_slot('drain_reference', 'pgoutput')" >/dev/null
  fill true
  local end_lsn started seconds
  end_lsn=$(sql -c "SELECT pg_current_wal_lsn()")
  started=$(now)
  pg_recvlogical -d "$db" --slot drain_reference --start -o proto_version=1 \
    -o publication_names=ordership_orders_outbox -E "$end_lsn" -f /dev/null
  seconds=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
  sql -c "SELECT pg_drop_replication_slot('drain_reference')" >/dev/null
  rate "$rows" "$seconds"
}

# Each figure is the median of `runs` runs, the runs interleaved so that the machine's drift
# touches every figure alike.
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "-") }'; }
all_poll="" all_cdc="" all_broker="" all_claim="" all_recv=""
configs=${RELAYS:-1x4}
first_config=${configs%% *}
declare -A all_configs
for run in $(seq 1 "$runs"); do
  echo "run $run of $runs" >&2
  if [[ " $modes " == *" poll "* ]]; then
    for relays in $configs; do
      drained=$(measure_poll "${relays%x*}" "${relays#*x}")
      all_configs[$relays]+=" $drained"
      [ "$relays" != "$first_config" ] || all_poll+=" $drained"
    done
    all_claim+=" $(measure_claim_mark)"
  fi
  if [[ " $modes " == *" cdc "* ]]; then
    all_cdc+=" $(measure_cdc)"
    all_recv+=" $(measure_recvlogical)"
  fi
  all_broker+=" $(measure_broker)"
done
poll_rate=$(median <<<"$all_poll") cdc_rate=$(median <<<"$all_cdc") broker_rate=$(median <<<"$all_broker")
claim_rate=$(median <<<"$all_claim") recv_rate=$(median <<<"$all_recv")

# CDC under load: both services in CDC mode and `ordership load` running; the ingress (outbox rows
# written per second, both services), the slot lag while steady, and the time to catch up a
# backlog of N rows written into the order service's outbox (100 rows per transaction, on a topic
# no service consumes) while the load keeps running.
ingress=- lag_median=- lag_max=- catch_seconds=- catch_rate=-
if [[ " $modes " == *" cdc "* ]] && [ "${STEADY:-1}" = 1 ]; then
  fresh_db
  d_http=$(free_port 18700)
  namespace="steady-$(date +%s%N)."
  RUST_LOG=warn "$bin" delivery-service --dev-auth --http-addr "127.0.0.1:$d_http" --database-url "$url" \
    --kafka-brokers "$brokers" --kafka-namespace "$namespace" --relay-mode cdc \
    --relay-batch-size "$batch" --log-format json >"$work/steady-d.log" 2>&1 & pids+=($!)
  steady_d=$!
  until curl -sf "http://127.0.0.1:$d_http/health/live" >/dev/null; do sleep 0.1; done
  service cdc
  "$bin" load --dev-auth --target "$service_url" --orders "${LOAD_ORDERS:-200000}" --concurrency 32 --json \
    >"$work/load.json" 2>"$work/load.log" & pids+=($!)
  load_pid=$!
  inserted() { sql -c "SELECT sum(n_tup_ins) FROM pg_stat_user_tables WHERE relname = 'outbox'"; }
  slot_lag() { sql -c "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::bigint FROM pg_replication_slots WHERE database = current_database()"; }
  sleep "${WARMUP_SECONDS:-5}"
  ins0=$(inserted) t0=$(now)
  : >"$work/lags"
  for _ in $(seq 1 20); do slot_lag >>"$work/lags"; sleep 0.5; done
  sleep 1 # the statistics reach pg_stat_user_tables within a second
  ins1=$(inserted) t1=$(now)
  ingress=$(awk -v a="$ins0" -v b="$ins1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s - 1) }')
  lag_median=$(sort -n "$work/lags" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  lag_max=$(sort -n "$work/lags" | tail -n 1)
  # The backlog, then back to the steady lag (at most twice its median, or 1 MiB).
  settled=$(awk -v m="$lag_median" 'BEGIN { print (2 * m > 1048576) ? 2 * m : 1048576 }')
  started=$(now)
  sql -c "SET synchronous_commit = off" -c "CALL public.fill($rows, $keys, true, 100, 'ordership.order.events')"
  filled=$(now)
  until [ "$(slot_lag)" -le "$settled" ]; do sleep 0.05; done
  catch_seconds=$(awk -v a="$started" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  fill_seconds=$(awk -v a="$started" -v b="$filled" 'BEGIN { printf "%.2f", b - a }')
  catch_rate=$(rate "$rows" "$catch_seconds")
  kill "$load_pid" 2>/dev/null || true
  stop_service
  kill "$steady_d"; wait "$steady_d" 2>/dev/null || true
  unset namespace
fi

min() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "-") print a; else print (a < b) ? a : b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-") print "-"; else printf "%.2f", a / b }'; }
poll_limit=$(min "$broker_rate" "$claim_rate")
cdc_limit=$(min "$broker_rate" "$recv_rate")
printf '\nrelay drain, %s rows (2 per transaction, %s keys, ~300-byte payloads), batch %s, broker %s\n' \
  "$rows" "$keys" "$batch" "$brokers"
printf '  (medians of %s runs; every run in brackets)\n' "$runs"
printf '  limit  broker (bench-publish)          %10s events/s  [%s ]\n' "$broker_rate" "$all_broker"
printf '  limit  database, claim + mark (pgbench) %9s events/s  [%s ]\n' "$claim_rate" "$all_claim"
printf '  limit  database, log (pg_recvlogical)   %9s events/s  [%s ]\n' "$recv_rate" "$all_recv"
printf '  relay  poll                             %9s events/s   %s of its limit (%s)  [%s ]\n' \
  "$poll_rate" "$(ratio "$poll_rate" "$poll_limit")" "$poll_limit" "$all_poll"
printf '  relay  cdc                              %9s events/s   %s of its limit (%s)  [%s ]\n' \
  "$cdc_rate" "$(ratio "$cdc_rate" "$cdc_limit")" "$cdc_limit" "$all_cdc"
if [ "$poll_rate" != - ] && [ "$cdc_rate" != - ]; then
  printf '  cdc / poll                               %9s\n' "$(ratio "$cdc_rate" "$poll_rate")"
fi
if [ "$configs" != "$first_config" ]; then
  first=$(median <<<"${all_configs[$first_config]}")
  for relays in $configs; do
    drained=$(median <<<"${all_configs[$relays]}")
    printf '  relay  poll, %s instances x %s shards  %9s events/s   %s x %s  [%s ]\n' \
      "${relays%x*}" "${relays#*x}" "$drained" "$(ratio "$drained" "$first")" "$first_config" "${all_configs[$relays]}"
  done
  printf '  per-key order, read back from the broker: %s\n' \
    "$(jq -s -c '{runs: length, messages: (map(.messages) | add), duplicates: (map(.duplicates) | add), out_of_order: (map(.out_of_order) | add)}' "$work/order-checks")"
fi
if [ "$ingress" != - ]; then
  printf '  cdc under load: ingress %s outbox rows/s; slot lag median %s bytes, max %s bytes\n' \
    "$ingress" "$lag_median" "$lag_max"
  printf '  cdc under load: a %s-row backlog caught up in %s s, %s s after it was all written: %s events/s, %s x the ingress\n' \
    "$rows" "$catch_seconds" "$(awk -v a="$catch_seconds" -v b="$fill_seconds" 'BEGIN { printf "%.2f", a - b }')" \
    "$catch_rate" "$(ratio "$catch_rate" "$ingress")"
fi
