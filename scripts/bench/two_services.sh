#!/usr/bin/env bash
# The issue-4 benchmark: `ordership load` against order-service + delivery-service over a dev
# broker (or KAFKA_BROKERS), then, in the same run, pgbench of one saga step's SQL on a database
# of its own; prints sagas/s, POST→terminal percentiles, relay lag and the ratio
# sagas/s ÷ (pgbench TPS / 3 commits per saga).
#   scripts/bench/two_services.sh [orders=4000] [concurrency=32]
# WARMUP=N places N orders first, unmeasured (connection pools, caches, consumer fetch sessions).
# RELAY_MODE=cdc runs the services with the CDC relay (their outboxes then stay empty, so the relay
# lag below is read from /metrics only). RELAY_SHARDS=N gives both outboxes N shards first.
# Also prints the CPU time each process spent per saga during the measured run (order service,
# delivery service, PostgreSQL's processes, the broker, the load generator), from /proc.
# When PostgreSQL preloads pg_stat_statements, also prints the statements per saga of the measured
# run (calls and execution time per saga, by statement; the whole table in STATEMENTS_OUT if set).
# ORDERSHIP_BIN measures another build (e.g. an earlier commit's) instead of this tree's.
# LOAD_ARGS adds arguments to the measured `ordership load` (e.g. "--follow poll" to follow orders
# by polling, as builds before the long poll did).
# Needs PostgreSQL at PGHOST/PGUSER (default 127.0.0.1/postgres) and a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
orders=${1:-4000}
concurrency=${2:-32}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
bin=${ORDERSHIP_BIN:-target/release/ordership}
[ -n "${ORDERSHIP_BIN:-}" ] || cargo build --release --quiet -p ordership
work=$(mktemp -d)
source scripts/bench/lib.sh
trap stop_all EXIT
for db in ordership_bench ordership_bench_pgbench; do fresh_bench_db "$db"; done
url="postgres://$PGUSER@$PGHOST/ordership_bench"
bench_url="postgres://$PGUSER@$PGHOST/ordership_bench_pgbench"
start_broker
# Development tokens of a key of this run's own: the services verify, `load` mints its customers'.
start_services "$url"

: >"$work/o.warm"; : >"$work/d.warm"
if [ "${WARMUP:-0}" -gt 0 ]; then
  "$bin" load --target http://127.0.0.1:18080 --orders "$WARMUP" --concurrency "$concurrency" --json >/dev/null
  curl -s http://127.0.0.1:18080/metrics >"$work/o.warm"
  curl -s http://127.0.0.1:18081/metrics >"$work/d.warm"
fi
# CPU seconds (user + system) a set of processes has spent so far.
cpu() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"; }
postgres_pids() { pgrep -x postgres | tr '\n' ' '; }
o_pid=$order_pid; d_pid=$delivery_pid
statements=$(reset_statements)
before="$(cpu "$o_pid") $(cpu "$d_pid") $(cpu $(postgres_pids)) $(cpu $broker_pid)"
# The load generator's own CPU: the subshell's `times` reports its finished children.
( "$bin" load --target http://127.0.0.1:18080 --orders "$orders" --concurrency "$concurrency" ${LOAD_ARGS:-} --json >"$work/load.json"
  times >"$work/load.times" )
after="$(cpu "$o_pid") $(cpu "$d_pid") $(cpu $(postgres_pids)) $(cpu $broker_pid)"
# Published rows: in their own table since migration orders 0007 (an earlier build, measured with
# ORDERSHIP_BIN, kept them in the outbox).
lag() {
  local table="$1.outbox_published"
  [ "$(psql -At -d ordership_bench -c "SELECT to_regclass('$table') IS NOT NULL")" = t ] || table="$1.outbox"
  psql -At -d ordership_bench -c "SELECT round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY published_at - created_at))::numeric, 1) || ' / ' || round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY published_at - created_at))::numeric, 1) FROM $table WHERE published_at IS NOT NULL"
}
if [ "$statements" = t ]; then
  # By statement, in the bench database, per saga of the measured run.
  psql -At -F $'\t' -d postgres -c "SELECT calls, round(total_exec_time::numeric, 1), regexp_replace(query, '\s+', ' ', 'g')
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    WHERE d.datname = 'ordership_bench' ORDER BY total_exec_time DESC" >"$work/statements.tsv"
  [ -z "${STATEMENTS_OUT:-}" ] || cp "$work/statements.tsv" "$STATEMENTS_OUT"
