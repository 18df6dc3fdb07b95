#!/usr/bin/env bash
# Runs banter's checks and tests against real Postgres, Redis, nginx, HAProxy and Chromium, in
# stages. Every selected stage runs even when an earlier one failed; a summary of each stage's
# result and time comes last, and the exit status is non-zero when any stage failed.
#
#   scripts/test.sh                  every stage (what CI runs)
#   scripts/test.sh --quick          fmt, sqlx, clippy and the Rust tests on one Redis
#   scripts/test.sh STAGE...         the stages named, in the order given
#   scripts/test.sh --list           the stages, what each checks
#
# Uses DATABASE_URL (a database the tests may create databases from) and REDIS_URL when set;
# otherwise the local services on 127.0.0.1, started when installed but stopped, and installed
# with apt when missing (as root, or with sudo). Servers a stage needs beyond those (an
# S3-compatible server, a Postgres primary with a replica, a Redis Cluster) are started on free
# loopback ports before it and stopped when the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

# name | what it checks (the README's test section lists the same)
STAGES="
fmt|cargo fmt --check on banter, the patched engineioxide and socketioxide, and bench/bare
sqlx|the committed .sqlx query data matches the queries and migrations
types|the web app's generated wire types (frontend/lib/generated) match src/contract.rs
clippy|cargo clippy -D warnings on the workspace and bench/bare
rust|the Rust tests (tests/api and unit tests) on one Redis, with an S3 server and a Postgres replica
rust-cluster|the Rust tests again on a loopback Redis Cluster
engineioxide|the patched engineioxide's own tests
socketioxide|the patched socketioxide's own tests
fuzz|coverage-guided fuzzing of the event parsers, input rules and file inspection
deploy|docker-compose config, nginx -t, HAProxy -c, promtool on the alerts, the dashboard, the Kubernetes manifests (kubernetes-validate), the Dockerfiles and the README (Python)
e2e|socket.io-client end to end through nginx (tests/e2e)
e2e-haproxy|the end-to-end suite through HAProxy
e2e-cluster|the end-to-end suite through nginx on a Redis Cluster
soak|the adversarial soak on one Redis (SOAK_SECONDS, default 150)
soak-cluster|the adversarial soak on a Redis Cluster with a master failover (SOAK_CLUSTER_SECONDS, default 100)
frontend|the web app's unit tests and production build
browser|the web app in Debian's Chromium through nginx (frontend/e2e)
"
QUICK="fmt sqlx types clippy rust"

stage_names() { echo "$STAGES" | sed '/^$/d; s/|.*//'; }

usage() {
  echo "usage: scripts/test.sh [--quick | --list | STAGE...]" >&2
  exit 2
}

selected=()
case "${1:-}" in
  --list)
    echo "$STAGES" | sed '/^$/d' | awk -F'|' '{printf "%-13s %s\n", $1, $2}'
    echo
    echo "--quick runs: $QUICK"
    exit 0
    ;;
  --quick) read -r -a selected <<<"$QUICK" ;;
  -h|--help) usage ;;
  "") mapfile -t selected < <(stage_names) ;;
  *)
    for name in "$@"; do
      stage_names | grep -qx -- "$name" || { echo "test.sh: no stage '$name' (scripts/test.sh --list)" >&2; exit 2; }
    done
    selected=("$@")
    ;;
esac

command -v cargo >/dev/null 2>&1 || { echo "test.sh: a Rust toolchain (cargo) is required" >&2; exit 1; }

# Test databases left by runs that were killed: only those nobody is connected to (another run,
# or a soak, on this machine keeps its own), and never by force.
drop_stale_test_databases() {
  psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database d WHERE datname LIKE 'banter\_test\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)" |
    while read -r db; do
      [ -n "$db" ] && psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
    done
}

# Queries are checked at compile time against the committed `.sqlx/` data, never against a live
# database; the data must match the queries and migrations.
export SQLX_OFFLINE=true
mkdir -p target

