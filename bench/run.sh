#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: the same scenarios against two banter instances, against two
# instances of the Node.js Socket.IO baseline (bench/baseline) and against two instances of bare
# socketioxide (bench/bare: published socketioxide and its Redis adapter relaying the same
# events, storing nothing), one after the other, on the same Postgres, Redis and machine, with the
# load generator (banter-load) on the same cores. The bare relay runs the idle and fan-out
# scenarios (it has no storage to flood). Then bench/heap.sh profiles banter's heap per idle
# socket on engineioxide as published and as patched (vendor/PATCHES.md).
#
# Writes bench/results/<server>-<scenario>.json and .png, then BENCHMARKS.md (bench/report.py).
# Takes about 42 minutes (15 of them the two heap profiles). Loopback only; every process it
# starts is stopped at the end.
#
# Settings: DATABASE_URL, REDIS_URL (as in scripts/dev.sh), IDLE_USERS (19500), HEAP=0 (keep the
# heap tables of the last bench/heap.sh runs), QUICK=1 (small numbers, for a smoke run;
# BENCHMARKS.md is then written to bench/results/BENCHMARKS.quick.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/lib.sh

results=bench/results
mkdir -p "$results"
quick=${QUICK:-0}
idle_users=${IDLE_USERS:-19500}
fanout_rates=(0.5 1 2 4 6)
fanout_users=1000 fanout_channels=10 seconds=10
flood_users=400 flood_channels=20 flood_inflight=8
storm_users=5000
if [ "$quick" = 1 ]; then
  idle_users=1000 fanout_rates=(1 2) fanout_users=100 seconds=3 flood_users=40 storm_users=200
fi
trap stop_started EXIT INT TERM

ensure_postgres
ensure_redis
ensure_node
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_install fonts-dejavu-core
admin_url=$DATABASE_URL
# One process may hold as many sockets as the hard limit on open files allows.
ulimit -n "$(ulimit -Hn)"

log "building banter and banter-load (release)"
cargo build --release --locked -p banter -p banter-load
log "building bare socketioxide (release)"
(cd bench/bare && CARGO_TARGET_DIR=../../target/bare cargo build --release --locked)
log "installing the baseline"
(cd bench/baseline && npm ci --no-audit --no-fund --loglevel=error)

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
fresh_db() {
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}

start_banter() {
  fresh_db bench_banter
  redis-cli -u "$REDIS_URL" --scan --pattern 'bench:*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
  for i in 0 1; do
    DATABASE_URL=$(database_url "$admin_url" bench_banter) REDIS_URL=$REDIS_URL REDIS_PREFIX=bench \
      JWT_SECRET=$secret BANTER_ADDR=127.0.0.1:$((4200 + i)) INSTANCE_ID=bench-$i \
      RATE_LIMIT_MESSAGES=100000000 RATE_LIMIT_WINDOW_SECS=1 RUST_LOG=warn \
      GUESTS_PER_ADDRESS_PER_HOUR=100000000 GUEST_MESSAGES_PER_ADDRESS=100000000000 \
      CHANNELS_PER_USER_PER_HOUR=100000000 MAX_SOCKETS_PER_USER=100000 \
      MAX_PENDING_SESSIONS_PER_ADDRESS=100000000 EVENT_BUDGET=0 EVENTS_IN_FLIGHT_PER_SOCKET=1024 \
      target/release/banter > "$results/banter-$i.log" 2>&1 &
    pids+=($!)
  done
  targets=127.0.0.1:4200,127.0.0.1:4201
  for port in 4200 4201; do wait_for "banter on :$port" curl -fs "http://127.0.0.1:$port/ready"; done
}

start_baseline() {
  fresh_db banter_baseline
  redis-cli -u "$REDIS_URL" --scan --pattern 'baseline*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
  for i in 0 1; do
    PORT=$((4101 + i)) DATABASE_URL=$(database_url "$admin_url" banter_baseline) REDIS_URL=$REDIS_URL \
      JWT_SECRET=$secret node bench/baseline/server.mjs > "$results/baseline-$i.log" 2>&1 &
    pids+=($!)
  done
  targets=127.0.0.1:4101,127.0.0.1:4102
  for port in 4101 4102; do wait_for "baseline on :$port" curl -fs "http://127.0.0.1:$port/health"; done
}