fi
orders_lag=$(lag orders)
delivery_lag=$(lag delivery)
# Relay batches (one transaction each) and the relay lag p99 the services' own histograms report.
curl -s http://127.0.0.1:18080/metrics >"$work/o.metrics"
curl -s http://127.0.0.1:18081/metrics >"$work/d.metrics"
stop_all

"$bin" migrate --database-url "$bench_url" >/dev/null 2>&1
psql -q -d ordership_bench_pgbench -f scripts/bench/saga_step_setup.sql
tps=$(pgbench -n -M extended -f scripts/bench/saga_step.sql -c "$concurrency" -j 2 -T 20 "$bench_url" 2>/dev/null \
  | awk '/^tps/ {print $3}')

python3 - "$work/load.json" "$tps" "$orders_lag" "$delivery_lag" "$work/o.metrics" "$work/d.metrics" \
  "$work/o.warm" "$work/d.warm" "$before" "$after" "$work/load.times" "$(getconf CLK_TCK)" "$work/statements.tsv" <<'PY'
import json, re, sys
report = json.load(open(sys.argv[1]))
tps = float(sys.argv[2])
def series(path, name):
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^' + name + r'\{([^}]*)\} (\S+)$', open(path).read(), re.M)}
def p99(path, name):
    buckets = sorted((float(re.search(r'le="([^"]+)"', k).group(1).replace('+Inf', 'inf')), v)
                     for k, v in series(path, name + '_bucket').items())
    total = buckets[-1][1]
    return next(b for b, n in buckets if n >= 0.99 * total)
def batches_in(o, d):
    return sum(series(p, 'ordership_relay_publish_seconds_count').get(f'service="{s}"', 0)
               for p, s in ((o, 'order'), (d, 'delivery')))
# The measured run's batches: the counters minus what the warm-up left in them.
batches = batches_in(sys.argv[5], sys.argv[6]) - batches_in(sys.argv[7], sys.argv[8])
sagas = report["settled_per_second"]
t = report["settle_latency_ms"]
print(f"sagas/s {sagas:.1f}; POST→terminal p50 {t['p50']:.1f} ms, p95 {t['p95']:.1f} ms, p99 {t['p99']:.1f} ms; outcomes {report['outcomes']}")
print(f"relay lag p50 / p99 (ms), from the outboxes: orders {sys.argv[3]}, delivery {sys.argv[4]}; "
      f"p99 bucket bound from /metrics: orders ≤ {1000 * p99(sys.argv[5], 'ordership_relay_lag_seconds'):g} ms, "
      f"delivery ≤ {1000 * p99(sys.argv[6], 'ordership_relay_lag_seconds'):g} ms")
n = report["orders"]
if "requests_per_order" in report:
    print(f"HTTP requests per saga {report['requests_per_order']:.2f} ({report['requests']} for {n} orders)")
print(f"relay batches {batches:.0f} for {n} sagas: {batches / n:.2f} relay commits per saga besides the 3 of its steps")
ticks = float(sys.argv[12])
spent = [(a - b) / ticks for a, b in zip(map(int, sys.argv[10].split()), map(int, sys.argv[9].split()))]
def seconds(text):
    m = re.match(r'(\d+)m([\d.]+)s', text)
    return int(m.group(1)) * 60 + float(m.group(2))
load_cpu = sum(seconds(t) for t in open(sys.argv[11]).read().splitlines()[-1].split())
per = lambda x: 1000 * x / n
parts = dict(zip(["order-service", "delivery-service", "postgresql", "broker"], spent), load=load_cpu)
print("CPU ms per saga: " + ", ".join(f"{k} {per(v):.2f}" for k, v in parts.items())
      + f"; all {per(sum(parts.values())):.2f}")
try:
    rows = [line.split('\t', 2) for line in open(sys.argv[13]).read().splitlines() if line]
except (IndexError, FileNotFoundError):
    rows = []
if rows:
    calls = sum(int(c) for c, _, _ in rows)
    exec_ms = sum(float(t) for _, t, _ in rows)
    print(f"statements per saga {calls / n:.2f}, their execution {exec_ms / n:.3f} ms per saga; the costliest:")
    for c, t, q in rows[:12]:
        print(f"  {int(c) / n:5.2f}/saga {float(t) / n:6.3f} ms/saga  {q[:110]}")
print(f"pgbench saga step {tps:.1f} TPS → ratio {sagas:.1f} / ({tps:.1f} / 3) = {sagas / (tps / 3):.2f}; "
      f"counting relay commits: {sagas:.1f} / ({tps:.1f} / {3 + batches / n:.2f}) = {sagas / (tps / (3 + batches / n)):.2f}")
PY
