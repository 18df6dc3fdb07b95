#!/usr/bin/env bash
# What conversations cost: the same users, channels and operation rate on two banter instances,
# once with sends only (banter-load fanout) and once mixed (banter-load mixed: 50% sends, 15%
# edits of one's own messages, 25% reactions added or taken back, 10% read markers), each on a
# fresh database. Measured over the operating window: banter's CPU (both instances), Postgres's
# CPU (all its processes) and Redis's CPU, per operation; each operation's ack latency; events
# delivered.
#
# USERS (default 500) in channels of 25, RATE operations per user per second (default 1), for
# SECONDS (default 20). Writes bench/results/mixed-{sends,mixed}.json (banter-load's reports)
# and bench/results/mixed.md. Loopback only; every process it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/lib.sh

results=bench/results
mkdir -p "$results"
users=${USERS:-500}
rate=${RATE:-1}
seconds=${SECONDS_PER_RUN:-20}
channels=$((users / 25))
trap stop_started EXIT INT TERM

ensure_postgres
ensure_redis
admin_url=$DATABASE_URL
ulimit -n "$(ulimit -Hn)"
log "building banter and banter-load (release)"
cargo build --release --locked -p banter -p banter-load
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

rm -f "$results/mixed.tsv"
for run in sends mixed; do
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS bench_mixed WITH (FORCE)" -c "CREATE DATABASE bench_mixed"
  redis-cli -u "$REDIS_URL" --scan --pattern '*mixbench*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
  targets=()
  for i in 0 1; do
    port=$((4700 + i))
    start_bench_banter "$(database_url "$admin_url" bench_mixed)" mixbench "$port" "mix-$i" \
      "$results/mixed-banter-$i.log"
    pids+=($!)
    targets+=("127.0.0.1:$port")
  done
  for t in "${targets[@]}"; do wait_for "banter on $t" curl -fs "http://$t/ready"; done
  scenario=fanout
  [ "$run" = mixed ] && scenario=mixed
  log "$run: $users users in $channels channels of 25, $rate operations/s each, $seconds s"
  pg0=$(postgres_cpu) redis0=$(node_cpu "$REDIS_URL")
  target/release/banter-load "$scenario" --targets "$(IFS=,; echo "${targets[*]}")" \
    --users "$users" --channels "$channels" --rate "$rate" --duration "$seconds" --drain 2 \
    --server-pids "$(IFS=,; echo "${pids[*]}")" --label "banter $run" \
    --out "$results/mixed-$run.json" || [ $? -eq 3 ]
  pg1=$(postgres_cpu) redis1=$(node_cpu "$REDIS_URL")
  printf '%s\t%s\t%s\n' "$run" "$(python3 -c "print($pg1 - $pg0)")" \
    "$(python3 -c "print($redis1 - $redis0)")" >> "$results/mixed.tsv"
  stop_started
done
rm -rf target/bench-uploads

python3 bench/mixed.py "$results" "$users" "$rate" "$seconds"
