#!/usr/bin/env bash
# Two banter builds under the same load, alternated: for a dependency upgrade or a patch, what
# changes in the write path. Each round starts two instances of one build on a fresh database,
# drives them with `banter-load fanout`, and reads the mean group-commit time from the
# instances' `banter_commit_seconds`; the builds take turns (A, B, A, B, ...).
#
#   bench/ab.sh BIN_A BIN_B [rounds]        (rounds per build, default 2)
#
# BIN_A and BIN_B are banter binaries (release builds; for an older commit:
# `git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build --release -p banter)`).
# Settings: USERS (1000), CHANNELS (10), RATES (deliveries per second, "10000 40000"),
# SECONDS_PER_RUN (10). Prints one line per run and writes bench/results/ab-<date>.md.
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
rates=${RATES:-10000 40000}
seconds=${SECONDS_PER_RUN:-10}
results=bench/results
mkdir -p "$results"
trap stop_started EXIT INT TERM

ensure_postgres
ensure_redis
admin_url=$DATABASE_URL
ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -p banter-load
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
report="$results/ab-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# A/B: two banter builds under banter-load fanout ($(date -u +%Y-%m-%d))"
  echo
  echo "A: \`$bin_a\`; B: \`$bin_b\`. $users users in $channels channels, $seconds s per run, the builds alternated."
  echo
  echo "| deliveries/s | build | group commit, ms (mean) | end-to-end p50, ms | end-to-end p99, ms |"
  echo "|---|---|---|---|---|"
} >"$report"

commit_ms() { # mean of banter_commit_seconds over the instances, in ms
  python3 - "$@" <<'PY'
import sys, urllib.request
total = count = 0.0
for target in sys.argv[1:]:
    for line in urllib.request.urlopen(f"http://{target}/metrics", timeout=5).read().decode().splitlines():
        if line.startswith("banter_commit_seconds_sum"):
            total += float(line.split()[-1])
        elif line.startswith("banter_commit_seconds_count"):
            count += float(line.split()[-1])
print(f"{1000 * total / count:.2f}" if count else "-")
PY
}

for rate in $rates; do
  # banter-load's --rate is messages per user per second; each is delivered to a channel's
  # users.
  per_user=$(python3 -c "print($rate / ($users / $channels) / $users)")
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
      target/release/banter-load fanout --targets "$(IFS=,; echo "${targets[*]}")" \
        --users "$users" --channels "$channels" --rate "$per_user" --duration "$seconds" --drain 2 \
        --label "$build" --out "$out" >/dev/null || [ $? -eq 3 ]
      commit=$(commit_ms "${targets[@]}")
      latency=$(python3 -c "import json; e = json.load(open('$out'))['e2e']; print(e['p50_ms'], e['p99_ms'])")
      line="| $rate | $build | $commit | ${latency% *} | ${latency#* } |"
      echo "$line" | tee -a "$report"
      rm -f "$out"
      stop_started
    done
  done
done
rm -rf target/bench-uploads
log "report: $report"
