#!/usr/bin/env bash
# A loopback Redis Cluster for tests: three masters and three replicas on free ports, from
# `redis-server --cluster-enabled yes` and `redis-cli --cluster create`.
#
#   scripts/redis-cluster.sh start DIR   starts one in DIR (created) and prints its node URLs,
#                                        comma-separated, once every slot is served and every
#                                        replica is in sync
#   scripts/redis-cluster.sh stop DIR    stops every node started in DIR and removes DIR
#   scripts/redis-cluster.sh restart DIR PORT
#                                        starts the node on PORT again (after a kill) from its
#                                        nodes.conf: it rejoins the cluster, as a replica when its
#                                        slots were failed over meanwhile
#
# Node N keeps its files in DIR/<port>/ (redis.pid, redis.log, nodes.conf). A failed master is
# replaced by its replica after the node timeout (2 s).
set -euo pipefail
cmd=${1:?start or stop} dir=${2:?a directory}

stop() {
  for pidfile in "$dir"/*/redis.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
}

start_node() {
  local port=$1
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout 2000 \
    --save '' --appendonly no --dir "$dir/$port" --daemonize yes \
    --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
}

case $cmd in
restart)
  port=${3:?a port}
  [ -f "$dir/$port/nodes.conf" ] || { echo "redis-cluster.sh: no node on $port in $dir" >&2; exit 1; }
  start_node "$port"
  ;;
start)
  mkdir -p "$dir"
  # Each node also listens on its port + 10000 (the cluster bus), so ports come from below
  # the ephemeral range, both free.
  ports=$(python3 -c 'import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
ports = []
while len(ports) < 6:
    p = random.randint(20000, 29999)
    if p not in ports and free(p) and free(p + 10000):
        ports.append(p)
print(" ".join(map(str, ports)))')
  for port in $ports; do
    start_node "$port"
  done
  nodes=""
  for port in $ports; do
    for _ in $(seq 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    nodes="$nodes 127.0.0.1:$port"
  done
  # shellcheck disable=SC2086 # one argument per node
  if ! redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1; then
    cat "$dir/create.log" >&2
    stop
    exit 1
  fi
  # Ready when every node sees every slot served and every replica has synced.
  for _ in $(seq 300); do
    ready=1
    for port in $ports; do
      redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || ready=0
      if redis-cli -p "$port" info replication | grep -q 'role:slave'; then
        redis-cli -p "$port" info replication | grep -q 'master_link_status:up' || ready=0
      fi
    done
    [ "$ready" = 1 ] && break
    sleep 0.1
  done
  if [ "$ready" != 1 ]; then
    echo "redis-cluster.sh: the cluster did not become ready" >&2
    stop
    exit 1
  fi
  echo "$ports" | tr ' ' '\n' | sed 's|^|redis://127.0.0.1:|' | paste -sd, -
  ;;
stop)
  stop
  ;;
*)
  echo "usage: $0 start|stop DIR, or $0 restart DIR PORT" >&2
  exit 2
  ;;
esac
