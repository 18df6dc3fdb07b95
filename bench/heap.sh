#!/usr/bin/env bash
# Where an idle socket's memory goes: a heap profile of one banter instance holding idle
# websocket sockets (valgrind's massif), as a table of bytes per socket by call site.
#
# banter is built with debug symbols and the system allocator (massif sees only malloc;
# mimalloc maps its own memory), runs under massif with one socket per guest user in one
# channel, and is stopped after the hold.
#
#   bench/heap.sh [patched|published]
#
# patched (the default): banter as it is built, with the engineioxide patches of vendor/;
# published: the same banter on engineioxide 0.17.9 as published (the untouched copy committed
# before the patches, taken from git), to show what the patches change. Writes
# bench/results/heap-banter-<variant>.massif (a detailed snapshot in the middle of the hold) and
# bench/results/heap-banter-<variant>.md. Loopback only; stops what it starts.
#
# Settings: DATABASE_URL, REDIS_URL (as in scripts/dev.sh), HEAP_SOCKETS (2000), HEAP_HOLD (20 s).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

variant=${1:-patched}
case $variant in patched|published) ;; *) echo "usage: bench/heap.sh [patched|published]" >&2; exit 2 ;; esac
sockets=${HEAP_SOCKETS:-2000}
hold=${HEAP_HOLD:-20}
results=bench/results
mkdir -p "$results"
pid=
published=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=
  if [ -n "$published" ]; then rm -rf "$published"; fi
  published=
}
trap cleanup EXIT INT TERM

ensure_postgres
ensure_redis
command -v valgrind >/dev/null 2>&1 || apt_install valgrind
ulimit -n "$(ulimit -Hn)"

patch=()
if [ "$variant" = published ]; then
  # The commit that added vendor/engineioxide holds it as published.
  base=$(git log --diff-filter=A --format=%H -1 -- vendor/engineioxide/Cargo.toml)
  published=$(mktemp -d)
  git archive "$base" vendor/engineioxide | tar -x -C "$published"
  patch=(--config "patch.crates-io.engineioxide.path=\"$published/vendor/engineioxide\"")
fi
log "building banter ($variant engineioxide; release, debug symbols, system allocator) and banter-load"
CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_TARGET_DIR=target/heap-$variant \
  cargo build --release --locked -p banter --no-default-features "${patch[@]}"
cargo build --release --locked -p banter-load

admin_url=$DATABASE_URL
psql "$admin_url" -qc "DROP DATABASE IF EXISTS bench_heap WITH (FORCE)" -c "CREATE DATABASE bench_heap"
redis-cli -u "$REDIS_URL" --scan --pattern 'heap:*' | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

log "banter under massif, $sockets idle sockets for $hold s"
DATABASE_URL=$(database_url "$admin_url" bench_heap) REDIS_URL=$REDIS_URL REDIS_PREFIX=heap \
  JWT_SECRET=$secret BANTER_ADDR=127.0.0.1:4300 INSTANCE_ID=heap RUST_LOG=warn \
  GUESTS_PER_ADDRESS_PER_HOUR=100000000 MAX_PENDING_SESSIONS_PER_ADDRESS=100000000 \
  HTTP_HEADER_TIMEOUT_SECS=60 \
  valgrind --tool=massif --threshold=0.5 --detailed-freq=1 --max-snapshots=100 \
  --massif-out-file="$results/heap-banter-$variant.massif.all" target/heap-$variant/release/banter \
  > "$results/heap-banter-$variant.log" 2>&1 &
pid=$!
for _ in $(seq 120); do curl -fs http://127.0.0.1:4300/ready >/dev/null 2>&1 && break; sleep 1; done
curl -fs http://127.0.0.1:4300/ready >/dev/null
target/release/banter-load idle --targets 127.0.0.1:4300 --users "$sockets" --procs 1 --sources 4 \
  --connect-concurrency 8 --channel general --duration "$hold" --timeout 600 --label banter-heap \
  --out "$results/heap-banter-$variant-load.json" &
load=$!
# The snapshot is taken in the middle of the idle hold, once every socket is counted (a
# snapshot chosen afterwards by size would be the burst of disconnect tasks at shutdown).
for _ in $(seq 600); do
  counted=$(curl -fs http://127.0.0.1:4300/metrics 2>/dev/null | awk '$1 == "banter_sockets" {print $2}')
  [ "${counted:-0}" -ge "$sockets" ] && break
  sleep 1
done
sleep $((hold / 2))
vgdb --pid="$pid" detailed_snapshot "$results/heap-banter-$variant.massif" >/dev/null
wait "$load" || [ $? -eq 3 ]
cleanup
python3 bench/heap.py "$results/heap-banter-$variant.massif" "$sockets" \
  --title "banter, $variant engineioxide 0.17.9: heap per idle socket ($sockets sockets, massif)" \
  > "$results/heap-banter-$variant.md"
cat "$results/heap-banter-$variant.md"
