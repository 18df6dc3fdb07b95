#!/usr/bin/env bash
# Runs every banter check and test against real Postgres and Redis.
#
# Uses DATABASE_URL (a database the tests may create databases from) and REDIS_URL when set;
# otherwise the local services on 127.0.0.1, started when installed but stopped, and installed
# with apt when missing (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

drop_stale_test_databases() {
  psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'banter\_test\_%'" |
    while read -r db; do
      [ -n "$db" ] && psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
    done
}

command -v cargo >/dev/null 2>&1 || { echo "test.sh: a Rust toolchain (cargo) is required" >&2; exit 1; }
ensure_postgres
ensure_redis
drop_stale_test_databases
mkdir -p target
trap 'stop_s3; stop_pg_replica; stop_redis_cluster' EXIT
ensure_s3
ensure_pg_replica
ensure_redis_cluster

log "cargo fmt --check"
cargo fmt --all -- --check
(cd vendor/engineioxide && cargo fmt -- --check)
(cd bench/bare && cargo fmt -- --check)

# Queries are checked at compile time against the committed `.sqlx/` data, never against a
# live database; the data must match the queries and migrations.
export SQLX_OFFLINE=true
log "SQL query data (.sqlx) is current"
scripts/sqlx-prepare.sh --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The bare socketioxide server of bench/run.sh is its own workspace.
(cd bench/bare && CARGO_TARGET_DIR=../../target/bare cargo clippy --locked --all-targets -- -D warnings)

# Each test starts two instances with their own runtimes; three tests at a time suit two cores.
log "Rust tests (Postgres at ${DATABASE_URL#*@}, Redis at ${REDIS_URL#*@})"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --test-threads 3 --no-fail-fast
else
  cargo test --workspace --locked -- --test-threads 3
fi

# The same suite on a Redis Cluster (the tests that bring their own Redis, or their own
# cluster to fail over, already ran).
log "Rust tests on a Redis Cluster (${REDIS_TEST_CLUSTER_NODES})"
if cargo nextest --version >/dev/null 2>&1; then
  REDIS_CLUSTER_NODES=$REDIS_TEST_CLUSTER_NODES cargo nextest run --workspace --locked \
    --test-threads 3 --no-fail-fast -E 'not test(/redis_restart|redis_stall|redis_cluster_master_failover/)'
else
  REDIS_CLUSTER_NODES=$REDIS_TEST_CLUSTER_NODES cargo test --workspace --locked -- --test-threads 3 \
    --skip redis_restart --skip redis_stall --skip redis_cluster_master_failover
fi

# The patched engineioxide (vendor/PATCHES.md) keeps its own test suite green.
log "engineioxide's own tests, on the patched copy"
(cd vendor/engineioxide &&
  CARGO_TARGET_DIR=../../target/vendor-test cargo test --locked -q --features tracing,__test_harness,v3)

# Coverage-guided fuzzing of the event parsers and input rules, briefly, from the corpus in
# fuzz/corpus (new inputs go to a scratch directory, so the run leaves the tree unchanged).
# cargo-fuzz asks for nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
log "fuzzing (cargo fuzz, ${FUZZ_SECONDS:=20} s per target)"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
for target in event_payloads input_rules file_inspect; do
  scratch=$(mktemp -d)
  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 > "$scratch.log" 2>&1); then
    tail -40 "$scratch.log" >&2
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^Done|^stat::number_of_executed_units' "$scratch.log" | sed "s/^/$target: /"
  rm -rf "$scratch" "$scratch.log"
done

log "deployment files (docker-compose config, nginx.conf, haproxy.cfg, Dockerfiles, README)"
ensure_nginx
ensure_haproxy
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
/usr/bin/python3 -m unittest discover -s tests/deploy

command -v npm >/dev/null 2>&1 || apt_install nodejs npm
log "end-to-end: socket.io-client through nginx"
cargo build --locked -p banter -p banter-load
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error && npm test)

log "end-to-end: the same suite through HAProxy (stickiness by cookie)"
(cd tests/e2e && BALANCER=haproxy npm test)

log "end-to-end: the same suite through nginx, on a Redis Cluster"
(cd tests/e2e && REDIS_CLUSTER_NODES=$REDIS_TEST_CLUSTER_NODES npm test)

# Normal users chat while hostile clients attack and faults are injected; every promise is
# checked at the end (tests/e2e/soak.mjs; bench/soak.sh runs it for longer on a release build).
log "adversarial soak (${SOAK_SECONDS:=180} s)"
(cd tests/e2e && node soak.mjs --seconds "$SOAK_SECONDS" --report ../../target/soak-report.json)

log "frontend: unit tests and production build"
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run build)

log "frontend: browser end-to-end (Debian's Chromium, through nginx)"
[ -x /usr/bin/chromium ] || apt_install chromium
(cd frontend && npm run test:e2e)

log "all tests passed"
