#!/usr/bin/env bash
# A soak: `ordership load --duration` against order-service + delivery-service over PostgreSQL and
# a dev broker (or KAFKA_BROKERS), and, minute by minute, sagas/s (and its share of the first
# minute's), POST→terminal p99, both services' resident memory, and the dead rows the outboxes
# hold (what a claim or the backlog figures would have to read past).
#   scripts/bench/soak.sh [minutes=30] [concurrency=8]
# RELAY_MODE=poll|cdc (poll). AUTOVACUUM=off|on sets PostgreSQL's autovacuum for the run (ALTER
# SYSTEM + reload; the setting found is put back at the end); unset: left as it is.
# WARMUP_MINUTES=N runs the same load for N minutes first, unmeasured: the dev broker (librdkafka's
# mock cluster) keeps each partition's log in memory up to a cap and finds fetch offsets by walking
# it, so it gets slower until its logs reach the cap (about 8 minutes at concurrency 8); a warm-up
# measures ordership from the broker's steady state instead.
# Besides, per minute, what can slow a minute down from outside ordership: the share of the
# machine's CPU time the hypervisor stole, the walsenders' CPU per saga (the CDC relay's decoding),
# the checkpoints PostgreSQL started, and the vacuums and analyzes of the run's tables (the
# services' own and autovacuum's). And two figures to tell the machine's swings from ordership's:
# a probe, the CPU milliseconds one fixed piece of work took that minute (more = a slower machine,
# whatever runs on it), and, when PostgreSQL preloads pg_stat_statements, its execution time per
# saga and the mean time per call of the statements that took most of it, minute by minute (a plan
# that changes after an analyze shows as one statement getting slower alone).
# ORDERSHIP_BIN measures another build. Needs PostgreSQL at PGHOST/PGUSER and a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-30}
concurrency=${2:-8}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
bin=${ORDERSHIP_BIN:-target/release/ordership}
[ -n "${ORDERSHIP_BIN:-}" ] || cargo build --release --quiet -p ordership
work=$(mktemp -d)
source scripts/bench/lib.sh
autovacuum_was=$(psql -At -d postgres -c "SHOW autovacuum")
finish() {
  stop_all
  psql -q -d postgres -c "ALTER SYSTEM SET autovacuum = $autovacuum_was" -c "SELECT pg_reload_conf()" >/dev/null
}
trap finish EXIT
if [ -n "${AUTOVACUUM:-}" ]; then
  psql -q -d postgres -c "ALTER SYSTEM SET autovacuum = $AUTOVACUUM" -c "SELECT pg_reload_conf()" >/dev/null
fi
fresh_bench_db ordership_soak
start_broker
start_services "postgres://$PGUSER@$PGHOST/ordership_soak"
echo "soak: $minutes min, concurrency $concurrency, relay ${RELAY_MODE:-poll}, autovacuum $(psql -At -d postgres -c 'SHOW autovacuum'), warm-up ${WARMUP_MINUTES:-0} min, $(git rev-parse --short HEAD)"
if [ "${WARMUP_MINUTES:-0}" -gt 0 ]; then
  "$bin" load --target http://127.0.0.1:18080 --duration "${WARMUP_MINUTES}m" \
    --concurrency "$concurrency" --json >"$work/warmup.json" 2>/dev/null
fi

