#!/usr/bin/env bash
# Runs every banter check and test against real Postgres and Redis.
#
# Uses DATABASE_URL (a database the tests may create databases from) and REDIS_URL when set;
# otherwise the local services on 127.0.0.1, started when installed but stopped, and installed
# with apt when missing (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "test.sh: need root for: $*" >&2; return 1
  fi
}

apt_install() {
  log "installing $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # wait_for <what> <command...>
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "test.sh: $what did not come up" >&2
  return 1
}

ensure_postgres() {
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  if [ -n "${DATABASE_URL:-}" ]; then
    wait_for "Postgres at DATABASE_URL" psql "$DATABASE_URL" -Atc 'SELECT 1'
    return
  fi
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for "PostgreSQL" pg_isready -q -h 127.0.0.1 -p 5432
  fi
  if ! psql "$DATABASE_URL" -Atc 'SELECT 1' >/dev/null 2>&1; then
    # A stock install asks for a password on TCP: give the local superuser one.
    as_root runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'"
    export DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres
    psql "$DATABASE_URL" -Atc 'SELECT 1' >/dev/null
  fi
}

ensure_redis() {
  command -v redis-cli >/dev/null 2>&1 || apt_install redis-server
  if [ -n "${REDIS_URL:-}" ]; then
    wait_for "Redis at REDIS_URL" redis-cli -u "$REDIS_URL" ping
    return
  fi
  export REDIS_URL=redis://127.0.0.1:6379
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    log "starting Redis"
    mkdir -p /tmp/banter-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/banter-redis --logfile /tmp/banter-redis/redis.log
    wait_for "Redis" redis-cli -h 127.0.0.1 -p 6379 ping
  fi
}

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

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

# Each test starts two instances with their own runtimes; three tests at a time suit two cores.
log "tests (Postgres at ${DATABASE_URL#*@}, Redis at ${REDIS_URL#*@})"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --test-threads 3 --no-fail-fast
else
  cargo test --locked -- --test-threads 3
fi
log "all tests passed"
