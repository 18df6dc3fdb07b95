#!/usr/bin/env bash
# The adversarial soak (tests/e2e/soak.mjs) for longer, on a release build: normal users chat on
# two instances behind nginx while hostile clients attack and faults are injected, then every
# promise is checked. `scripts/test.sh` runs it for 3 minutes on the debug build.
#
#   bench/soak.sh [minutes] [users]      (defaults: 60, 12)
#
# The report (JSON) is written to bench/results/soak-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

minutes=${1:-60}
users=${2:-12}
ensure_postgres
ensure_redis
ensure_nginx
ensure_node
cargo build --release --locked -p banter
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
mkdir -p bench/results
report="$PWD/bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ).json"
log "adversarial soak: $minutes min, $users users (release build); report in $report"
(cd tests/e2e && BANTER_BIN="$PWD/../../target/release/banter" \
  node soak.mjs --seconds $((minutes * 60)) --users "$users" --report "$report")
