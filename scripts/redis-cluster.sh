#!/usr/bin/env bash
# A local Redis Cluster of 3 masters and 3 replicas, for tests: six `redis-server
# --cluster-enabled yes` on free ports in a directory of their own, nothing kept on disk.
#
#   scripts/redis-cluster.sh start DIR         prints the nodes, comma-separated (host:port)
#   scripts/redis-cluster.sh restart DIR PORT  starts a node again that was stopped or killed
#                                             (it rejoins, as a replica after a failover)
#   scripts/redis-cluster.sh stop DIR
# With REDIS_CLUSTER_TLS_DIR (what scripts/tls.sh makes), the nodes speak TLS only: to clients,
# to each other on the cluster bus and for replication, with the CA's server and client
# certificates.
set -euo pipefail
action=$1
dir=$2
tls=()
cli_tls=()
if [ -n "${REDIS_CLUSTER_TLS_DIR:-}" ]; then
  t=$REDIS_CLUSTER_TLS_DIR
  tls=(--tls-cluster yes --tls-replication yes --tls-auth-clients optional
    --tls-cert-file "$t/server.pem" --tls-key-file "$t/server-key.pem" --tls-ca-cert-file "$t/ca.pem"
    --tls-client-cert-file "$t/client.pem" --tls-client-key-file "$t/client-key.pem")
  cli_tls=(--tls --cacert "$t/ca.pem")
fi
# redis-cli on a node, over TLS when the nodes speak it.
cli() { local p=$1; shift; redis-cli "${cli_tls[@]}" -h 127.0.0.1 -p "$p" "$@"; }
# One node on port $1, its files in $dir. A replica syncs at once (no diskless-sync delay), so a
# node started again after a failover is a replica within moments.
launch() {
  local p=$1 listen
  if [ "${#tls[@]}" -gt 0 ]; then listen=(--port 0 --tls-port "$p" "${tls[@]}"); else listen=(--port "$p"); fi
  redis-server "${listen[@]}" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$dir/nodes-$p.conf" --cluster-node-timeout 2000 \
    --repl-diskless-sync-delay 0 \
    --dir "$dir" --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis-$p.pid" --logfile "$dir/redis-$p.log"
}
case "$action" in
  start)
    mkdir -p "$dir"
    port=${REDIS_CLUSTER_BASE_PORT:-17000}
    ports=()
    while [ "${#ports[@]}" -lt 6 ]; do
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
        && ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
        ports+=("$port")
      fi
      port=$((port + 1))
    done
    for p in "${ports[@]}"; do launch "$p"; done
    for p in "${ports[@]}"; do
      for _ in $(seq 1 50); do cli "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    nodes=$(printf '127.0.0.1:%s ' "${ports[@]}")
    # shellcheck disable=SC2086
    redis-cli "${cli_tls[@]}" --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
      || { cat "$dir/create.log" >&2; exit 1; }
    for p in "${ports[@]}"; do
      for _ in $(seq 1 100); do
        cli "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
        sleep 0.1
      done
    done
    # Ready means replicated: a replica still waiting for its first sync (Redis delays a
    # diskless sync by 5 s) would take over an empty data set in a failover.
    for p in "${ports[@]}"; do
      cli "$p" info replication | grep -q '^role:slave' || continue
      for _ in $(seq 1 300); do
        cli "$p" info replication | grep -q '^master_link_status:up' && break
        sleep 0.1
      done
      cli "$p" info replication | grep -q '^master_link_status:up' \
        || { echo "replica on port $p did not sync with its master" >&2; exit 1; }
    done
    echo "$nodes" | xargs | tr ' ' ','
    ;;
  restart)
    p=$3
    launch "$p"
    for _ in $(seq 1 50); do cli "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
    ;;
  stop)
    # Wait for each server to be gone before removing the directory: a server that is shutting
    # down still writes its files there.
    pids=()
    for pidfile in "$dir"/redis-*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null && pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir" 2>/dev/null || { sleep 0.5; rm -rf "$dir"; }
    ;;
  *) echo "usage: $0 start|restart|stop DIR [PORT]" >&2; exit 2 ;;
esac
