#!/usr/bin/env bash
# Per-instance costs as instances are added: the same load per instance on 1, 2 and 4 banter
# instances (one Postgres, one Redis, all on this machine), measuring what each tier spends per
# unit of work. Feeds docs/SCALING.md.
#
# Each instance carries USERS_PER_INSTANCE users (default 250) in channels of 25 (so a message
# has 25 recipients whatever the cluster size), each user sending RATE messages a second
# (default 0.5), for SECONDS (default 20). Measured over the sending window:
#   - banter: CPU per delivered message.new, and per stored message, per instance (banter-load's
#     --server-pids);
#   - Postgres: CPU of all its processes per persisted message (/proc, utime + stime);
#   - Redis: CPU per published message (INFO cpu), which grows with the subscribing instances
#     (every instance receives every publication on one Redis).
# Writes bench/results/scaling-<n>.json (banter-load's report) and bench/results/scaling.md.
#
# REDIS_CLUSTER=1 runs the same on a loopback Redis Cluster (three masters, three replicas,
# scripts/redis-cluster.sh; a fresh one per size) instead of one Redis: Redis CPU is then
# summed over every node, and the masters' shares are reported too (how evenly the work
# spreads). Its reports are bench/results/scaling-cluster-<n>.json and scaling-cluster.md.
# Loopback only; every process it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/lib.sh

results=bench/results
mkdir -p "$results"
per_instance=${USERS_PER_INSTANCE:-250}
rate=${RATE:-0.5}
seconds=${SECONDS_PER_RUN:-20}
sizes=(${SIZES:-1 2 4})
cluster=${REDIS_CLUSTER:-0}
name=scaling
[ "$cluster" = 1 ] && name=scaling-cluster
cluster_dir=""
cleanup() {
  stop_started
  if [ -n "$cluster_dir" ]; then scripts/redis-cluster.sh stop "$cluster_dir"; cluster_dir=""; fi
}
trap cleanup EXIT INT TERM

ensure_postgres
ensure_redis
admin_url=$DATABASE_URL
ulimit -n "$(ulimit -Hn)"
log "building banter and banter-load (release)"
cargo build --release --locked -p banter -p banter-load
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# Redis CPU seconds: of the one server, or of every cluster node (then also each master's, as
# "total master1 master2 ...").
redis_cpu() {
  if [ "$cluster" != 1 ]; then
    node_cpu "$REDIS_URL"
    return
  fi
  local total=0 masters="" url cpu
  for url in ${nodes//,/ }; do
    cpu=$(node_cpu "$url")
    total=$(python3 -c "print($total + $cpu)")
    if redis-cli -u "$url" INFO replication | grep -q '^role:master'; then masters="$masters $cpu"; fi
  done
  echo "$total$masters"
}

rm -f "$results/$name.tsv"
for n in "${sizes[@]}"; do
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS bench_scaling WITH (FORCE)" -c "CREATE DATABASE bench_scaling"
  nodes=""
  if [ "$cluster" = 1 ]; then
    cluster_dir=$(mktemp -d /tmp/banter-scaling-cluster.XXXXXX)
    nodes=$(scripts/redis-cluster.sh start "$cluster_dir")
  else
    redis-cli -u "$REDIS_URL" --scan --pattern '*scale*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
  fi
  targets=()
  for ((i = 0; i < n; i++)); do
    port=$((4600 + i))
    start_bench_banter "$(database_url "$admin_url" bench_scaling)" scale "$port" "scale-$i" \
      "$results/scaling-banter-$i.log" "$nodes"
    pids+=($!)
    targets+=("127.0.0.1:$port")
  done
  for t in "${targets[@]}"; do wait_for "banter on $t" curl -fs "http://$t/ready"; done
  users=$((per_instance * n))
  channels=$((users / 25))
  log "$n instance(s): $users users in $channels channels of 25, $rate msg/s each, $seconds s"
  pg0=$(postgres_cpu) redis0=$(redis_cpu)
  target/release/banter-load fanout --targets "$(IFS=,; echo "${targets[*]}")" --users "$users" \
    --channels "$channels" --rate "$rate" --duration "$seconds" --drain 2 \
    --server-pids "$(IFS=,; echo "${pids[*]}")" --label "banter x$n" \
    --out "$results/$name-$n.json" || [ $? -eq 3 ]
  pg1=$(postgres_cpu) redis1=$(redis_cpu)
  # n, Postgres CPU, Redis CPU (then each master's, on a cluster)
  python3 -c "import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); print('\t'.join(['$n', str($pg1 - $pg0)] + [str(float(y) - float(x)) for x, y in zip(a, b)]))" \
    "$redis0" "$redis1" >> "$results/$name.tsv"
  cleanup
done
rm -rf target/bench-uploads

python3 - "$results" "$seconds" "$name" <<'PY'
import json, sys
results, seconds, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = []
for line in open(f"{results}/{name}.tsv"):
    n, pg, redis, *masters = line.split()
    d = json.load(open(f"{results}/{name}-{n}.json"))
    window = d["duration_s"] + 2  # the drain is inside the CPU window of the tiers
    per_instance_cpu = [s["cpu_pct"] for s in d["servers"]]
    deliveries = d["deliveries_per_s"] * d["duration_s"]
    persisted = d["persisted"]
    n = int(n)
    cpu_s = sum(per_instance_cpu) / 100 * d["duration_s"]
    rows.append({
        "instances": n,
        "users": d["users"],
        "persisted_per_s": d["acked_per_s"],
        "deliveries_per_s": d["deliveries_per_s"],
        "lost": d["lost"],
        "cpu_pct_per_instance": sum(per_instance_cpu) / n,
        "us_per_delivery": cpu_s / deliveries * 1e6 if deliveries else 0,
        "pg_us_per_message": float(pg) / persisted * 1e6 if persisted else 0,
        "redis_us_per_message": float(redis) / persisted * 1e6 if persisted else 0,
        "redis_us_per_message_per_instance": float(redis) / persisted / n * 1e6 if persisted else 0,
        "masters": " / ".join(f"{float(m) / float(redis) * 100:.0f}" for m in masters) if masters and float(redis) > 0 else "-",
        "e2e_p50_ms": d["e2e"].get("p50_ms") if isinstance(d.get("e2e"), dict) else None,
        "e2e_p99_ms": d["e2e"].get("p99_ms") if isinstance(d.get("e2e"), dict) else None,
    })
with open(f"{results}/{name}.md", "w") as out:
    out.write("| instances | users | stored msg/s | deliveries/s | lost | banter CPU % per instance | banter CPU µs per delivery | Postgres CPU µs per stored message | Redis CPU µs per message | Redis CPU µs per message per instance | masters' shares of Redis CPU % | e2e p50 / p99 ms |\n")
    out.write("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        out.write(f"| {r['instances']} | {r['users']} | {r['persisted_per_s']:.0f} | {r['deliveries_per_s']:.0f} | {r['lost']} | {r['cpu_pct_per_instance']:.1f} | {r['us_per_delivery']:.1f} | {r['pg_us_per_message']:.0f} | {r['redis_us_per_message']:.1f} | {r['redis_us_per_message_per_instance']:.1f} | {r['masters']} | {r['e2e_p50_ms']} / {r['e2e_p99_ms']} |\n")
print(open(f"{results}/{name}.md").read())
PY
