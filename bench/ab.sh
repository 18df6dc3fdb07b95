#!/usr/bin/env bash
# Two banter builds under the same load, alternated: for a dependency upgrade or a patch, what
# changes in the write path. Each round starts two instances of one build on a fresh database,
# drives them with `banter-load fanout` (or `flood`), and reads the mean group-commit time and
# batch size from the instances' `banter_commit_seconds` and `banter_commit_batch_size`, and the CPU
# Postgres spent per stored message: while the load was sent (banter-load --postgres-cpu), and
# over the whole run (the users' sign-ins and joins included: at light load most of it is theirs); the builds take turns (A, B, A, B, ...).
#
#   bench/ab.sh BIN_A BIN_B [rounds]        (rounds per build, default 2)
#
# BIN_A and BIN_B are banter binaries (release builds; for an older commit:
# `git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build --release -p banter)`).
# Settings: MODE (fanout or flood), USERS (1000), CHANNELS (10), SECONDS_PER_RUN (10);
# fanout: RATES (deliveries per second, "10000 40000"); flood: INFLIGHT (sends in flight per
# user, "8"; several values are run one after the other); PIN=1: banter on half the cores,
# Postgres, Redis and the generator on the other half (bench/lib.sh). Prints one line per run and
# writes bench/results/ab-<date>.md.
# Loopback only; every process it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/lib.sh

bin_a=${1:?usage: bench/ab.sh BIN_A BIN_B [rounds]}
bin_b=${2:?usage: bench/ab.sh BIN_A BIN_B [rounds]}
rounds=${3:-2}
users=${USERS:-1000}
channels=${CHANNELS:-10}
mode=${MODE:-fanout}
rates=${RATES:-10000 40000}
[ "$mode" = flood ] && rates=${INFLIGHT:-8}
seconds=${SECONDS_PER_RUN:-10}
results=bench/results
mkdir -p "$results"
trap 'stop_started; unpin_services' EXIT INT TERM

ensure_postgres
ensure_redis
admin_url=$DATABASE_URL
ulimit -n "$(ulimit -Hn)"
pin_services
cargo build --release --locked -p banter-load
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
report="$results/ab-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# A/B: two banter builds under banter-load $mode ($(date -u +%Y-%m-%d))"
  echo
  pinned=""
  [ "${PIN:-0}" = 1 ] && pinned=" banter pinned to cores ${banter_pin[2]}, Postgres, Redis and the generator to ${others_pin[2]}."
  echo "A: \`$bin_a\`; B: \`$bin_b\`. $mode: $users users in $channels channels, $seconds s per run, the builds alternated.$pinned"
  echo
  first=deliveries/s
  [ "$mode" = flood ] && first="in flight per user"
  echo "| $first | build | acked msgs/s | group commit, ms (mean) | batch (mean) | Postgres CPU per message while sending / whole run, µs | end-to-end p50, ms | end-to-end p99, ms | lost / refused |"
  echo "|---|---|---|---|---|---|---|---|---|"
} >"$report"

commit_stats() { # "<mean commit ms> <mean batch size>" over the instances
  python3 - "$@" <<'PY'
import sys, urllib.request
sums = {}
for target in sys.argv[1:]:
    for line in urllib.request.urlopen(f"http://{target}/metrics", timeout=5).read().decode().splitlines():
        for series in ("banter_commit_seconds_sum", "banter_commit_seconds_count", "banter_commit_batch_size_sum", "banter_commit_batch_size_count"):
            if line.startswith(series + " "):
                sums[series] = sums.get(series, 0.0) + float(line.split()[-1])
def mean(name, scale):
    count = sums.get(name + "_count", 0)
    return f"{scale * sums[name + '_sum'] / count:.2f}" if count else "-"
print(mean("banter_commit_seconds", 1000), mean("banter_commit_batch_size", 1))
PY
}

for rate in $rates; do
  # banter-load's --rate is messages per user per second; each is delivered to a channel's
  # users.
  per_user=$(python3 -c "print($rate / ($users / $channels) / $users)")
  load_args=(fanout --rate "$per_user")
  [ "$mode" = flood ] && load_args=(flood --inflight "$rate")
  for round in $(seq "$rounds"); do
    for build in A B; do
      bin=$bin_a
      [ "$build" = B ] && bin=$bin_b
      psql "$admin_url" -qc "DROP DATABASE IF EXISTS bench_ab WITH (FORCE)" -c "CREATE DATABASE bench_ab"
      redis-cli -u "$REDIS_URL" --scan --pattern '*abbench*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
      targets=()
      for i in 0 1; do
        port=$((4800 + i))
        BANTER_BIN=$bin start_bench_banter "$(database_url "$admin_url" bench_ab)" abbench "$port" "ab-$i" \
          "$results/ab-banter-$i.log"
        pids+=($!)
        targets+=("127.0.0.1:$port")
      done
      for t in "${targets[@]}"; do wait_for "banter on $t" curl -fs "http://$t/ready"; done
      out=$(mktemp)
      pg_before=$(postgres_cpu)
      "${others_pin[@]}" target/release/banter-load "${load_args[@]}" --targets "$(IFS=,; echo "${targets[*]}")" \
        --users "$users" --channels "$channels" --duration "$seconds" --drain 2 \
        --postgres-cpu --label "$build" --out "$out" >/dev/null || [ $? -eq 3 ]
      pg_after=$(postgres_cpu)
      read -r commit batch < <(commit_stats "${targets[@]}")
      figures=$(python3 -c "
import json
r = json.load(open('$out'))
e = r['e2e']
per = 1e6 * ($pg_after - $pg_before) / max(r['persisted'], 1)
sending = r.get('postgres_us_per_message') or 0
c = r['counters']
print(f\"{r['acked_per_s']:,.0f} | $commit | $batch | {sending:.0f} / {per:.0f} | {e['p50_ms']} | {e['p99_ms']} | {r.get('lost') or 0} / {c['send_errors']} |\")")
      line="| $rate | $build | $figures"
      echo "$line" | tee -a "$report"
      rm -f "$out"
      stop_started
    done
  done
done
rm -rf target/bench-uploads
log "report: $report"
