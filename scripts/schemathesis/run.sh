#!/usr/bin/env bash
# The OpenAPI contract, checked from outside: schemathesis (pinned in scripts/requirements-test.txt)
# with every check against the ordership binary on PostgreSQL, a fixed seed and a bounded number
# of cases per operation. The document's links (place -> read, place -> cancel) make its stateful
# phase really create and cancel orders. Any failure fails the run.
#
#   scripts/schemathesis/run.sh [max-examples]      (TEST_DATABASE_URL names the server)
set -euo pipefail
cd "$(dirname "$0")/../.."
max_examples=${1:-${SCHEMATHESIS_MAX_EXAMPLES:-60}}
server=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
database=ordership_test_schemathesis
database_url="${server%/*}/$database"
psql "$server" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" -c "CREATE DATABASE $database"

cargo build --locked --quiet -p ordership --bin ordership
port=18300
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
log=$(mktemp)
env -u KAFKA_BROKERS DATABASE_URL="$database_url" target/debug/ordership --http-addr "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "ordership did not start" >&2; exit 1; }
  sleep 0.1
done

status=0
(cd scripts/schemathesis && st run "http://127.0.0.1:$port/openapi.json" --checks all --seed "${SCHEMATHESIS_SEED:-1}" \
  --max-examples "$max_examples" --workers 2 --no-color --generation-database none) || status=$?

count() { psql "$database_url" -X -At -c "$1"; }
echo "schemathesis: orders created $(count 'SELECT count(*) FROM orders.orders'), cancelled $(count "SELECT count(*) FROM orders.orders WHERE status = 'cancelled'"), cancel requests answered from idempotency keys $(count "SELECT count(*) FROM orders.idempotency_keys WHERE scope LIKE 'POST /orders/%/cancel'")"
if grep -qiE 'panicked|ERROR' "$log"; then
  echo "the server logged errors:" >&2
  grep -iE 'panicked|ERROR' "$log" | head -n 20 >&2
  status=1
fi
exit "$status"
