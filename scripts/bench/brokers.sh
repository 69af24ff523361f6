#!/usr/bin/env bash
# The relay drain and the two-service benchmark on librdkafka's mock cluster and on Tansu (a real
# Kafka-protocol broker, the build scripts/test.sh makes), in one run on one machine, alternating:
# mock, Tansu, mock, Tansu, ... Each broker is fresh for each benchmark (a Tansu on SQLite in a
# directory of its own); the services run with their default settings on both.
#   scripts/bench/brokers.sh [rows=20000] [orders=2000] [rounds=2]
# Prints every figure, then the medians side by side with the ratio Tansu / mock. (The broker's
# CPU per saga is only counted for the mock, which two_services.sh starts itself.)
# TANSU names the Tansu binary (default: where scripts/test.sh puts it). Needs what
# relay_drain.sh and two_services.sh need (PostgreSQL with wal_level=logical, pgbench,
# pg_recvlogical) and makes a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${1:-20000}
orders=${2:-2000}
rounds=${3:-2}
tansu=${TANSU:-$HOME/.cargo/ordership-tools/tansu-0.6.0/tansu}
[ -x "$tansu" ] || { echo "no Tansu at $tansu (scripts/test.sh builds it; TANSU names another)" >&2; exit 1; }
cargo build --release --quiet -p ordership
export ORDERSHIP_BIN=$PWD/target/release/ordership
work=$(mktemp -d)
tansu_pid=
cleanup() { [ -z "$tansu_pid" ] || kill "$tansu_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }

# Runs "$@" with KAFKA_BROKERS on a fresh Tansu, or unset (the scripts then start a mock cluster).
on() {
  local broker=$1
  shift
  if [ "$broker" = mock ]; then
    env -u KAFKA_BROKERS "$@"
    return
  fi
  local dir port
  dir=$(mktemp -d -p "$work") port=$(free_port 19500)
  (cd "$dir" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://tansu.db) \
    >"$dir/broker.log" 2>&1 &
  tansu_pid=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$tansu_pid" 2>/dev/null || { cat "$dir/broker.log" >&2; exit 1; }
    sleep 0.1
  done
  KAFKA_BROKERS=127.0.0.1:$port "$@"
  kill "$tansu_pid"
  wait "$tansu_pid" 2>/dev/null || true
  tansu_pid=
}

for round in $(seq 1 "$rounds"); do
  for broker in mock tansu; do
    echo "== round $round of $rounds, $broker" >&2
    on "$broker" env RUNS=1 STEADY=0 scripts/bench/relay_drain.sh "$rows" | tee -a "$work/$broker.drain"
    on "$broker" env WARMUP=200 scripts/bench/two_services.sh "$orders" 32 | tee -a "$work/$broker.sagas"
  done
done

# The medians of every round's figure, per broker.
median() { sort -n | awk '{ v[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
figure() {
  case $2 in
    broker) awk '/limit  broker/ { print $4 }' "$work/$1.drain" ;;
    poll | cdc) awk -v m="$2" '$1 == "relay" && $2 == m { print $3 }' "$work/$1.drain" ;;
    sagas) awk '/^sagas\/s/ { sub(";", "", $2); print $2 }' "$work/$1.sagas" ;;
    p99) sed -nE 's/.*p99 ([0-9.]+) ms; outcomes.*/\1/p' "$work/$1.sagas" ;;
  esac | median
}
printf '\nmedians of %s rounds (%s rows drained, %s orders), same run: mock | Tansu | Tansu / mock\n' \
  "$rounds" "$rows" "$orders"
for what in "broker events/s:broker" "poll relay events/s:poll" "cdc relay events/s:cdc" \
  "two services sagas/s:sagas" "POST→terminal p99 ms:p99"; do
  label=${what%%:*} key=${what##*:}
  m=$(figure mock "$key") t=$(figure tansu "$key")
  printf '  %-26s %10s | %10s | %s\n' "$label" "$m" "$t" \
    "$(awk -v a="$t" -v b="$m" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }')"
done
