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
# A development key of this run's own; schemathesis calls as a customer who is also a courier and
# an operator, so every operation is reachable (its ignored_auth check sends requests without it).
keys=$(mktemp -d)
export ORDERSHIP_DEV_KEY_FILE="$keys/dev-signing-key.pem"
token=$(target/debug/ordership token --customer c-schemathesis --scope "orders courier admin" 2>/dev/null)
env -u KAFKA_BROKERS DATABASE_URL="$database_url" target/debug/ordership --http-addr "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$log" "$keys"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "ordership did not start" >&2; exit 1; }
  sleep 0.1
done

status=0
# PYTHONPATH: sitecustomize.py works around a Python 3.11 bug (see there).
(cd scripts/schemathesis && PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" st run "http://127.0.0.1:$port/openapi.json" --checks all --seed "${SCHEMATHESIS_SEED:-1}" \
  --max-examples "$max_examples" --workers 2 --no-color --generation-database none \
  --header "Authorization: Bearer $token") || status=$?

count() { psql "$database_url" -X -At -c "$1"; }
echo "schemathesis: orders created $(count 'SELECT count(*) FROM orders.orders'), cancelled $(count "SELECT count(*) FROM orders.orders WHERE status = 'cancelled'"), cancel requests answered from idempotency keys $(count "SELECT count(*) FROM orders.idempotency_keys WHERE scope LIKE 'POST /orders/%/cancel by %'")"
if grep -qiE 'panicked|ERROR' "$log"; then
  echo "the server logged errors:" >&2
  grep -iE 'panicked|ERROR' "$log" | head -n 20 >&2
  status=1
fi
exit "$status"
