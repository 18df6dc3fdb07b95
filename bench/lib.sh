# Shell functions the benchmark scripts share (sourced after scripts/lib.sh).

# The background processes a benchmark starts (`pids+=($!)` after each); `stop_started` ends
# them all (TERM, then waits for each), from the script's exit trap or between runs.
pids=()
stop_started() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# PIN=1 (bench/ab.sh): banter on the first half of the cores, Postgres, Redis and the load
# generator on the other half, so that banter's own latency is measured apart from the cores it
# otherwise shares with them. `pin_services` moves the running Postgres and Redis servers (every
# thread; new Postgres backends inherit it from the postmaster), `unpin_services` gives them every
# core again; banter and the generator are started under `"${banter_pin[@]}"` and
# `"${others_pin[@]}"` (empty unless PIN=1).
banter_pin=() others_pin=()
if [ "${PIN:-0}" = 1 ]; then
  ncores=$(nproc)
  if [ "$ncores" -lt 2 ]; then
    echo "PIN=1 needs at least two cores" >&2
    exit 1
  fi
  banter_pin=(taskset -c "0-$((ncores / 2 - 1))")
  others_pin=(taskset -c "$((ncores / 2))-$((ncores - 1))")
fi
pin_services() {
  [ "${PIN:-0}" = 1 ] || return 0
  for pid in $(pgrep -x postgres) $(pgrep -x redis-server); do
    taskset -a -p -c "${others_pin[2]}" "$pid" >/dev/null
  done
}
unpin_services() {
  [ "${PIN:-0}" = 1 ] || return 0
  for pid in $(pgrep -x postgres) $(pgrep -x redis-server); do
    taskset -a -p -c "0-$(($(nproc) - 1))" "$pid" >/dev/null 2>&1 || true
  done
}

# CPU seconds (user + system) of every process whose command is postgres.
postgres_cpu() {
  python3 - <<'PY'
import os
hz = os.sysconf("SC_CLK_TCK")
total = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        continue
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    if name.startswith("postgres"):
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
print(total / hz)
PY
}
node_cpu() { # node_cpu <redis url>: CPU seconds of one Redis server
  redis-cli -u "$1" INFO cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.4f\n", s}'
}

# start_bench_banter <database url> <redis prefix> <port> <instance id> <log> [cluster nodes]:
# starts target/release/banter (or $BANTER_BIN) in the background (its pid is then in $!) with every rate limit
# and cap lifted, so that the load generator measures the server, not its limits.
start_bench_banter() {
  DATABASE_URL=$1 REDIS_URL=$REDIS_URL REDIS_CLUSTER_NODES=${6:-} REDIS_PREFIX=$2 \
    JWT_SECRET=$secret BANTER_ADDR=127.0.0.1:$3 INSTANCE_ID=$4 RUST_LOG=warn \
    RATE_LIMIT_MESSAGES=100000000 RATE_LIMIT_WINDOW_SECS=1 \
    GUESTS_PER_ADDRESS_PER_HOUR=100000000 GUEST_MESSAGES_PER_ADDRESS=100000000000 \
    MAX_PENDING_SESSIONS_PER_ADDRESS=100000000 CHANNELS_PER_USER_PER_HOUR=100000000 \
    MAX_SOCKETS_PER_USER=100000 EVENT_BUDGET=0 EVENTS_IN_FLIGHT_PER_SOCKET=1024 \
    STORAGE_URL=target/bench-uploads \
    "${banter_pin[@]}" "${BANTER_BIN:-target/release/banter}" > "$5" 2>&1 &
}
