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
# payloads. Prints events/s of each and each mode's ratio to the tightest of its limits.
#   scripts/bench/relay_drain.sh [rows=100000]
# RELAY_BATCH_SIZE (default the service's) is passed to the relays and to the reference claim;
# MODES="poll" (or "cdc") drains with one relay only (default "poll cdc").
# Uses KAFKA_BROKERS when set, else a dev broker; PostgreSQL at PGHOST/PGUSER (127.0.0.1/postgres)
# with wal_level=logical; a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${1:-100000}
batch=${RELAY_BATCH_SIZE:-256}
keys=1000
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
bin=target/release/ordership
cargo build --release --quiet -p ordership
command -v pg_recvlogical >/dev/null || { echo "pg_recvlogical is missing (postgresql-client)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
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
-- Two messages per transaction, as placing an order writes them; in CDC mode deleted again in
-- the same transaction (only the log keeps them).
CREATE PROCEDURE public.fill(n int, keys int, cdc boolean) LANGUAGE plpgsql AS $$
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
    VALUES (gen_random_uuid(), 'ordership.delivery.commands', 'order-' || (i / 2) % keys,
            'ordership.delivery.schedule.v1', jsonb_build_object('n', i + 1, 'filler', filler),
            jsonb_build_object('source', '/orders', 'correlation_id', gen_random_uuid(),
                               'causation_id', NULL, 'traceparent', NULL), now())
    RETURNING id INTO second_id;
    IF cdc THEN
      DELETE FROM orders.outbox WHERE id IN (first_id, second_id);
    END IF;
    COMMIT;
  END LOOP;
END $$;
SQL
}
fill() { sql -c "SET synchronous_commit = off" -c "CALL public.fill($rows, $keys, $1)"; }

# One order service, its relay in `mode`; waits until it answers.
service() {
  local mode=$1 http
  http=$(free_port 18600)
  RUST_LOG=warn "$bin" order-service --dev-auth --http-addr "127.0.0.1:$http" --database-url "$url" \
    --kafka-brokers "$brokers" --kafka-namespace "drain-$mode-$(date +%s%N)." --relay-mode "$mode" \
    --relay-batch-size "$batch" --log-format json >"$work/$mode.log" 2>&1 & pids+=($!)
  service_pid=$! service_url="http://127.0.0.1:$http"
  until curl -sf "$service_url/health/live" >/dev/null; do sleep 0.1; done
}
stop_service() { kill "$service_pid"; wait "$service_pid" 2>/dev/null || true; }
published() { curl -s "$service_url/metrics" | awk '/^ordership_relay_published_total/ { n += $2 } END { print n + 0 }'; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

modes=${MODES:-poll cdc}
poll_rate=- cdc_rate=-

# Polling relay: a backlog in the table, then the service; the rows' published_at times the drain.
if [[ " $modes " == *" poll "* ]]; then
  fresh_db
  fill false
  service poll
  until [ "$(sql -c "SELECT count(*) FROM orders.outbox WHERE published_at IS NULL")" = 0 ]; do sleep 0.2; done
  poll_seconds=$(sql -c "SELECT extract(epoch FROM max(published_at) - min(published_at)) FROM orders.outbox")
  stop_service
  poll_rate=$(rate "$rows" "$poll_seconds")
fi

# CDC relay: the service once, to make its slot; the backlog written through the log while it is
# stopped; then the service again, timed by its published-messages counter.
if [[ " $modes " == *" cdc "* ]]; then
  fresh_db
  service cdc
  stop_service
  fill true
  service cdc
  until [ "$(published)" -gt 0 ]; do sleep 0.02; done
  started=$(now)
  until [ "$(published)" -ge "$rows" ]; do sleep 0.05; done
  cdc_seconds=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
  stop_service
  cdc_rate=$(rate "$rows" "$cdc_seconds")
fi

# Broker limit: the relays' producer, as fast as it can.
broker_rate=$(RUST_LOG=warn "$bin" bench-publish --kafka-brokers "$brokers" --kafka-namespace "drain-broker-$(date +%s%N)." \
  --messages "$rows" --keys "$keys" --payload-bytes 300 2>/dev/null | sed -E 's/.*"per_second":([0-9.]+).*/\1/')
broker_rate=$(printf '%.0f' "$broker_rate")

# Database limit for polling: a fixed claim + mark statement, one connection, batch by batch.
fresh_db
fill false
cat >"$work/claim_mark.sql" <<SQL
WITH batch AS (SELECT id FROM orders.outbox WHERE published_at IS NULL ORDER BY id LIMIT $batch FOR UPDATE SKIP LOCKED)
UPDATE orders.outbox o SET published_at = now() FROM batch WHERE o.id = batch.id;
SQL
tps=$(pgbench -n -c 1 -t $((rows / batch)) -f "$work/claim_mark.sql" "$db" 2>/dev/null \
  | awk '/^tps = / { print $3 }')
claim_rate=$(awk -v t="$tps" -v b="$batch" 'BEGIN { printf "%.0f", t * b }')

# Database limit for CDC: pg_recvlogical streaming the same backlog (pgoutput) to /dev/null.
fresh_db
sql -c "SELECT pg_create_logical_replication_slot('drain_reference', 'pgoutput')" >/dev/null
fill true
end_lsn=$(sql -c "SELECT pg_current_wal_lsn()")
started=$(now)
pg_recvlogical -d "$db" --slot drain_reference --start -o proto_version=1 \
  -o publication_names=ordership_orders_outbox -E "$end_lsn" -f /dev/null
recv_seconds=$(awk -v a="$started" -v b="$(now)" 'BEGIN { print b - a }')
sql -c "SELECT pg_drop_replication_slot('drain_reference')" >/dev/null
recv_rate=$(rate "$rows" "$recv_seconds")

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-") print "-"; else printf "%.2f", a / b }'; }
poll_limit=$(min "$broker_rate" "$claim_rate")
cdc_limit=$(min "$broker_rate" "$recv_rate")
printf '\nrelay drain, %s rows (2 per transaction, %s keys, ~300-byte payloads), batch %s, broker %s\n' \
  "$rows" "$keys" "$batch" "$brokers"
printf '  limit  broker (bench-publish)          %10s events/s\n' "$broker_rate"
printf '  limit  database, claim + mark (pgbench) %9s events/s\n' "$claim_rate"
printf '  limit  database, log (pg_recvlogical)   %9s events/s\n' "$recv_rate"
printf '  relay  poll                             %9s events/s   %s of its limit (%s)\n' \
  "$poll_rate" "$(ratio "$poll_rate" "$poll_limit")" "$poll_limit"
printf '  relay  cdc                              %9s events/s   %s of its limit (%s)\n' \
  "$cdc_rate" "$(ratio "$cdc_rate" "$cdc_limit")" "$cdc_limit"