# Services are started once, in this shell (so their variables reach every stage), by the first
# stage that needs them, and stopped when the run ends.
declare -A started=()
need() {
  local service
  for service in "$@"; do
    [ -n "${started[$service]:-}" ] && continue
    case $service in
      postgres) ensure_postgres && drop_stale_test_databases ;;
      redis) ensure_redis ;;
      s3) ensure_s3 ;;
      replica) ensure_pg_replica ;;
      redis-cluster) ensure_redis_cluster ;;
      nginx) ensure_nginx ;;
      haproxy) ensure_haproxy ;;
      node) ensure_node ;;
    esac || return 1
    started[$service]=1
  done
}
trap 'stop_s3; stop_pg_replica; stop_redis_cluster' EXIT

stage_needs() {
  case $1 in
    sqlx) echo postgres ;;
    rust) echo postgres redis s3 replica ;;
    rust-cluster) echo postgres redis s3 replica redis-cluster ;;
    deploy) echo nginx haproxy ;;
    e2e | soak | soak-cluster | browser) echo postgres redis nginx node ;;
    e2e-haproxy) echo postgres redis nginx haproxy node ;;
    e2e-cluster) echo postgres redis nginx node redis-cluster ;;
    frontend) echo node ;;
  esac
}

nextest() { cargo nextest --version >/dev/null 2>&1; }

# The binaries and packages the end-to-end stages run.
e2e_ready() {
  cargo build --locked -p banter -p banter-load
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
}

stage_fmt() {
  cargo fmt --all -- --check
  (cd vendor/engineioxide && cargo fmt -- --check)
  (cd vendor/socketioxide && cargo fmt -- --check)
  (cd bench/bare && cargo fmt -- --check)
}

stage_sqlx() {
  scripts/sqlx-prepare.sh --check
}

stage_types() {
  scripts/types.sh --check
}

stage_clippy() {
  cargo clippy --workspace --all-targets --locked -- -D warnings
  # The bare socketioxide server of bench/run.sh is its own workspace.
  (cd bench/bare && CARGO_TARGET_DIR=../../target/bare cargo clippy --locked --all-targets -- -D warnings)
}

# Each test starts two instances with their own runtimes; three tests at a time suit two cores.
stage_rust() {
  echo "Postgres at ${DATABASE_URL#*@}, Redis at ${REDIS_URL#*@}"
  if nextest; then
    cargo nextest run --workspace --locked --test-threads 3 --no-fail-fast
  else
    cargo test --workspace --locked -- --test-threads 3
  fi
}

# The same suite on a Redis Cluster (the tests that bring their own Redis, or their own cluster
# to fail over, run in the stage above).
stage_rust-cluster() {
  echo "Redis Cluster at ${REDIS_TEST_CLUSTER_NODES}"
  if nextest; then
    REDIS_CLUSTER_NODES=$REDIS_TEST_CLUSTER_NODES cargo nextest run --workspace --locked \
      --test-threads 3 --no-fail-fast -E 'not test(/redis_restart|redis_stall|redis_cluster_master_failover/)'
  else
    REDIS_CLUSTER_NODES=$REDIS_TEST_CLUSTER_NODES cargo test --workspace --locked -- --test-threads 3 \
      --skip redis_restart --skip redis_stall --skip redis_cluster_master_failover
  fi
}

stage_engineioxide() {
  cd vendor/engineioxide
  CARGO_TARGET_DIR=../../target/vendor-test cargo test --locked -q --features tracing,__test_harness,v3
}

stage_socketioxide() {
  cd vendor/socketioxide
  CARGO_TARGET_DIR=../../target/vendor-test cargo test --locked -q \
    --features tracing,__test_harness,extensions,state,v4,msgpack
}

# Briefly, from the corpus in fuzz/corpus (new inputs go to a scratch directory, so the run
# leaves the tree unchanged). cargo-fuzz asks for nightly-only flags; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain take them. The dev profile (`--dev`): overflow checks and debug assertions on,
# and the instrumented build of every dependency takes 7 min here instead of 9.5 min optimized;
# long runs (fuzz/README.md) use -O.
stage_fuzz() {
  local seconds=${FUZZ_SECONDS:-20} target scratch
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
  for target in event_payloads input_rules file_inspect; do
    scratch=$(mktemp -d)
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$scratch.log" 2>&1); then
      tail -40 "$scratch.log" >&2
      echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
      return 1
    fi
    grep -E '^Done|^stat::number_of_executed_units' "$scratch.log" | sed "s/^/$target: /"
    rm -rf "$scratch" "$scratch.log"
  done
}