# Once a minute: resident memory (KiB) of both services, dead rows in both outboxes, and the CPU
# ticks (user + system) spent so far by the order service, the delivery service, PostgreSQL's
# processes and the dev broker.
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"; }
# PostgreSQL: its live processes, plus what the ones that ended spent (the postmaster's reaped
# children), so backends that come and go do not make the figure jump.
postgres_ticks() {
  local postmaster
  postmaster=$(pgrep -o -x postgres)
  echo $(( $(cpu $(pgrep -x postgres)) + $(awk '{print $16 + $17}' "/proc/$postmaster/stat") ))
}
ticks() { echo "$(cpu "$order_pid") $(cpu "$delivery_pid") $(postgres_ticks) $(cpu $broker_pid)"; }
# All CPU ticks of the machine and the stolen ones; the walsenders' ticks; checkpoints so far.
machine() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat; }
walsenders() { cpu $(pgrep -f '^postgres: .*walsender'); }
checkpoints() { psql -At -d postgres -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }
vacuums() {
  psql -At -F ' ' -d ordership_soak -c "SELECT coalesce(sum(vacuum_count + autovacuum_count), 0), \
    coalesce(sum(analyze_count + autoanalyze_count), 0) FROM pg_stat_user_tables"
}
# The probe: CPU time (user + system, ms) of a fixed loop in a child process.
probe() { local t; t=$( { TIMEFORMAT='%3U %3S'; time python3 -c 'x = 0
for i in range(3000000): x += i * i' >/dev/null; } 2>&1 ); awk '{ printf "%d", 1000 * ($1 + $2) }' <<<"$t"; }
extra() { echo "$(machine) $(walsenders) $(checkpoints) $(vacuums) $(probe)"; }
statements=$(reset_statements)
# Every statement's calls and execution time so far in the soak's database, one line each.
snapshot() {
  [ "$statements" = t ] || return 0
  psql -At -F ' ' -d postgres -c "SELECT $1, s.queryid, s.calls, round(s.total_exec_time::numeric, 3)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'ordership_soak'" >>"$work/statements"
}
dead() {
  psql -At -d ordership_soak -c "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables \
    WHERE relname = 'outbox' AND schemaname IN ('orders', 'delivery')"
}
touch "$work/statements"
( echo "0 0 0 0 0 $(ticks)"
  echo "0 $(extra)" >>"$work/extra"
  snapshot 0
  for m in $(seq 1 "$minutes"); do
    sleep 60
    echo "$m $(rss "$order_pid") $(rss "$delivery_pid") $(rss "${broker_pid:-0}") $(dead) $(ticks)"
    echo "$m $(extra)" >>"$work/extra"
    snapshot "$m"
  done ) >"$work/minutes" &
sampler=$!
"$bin" load --target http://127.0.0.1:18080 --duration "${minutes}m" --report-every 60s \
  --concurrency "$concurrency" --json >"$work/load.json"
wait "$sampler" 2>/dev/null || true
if [ "$statements" = t ]; then
  psql -At -F $'\t' -d postgres -c "SELECT s.queryid, left(regexp_replace(s.query, '\s+', ' ', 'g'), 110)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'ordership_soak'" >"$work/queries"
fi
touch "$work/queries"

python3 - "$work/load.json" "$work/minutes" "$(getconf CLK_TCK)" "$work/extra" "$work/statements" "$work/queries" <<'PY'
import json, sys
from collections import defaultdict
report = json.load(open(sys.argv[1]))
def read(path):
    return {int(l.split()[0]): [int(x) for x in l.split()[1:]] for l in open(path) if l.strip()}
samples = read(sys.argv[2])
extra = read(sys.argv[4])
tick_ms = 1000 / int(sys.argv[3])
# Statements: minute -> queryid -> (calls, total execution ms so far).
statements = defaultdict(dict)
for line in open(sys.argv[5]):
    m, query, calls, total = line.split()
    statements[int(m)][query] = (int(calls), float(total))
queries = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[6]) if "\t" in l)
def spent(n, query=None):
    """Calls and execution ms in minute n, of one statement or all."""
    now, then = statements.get(n, {}), statements.get(n - 1, {})
    keys = [query] if query else now.keys()
    calls = sum(now.get(k, (0, 0))[0] - then.get(k, (0, 0))[0] for k in keys)
    ms = sum(now.get(k, (0, 0))[1] - then.get(k, (0, 0))[1] for k in keys)
    return calls, ms
intervals = report.get("intervals", [])
first = intervals[0]["settled_per_second"] if intervals else 0
print("minute  sagas/s  of first  p99 ms  RSS MiB: order delivery broker  outbox dead rows"
      "  CPU ms/saga: order delivery postgres broker  steal %  walsender ms/saga  checkpoints"
      "  vacuums analyzes  probe ms  statements ms/saga")
for n, i in enumerate(intervals, 1):
    o, d, b, dead, *ticks = samples.get(n) or [0] * 8
    before = samples.get(n - 1, [0] * 8)[4:]
    sagas = max(i["settled"], 1)
    cpu = "  ".join(f"{(a - b) * tick_ms / sagas:5.2f}" for a, b in zip(ticks, before))
    (total, stolen, walsender, checkpoints, vacuums, analyzes, probe), (
        total0, stolen0, walsender0, checkpoints0, vacuums0, analyzes0, _) = (
        extra.get(n, [0] * 7), extra.get(n - 1, [0] * 7))
    steal = 100 * (stolen - stolen0) / max(total - total0, 1)
    print(f"{n:6d}  {i['settled_per_second']:7.1f}  {(i['settled_per_second'] / first if first else 0):8.2f}"
          f"  {i['settle_latency_ms']['p99']:6.0f}  {o / 1024:14.1f} {d / 1024:8.1f} {b / 1024:6.1f}  {dead:>16}  {cpu}"
          f"  {steal:7.1f}  {(walsender - walsender0) * tick_ms / sagas:17.2f}  {checkpoints - checkpoints0:11d}"
          f"  {vacuums - vacuums0:7d}  {analyzes - analyzes0:8d}  {probe:8d}  {spent(n)[1] / sagas:18.2f}")
rates = [i["settled_per_second"] for i in intervals]
if rates:
    print(f"lowest minute {min(rates) / first:.2f} of the first; last {rates[-1] / first:.2f}; "
          f"whole run {report['settled_per_second']:.1f} sagas/s, outcomes {report['outcomes']}")
last = max(statements, default=0)
top = sorted(statements.get(last, {}), key=lambda q: -statements[last][q][1])[:8]
if top:
    print("\nmean ms per call, minute by minute, of the statements that took most execution time:")
    for k, q in enumerate(top, 1):
        print(f"  s{k}: {queries.get(q, q)}")
    print("minute  " + "  ".join(f"{'s' + str(k):>6}" for k in range(1, len(top) + 1)))
    for n in range(1, last + 1):
        means = [(ms / calls if calls else 0) for calls, ms in (spent(n, q) for q in top)]
        print(f"{n:6d}  " + "  ".join(f"{m:6.3f}" for m in means))
PY
