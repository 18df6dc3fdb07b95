#!/usr/bin/env bash
# What connection state recovery costs: the same banter build on two instances, with recovery
# off (RECOVERY_MAX_DISCONNECT_SECS=0: no pid, no offsets, no session records, no change log
# sweep) and on (120), in alternating rounds on fresh databases, with banter-load on the same
# cores:
#   - idle: IDLE_USERS (5,000) sockets on one instance: RSS per socket;
#   - fan-out: 1,000 users in 10 channels sending 2 messages/s each for 10 s (~200,000
#     deliveries/s): banter's CPU per delivery, end-to-end latency;
#   - mixed: 500 users in channels of 25, 1 operation/s each for 20 s (sends, edits, reactions,
#     read markers): Postgres's CPU per operation (a change now also writes the change log).
# ROUNDS (default 2) rounds of off then on. Writes bench/results/recovery-<mode>-<round>-*.json
# and bench/results/recovery.md (medians over the rounds). Loopback only; every process it
# starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/lib.sh

results=bench/results
mkdir -p "$results"
rounds=${ROUNDS:-2}
idle_users=${IDLE_USERS:-5000}
trap stop_started EXIT INT TERM

ensure_postgres
ensure_redis
admin_url=$DATABASE_URL
ulimit -n "$(ulimit -Hn)"
log "building banter and banter-load (release)"
cargo build --release --locked -p banter -p banter-load
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

start_pair() { # start_pair <window secs>
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS bench_recovery WITH (FORCE)" -c "CREATE DATABASE bench_recovery"
  redis-cli -u "$REDIS_URL" --scan --pattern '*recbench*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
  targets=()
  for i in 0 1; do
    port=$((4750 + i))
    RECOVERY_MAX_DISCONNECT_SECS=$1 start_bench_banter "$(database_url "$admin_url" bench_recovery)" \
      recbench "$port" "rec-$i" "$results/recovery-banter-$i.log"
    pids+=($!)
    targets+=("127.0.0.1:$port")
  done
  for t in "${targets[@]}"; do wait_for "banter on $t" curl -fs "http://$t/ready"; done
}

rm -f "$results/recovery.tsv"
for round in $(seq 1 "$rounds"); do
  for mode in off on; do
    window=0
    [ "$mode" = on ] && window=120
    out="$results/recovery-$mode-$round"
    start_pair "$window"
    log "round $round, recovery $mode: idle ($idle_users sockets)"
    target/release/banter-load idle --targets "${targets[0]}" --users "$idle_users" --procs 2 \
      --sources 16 --channel general --duration 5 --server-pids "${pids[0]}" \
      --label "recovery $mode" --out "$out-idle.json" || [ $? -eq 3 ]
    log "round $round, recovery $mode: fan-out"
    target/release/banter-load fanout --targets "$(IFS=,; echo "${targets[*]}")" --users 1000 \
      --channels 10 --rate 2 --duration 10 --server-pids "$(IFS=,; echo "${pids[*]}")" \
      --label "recovery $mode" --out "$out-fanout.json" || [ $? -eq 3 ]
    stop_started
    start_pair "$window"
    log "round $round, recovery $mode: mixed"
    pg0=$(postgres_cpu)
    target/release/banter-load mixed --targets "$(IFS=,; echo "${targets[*]}")" --users 500 \
      --channels 20 --rate 1 --duration 20 --drain 2 --server-pids "$(IFS=,; echo "${pids[*]}")" \
      --label "recovery $mode" --out "$out-mixed.json" || [ $? -eq 3 ]
    pg1=$(postgres_cpu)
    printf '%s\t%s\t%s\n' "$mode" "$round" "$(python3 -c "print($pg1 - $pg0)")" >> "$results/recovery.tsv"
    stop_started
  done
done
rm -rf target/bench-uploads

python3 - "$results" "$rounds" <<'PY'
import json, statistics, sys
results, rounds = sys.argv[1], int(sys.argv[2])
pg = {}
for line in open(f"{results}/recovery.tsv"):
    mode, rnd, cpu = line.split()
    pg[(mode, int(rnd))] = float(cpu)

def report(mode, rnd, name):
    with open(f"{results}/recovery-{mode}-{rnd}-{name}.json") as f:
        return json.load(f)

rows = {}
for mode in ("off", "on"):
    idle, cpu_per_delivery, p50, p99, lost, pg_per_op = [], [], [], [], [], []
    for rnd in range(1, rounds + 1):
        i = report(mode, rnd, "idle")
        idle.append(i["rss_per_connection_kib"])
        f = report(mode, rnd, "fanout")
        cpu = sum(s["cpu_pct"] for s in f["servers"]) / 100.0
        cpu_per_delivery.append(cpu / f["deliveries_per_s"] * 1e6)
        p50.append(f["e2e"]["p50_ms"])
        p99.append(f["e2e"]["p99_ms"])
        lost.append(f["lost"])
        m = report(mode, rnd, "mixed")
        ops = m["counters"].get("acked", 0) or 1
        pg_per_op.append(pg[(mode, rnd)] / ops * 1e6)
    rows[mode] = {
        "rss_per_socket_kib": statistics.median(idle),
        "cpu_us_per_delivery": statistics.median(cpu_per_delivery),
        "e2e_p50_ms": statistics.median(p50),
        "e2e_p99_ms": statistics.median(p99),
        "lost": sum(lost),
        "pg_cpu_us_per_op": statistics.median(pg_per_op),
    }
lines = [
    "# What connection state recovery costs (bench/recovery.sh)",
    "",
    f"Medians of {rounds} alternating rounds, same build, recovery off (`RECOVERY_MAX_DISCONNECT_SECS=0`) and on (120).",
    "",
    "| | RSS per idle socket (KiB) | banter CPU per delivery (µs) | fan-out p50 / p99 (ms) | lost | Postgres CPU per mixed operation (µs) |",
    "|---|---|---|---|---|---|",
]
for mode in ("off", "on"):
    r = rows[mode]
    lines.append(
        f"| recovery {mode} | {r['rss_per_socket_kib']:.2f} | {r['cpu_us_per_delivery']:.3f} | "
        f"{r['e2e_p50_ms']:.1f} / {r['e2e_p99_ms']:.1f} | {r['lost']} | {r['pg_cpu_us_per_op']:.0f} |"
    )
open(f"{results}/recovery.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
