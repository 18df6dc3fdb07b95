#!/usr/bin/env bash
# A local banter cluster without Docker, from local installs: Postgres and Redis (started, or
# installed with apt, when missing), two release instances on 127.0.0.1:4000 and :4001, nginx on
# 127.0.0.1:8080 with the project's nginx.conf, and the frontend on :3000 when frontend/ exists.
#
# Ctrl-C stops everything this script started, and nothing else.
#
# Settings: DATABASE_URL (the database `banter` is created beside it when missing), REDIS_URL,
# JWT_SECRET (default: one generated once and kept in .dev/jwt_secret), PORT (nginx, 8080), and
# FRONTEND=0 (do not build or start the frontend; nginx still sends / to 127.0.0.1:3000), and
# any banter variable of the README, passed through to both instances.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

port=${PORT:-8080}
state=.dev
mkdir -p "$state"
pids=()

cleanup() {
  trap - INT TERM EXIT
  log "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_redis_if_started
  stop_postgres_if_started
}
trap cleanup INT TERM EXIT

ensure_postgres
ensure_redis
ensure_nginx
[ "${FRONTEND:-1}" != 0 ] && ensure_node

admin_url=$DATABASE_URL
if ! psql "$admin_url" -Atc "SELECT 1 FROM pg_database WHERE datname = 'banter'" | grep -q 1; then
  log "creating database banter"
  psql "$admin_url" -qc "CREATE DATABASE banter"
fi
export DATABASE_URL
DATABASE_URL=$(database_url "$admin_url" banter)

if [ -z "${JWT_SECRET:-}" ]; then
  [ -s "$state/jwt_secret" ] || { umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/jwt_secret"; }
  JWT_SECRET=$(cat "$state/jwt_secret")
fi
export JWT_SECRET
export ALLOWED_ORIGINS=${ALLOWED_ORIGINS:-http://127.0.0.1:$port,http://localhost:$port,http://localhost:3000}

log "building banter (release)"
cargo build --release --locked -p banter --bin banter

for name in a b; do
  if [ "$name" = a ]; then addr=127.0.0.1:4000; else addr=127.0.0.1:4001; fi
  # Both instances keep uploaded files in one folder (kept between runs, like the database).
  BANTER_ADDR=$addr INSTANCE_ID=dev-$name TRUSTED_PROXIES=${TRUSTED_PROXIES:-127.0.0.1/32} \
    STORAGE_URL=${STORAGE_URL:-$PWD/$state/uploads} target/release/banter > "$state/banter-$name.log" 2>&1 &
  pids+=($!)
done

if [ "${FRONTEND:-1}" != 0 ] && [ -f frontend/package.json ]; then
  log "building the frontend"
  (cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build)
  (cd frontend && exec npm run start -- -H 127.0.0.1 -p 3000) > "$state/frontend.log" 2>&1 &
  pids+=($!)
fi

scripts/nginx-local.sh "$state/nginx" "127.0.0.1:$port" 127.0.0.1:4000 127.0.0.1:4001 127.0.0.1:3000 >/dev/null
nginx -p "$PWD/$state/nginx" -c "$PWD/$state/nginx/nginx.conf" -e "$PWD/$state/nginx/error.log" -g 'daemon off;' &
pids+=($!)

wait_for "the cluster behind nginx" curl -fsS "http://127.0.0.1:$port/ready"
log "banter is up: http://127.0.0.1:$port/  (logs in $state/; Ctrl-C stops it)"
wait -n "${pids[@]}" || true
echo "a process of the cluster exited; see $state/*.log" >&2
