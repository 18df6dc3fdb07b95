# Shared by scripts/test.sh and scripts/dev.sh: find, start or install the services banter needs.
# Source it; it defines functions only. ensure_* export DATABASE_URL / REDIS_URL, and set
# STARTED_POSTGRES / STARTED_REDIS to 1 when they started a service that was stopped.

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "need root for: $*" >&2; return 1
  fi
}

apt_install() {
  log "installing $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # wait_for <what> <command...>: up to 30 s
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "$what did not come up" >&2
  return 1
}

STARTED_POSTGRES=0
STARTED_REDIS=0

# DATABASE_URL as given, or the local server's postgres database (a URL the caller may create
# databases from).
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
    STARTED_POSTGRES=1
  fi
  if ! psql "$DATABASE_URL" -Atc 'SELECT 1' >/dev/null 2>&1; then
    # A stock install asks for a password on TCP: give the local superuser one.
    as_root runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'"
    export DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres
    psql "$DATABASE_URL" -Atc 'SELECT 1' >/dev/null
  fi
}

stop_postgres_if_started() {
  if [ "$STARTED_POSTGRES" = 1 ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main stop || true
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
    STARTED_REDIS=1
  fi
}

stop_redis_if_started() {
  if [ "$STARTED_REDIS" = 1 ]; then redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true; fi
}

ensure_nginx() {
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx-light || apt_install nginx
  export PATH="$PATH:/usr/sbin"
}

# A URL for database $2 on the server of URL $1.
database_url() {
  local url=$1 db=$2 base query=""
  base=${url%%\?*}
  [ "$base" != "$url" ] && query="?${url#*\?}"
  local rest=${base#*://}
  local scheme=${base%%://*}
  local authority=${rest%%/*}
  echo "$scheme://$authority/$db$query"
}