stage_deploy() {
  command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
  # promtool checks deploy/observability. It comes with Debian's prometheus package, whose
  # install starts and enables a Prometheus server (on :9090) where services may start: stop
  # and disable it, only promtool is wanted.
  if ! command -v promtool >/dev/null 2>&1; then
    apt_install --no-install-recommends prometheus
    as_root systemctl disable prometheus >/dev/null 2>&1 || true
    as_root service prometheus stop >/dev/null 2>&1 || true
  fi
  # kubernetes-validate (PyPI) checks deploy/k8s against the Kubernetes API schemas, offline.
  # Debian's Python is externally managed (its pip refuses to install into it), so the package
  # goes into a virtualenv under target/ that also sees Debian's packages (PyYAML), and the
  # tests run on that virtualenv's Python.
  local venv=target/deploy-venv k8s_validate=1.37.0
  if [ "$("$venv/bin/python" -c 'import kubernetes_validate; print(kubernetes_validate.__version__)' 2>/dev/null)" != "$k8s_validate" ]; then
    log "installing kubernetes-validate $k8s_validate into $venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv" 2>/dev/null ||
      { apt_install python3-venv && /usr/bin/python3 -m venv --system-site-packages "$venv"; }
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$k8s_validate"
  fi
  "$venv/bin/python" -m unittest discover -s tests/deploy
}

stage_e2e() {
  e2e_ready
  cd tests/e2e && npm test
}

stage_e2e-haproxy() {
  e2e_ready
  cd tests/e2e && BALANCER=haproxy npm test
}

stage_e2e-cluster() {
  e2e_ready
  cd tests/e2e && REDIS_CLUSTER_NODES=$REDIS_TEST_CLUSTER_NODES npm test
}

# Normal users chat while hostile clients attack and faults are injected; every promise is
# checked at the end (tests/e2e/soak.mjs; bench/soak.sh runs it for longer on a release build).
stage_soak() {
  e2e_ready
  cd tests/e2e && node soak.mjs --seconds "${SOAK_SECONDS:-150}" --report ../../target/soak-report.json
}

stage_soak-cluster() {
  e2e_ready
  cd tests/e2e && node soak.mjs --seconds "${SOAK_CLUSTER_SECONDS:-100}" --redis-cluster \
    --report ../../target/soak-cluster-report.json
}

stage_frontend() {
  cd frontend
  npm ci --no-audit --no-fund --loglevel=error
  npm test
  npm run build
}

stage_browser() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  cargo build --locked -p banter
  cd frontend
  npm ci --no-audit --no-fund --loglevel=error
  BANTER_BIN=$PWD/../target/debug/banter npm run test:e2e
}

summary=()
failed=0
for name in "${selected[@]}"; do
  log "stage $name: $(echo "$STAGES" | grep "^$name|" | cut -d'|' -f2)"
  began=$(date +%s)
  # Each stage runs in a subshell with `set -e`, so its first failing command ends it and
  # nothing it changes (directory, variables) leaks into the next.
  set +e
  # shellcheck disable=SC2046 # one argument per service
  if need $(stage_needs "$name"); then
    (set -e; "stage_$name")
    status=$?
  else
    status=1
  fi
  set -e
  seconds=$(($(date +%s) - began))
  if [ "$status" = 0 ]; then
    summary+=("$(printf '%-13s ok      %4d s' "$name" "$seconds")")
  else
    summary+=("$(printf '%-13s FAILED  %4d s' "$name" "$seconds")")
    failed=$((failed + 1))
  fi
done

log "summary"
printf '%s\n' "${summary[@]}"
if [ "$failed" -gt 0 ]; then
  echo "$failed of ${#selected[@]} stages failed"
  exit 1
fi
echo "all ${#selected[@]} stages passed"