start_bare() {
  redis-cli -u "$REDIS_URL" --scan --pattern 'socket.io*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
  # socketioxide-redis's driver needs RESP3 (pub/sub pushes on the shared connection).
  local resp3=$REDIS_URL
  case $resp3 in *\?*) resp3="$resp3&protocol=resp3" ;; *) resp3="$resp3?protocol=resp3" ;; esac
  for i in 0 1; do
    BANTER_ADDR=127.0.0.1:$((4400 + i)) REDIS_URL=$resp3 target/bare/release/bare-socketioxide \
      > "$results/bare-$i.log" 2>&1 &
    pids+=($!)
  done
  targets=127.0.0.1:4400,127.0.0.1:4401
  for port in 4400 4401; do wait_for "bare socketioxide on :$port" curl -fs "http://127.0.0.1:$port/health"; done
}

load() { # load <server> <name> <scenario> [args...]
  local server=$1 name=$2; shift 2
  log "$server: $name"
  # Exit status 3 means the run completed but something was lost or refused: it is reported.
  local relay=()
  [ "$server" = bare ] && relay=(--relay-only)
  target/release/banter-load "$@" "${relay[@]}" --label "$server" --server-pids "$server_pids" \
    --out "$results/$server-$name.json" --chart "$results/$server-$name.png" || [ $? -eq 3 ]
}

run_all() { # run_all <server>
  local server=$1 first=${targets%%,*}
  run_idle_fanout "$server"
  server_pids=$(IFS=,; echo "${pids[*]}")
  load "$server" storm storm --targets "$targets" --users "$storm_users" --rounds 3 --duration 2 --sources 16 \
    --channel general
  load "$server" flood flood --targets "$targets" --users "$flood_users" --channels "$flood_channels" \
    --inflight "$flood_inflight" --duration "$seconds"
  # The write path alone: every user in a channel of its own, one delivery per message.
  load "$server" flood-write flood --targets "$targets" --users "$flood_users" --channels "$flood_users" \
    --inflight "$flood_inflight" --duration "$seconds"
  # Few senders, many sends each: 20 users keeping 8 in flight in 4 channels (where one channel's
  # batches queue behind each other's commits).
  load "$server" flood-few flood --targets "$targets" --users 20 --channels 4 \
    --inflight "$flood_inflight" --duration "$seconds"
  # The livestream case: every sender in one channel (each message delivered to all of them).
  load "$server" livestream flood --targets "$targets" --users "$flood_users" --channels 1 \
    --inflight 1 --duration "$seconds"
}

run_idle_fanout() { # run_idle_fanout <server>
  local server=$1 first=${targets%%,*}
  # idle: every socket on one instance, in one channel.
  server_pids=${pids[0]}
  load "$server" idle idle --targets "$first" --users "$idle_users" --procs 2 --sources 16 \
    --channel general --duration "$seconds"
  server_pids=$(IFS=,; echo "${pids[*]}")
  for rate in "${fanout_rates[@]}"; do
    load "$server" "fanout-$rate" fanout --targets "$targets" --users "$fanout_users" \
      --channels "$fanout_channels" --rate "$rate" --duration "$seconds"
  done
}

start_banter
run_all banter
stop_started
start_baseline
run_all baseline
stop_started
start_bare
run_idle_fanout bare
stop_started

# Latency at a fifth of banter's largest sustained fan-out rate, for both servers.
latency_rate=$(python3 bench/report.py --latency-rate "$results" "${fanout_rates[@]}")
start_banter
server_pids=$(IFS=,; echo "${pids[*]}")
load banter latency fanout --targets "$targets" --users "$fanout_users" --channels "$fanout_channels" \
  --rate "$latency_rate" --duration "$seconds"
stop_started
start_baseline
server_pids=$(IFS=,; echo "${pids[*]}")
load baseline latency fanout --targets "$targets" --users "$fanout_users" --channels "$fanout_channels" \
  --rate "$latency_rate" --duration "$seconds"
stop_started
start_bare
server_pids=$(IFS=,; echo "${pids[*]}")
load bare latency fanout --targets "$targets" --users "$fanout_users" --channels "$fanout_channels" \
  --rate "$latency_rate" --duration "$seconds"
stop_started

if [ "${HEAP:-1}" = 1 ] && [ "$quick" != 1 ]; then
  bench/heap.sh published
  bench/heap.sh patched
fi

out=BENCHMARKS.md
[ "$quick" = 1 ] && out=$results/BENCHMARKS.quick.md
python3 bench/report.py --write "$out" "$results" "${fanout_rates[@]}"
log "wrote $out"
