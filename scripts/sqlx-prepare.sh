#!/usr/bin/env bash
# Regenerates the compile-time query data in `.sqlx/` (every `sqlx::query!` and
# `query_as!` of the workspace, checked against the schema of `migrations/`), or with `--check`
# fails when that data is not current. Run it after changing a query or adding a migration.
#
# It applies the migrations to a scratch database on the server of DATABASE_URL (else the local
# Postgres), then builds (`cargo check`) every crate with query macros online against it with
# SQLX_OFFLINE_DIR set: the macros then write each query's data there, which is what
# `cargo sqlx prepare` does, without building sqlx-cli. The scratch database is dropped
# afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

ensure_postgres
check=${1:-}

scratch="banter_sqlx_$$"
out=$(mktemp -d)
psql "$DATABASE_URL" -qc "CREATE DATABASE \"$scratch\"" >/dev/null
trap 'rm -rf "$out"; psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$scratch\" WITH (FORCE)" >/dev/null' EXIT
url=$(database_url "$DATABASE_URL" "$scratch")
for migration in migrations/*.sql; do
  psql "$url" -q -v ON_ERROR_STOP=1 --single-transaction -f "$migration" >/dev/null
done

# The macros run again only when their crate is rebuilt: make every file that holds one newer
# than its last build.
grep -rlE 'query(_as|_scalar)?!' --include='*.rs' src tests banter-load | xargs touch
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out" DATABASE_URL="$url" \
  cargo check --workspace --all-targets --locked --quiet

if [ "$check" = --check ]; then
  if ! diff -r .sqlx "$out" >/dev/null; then
    diff -r .sqlx "$out" | head -40 >&2 || true
    echo "sqlx-prepare.sh: .sqlx/ is not what the queries and migrations give; run scripts/sqlx-prepare.sh" >&2
    exit 1
  fi
  echo "the query data in .sqlx/ is current ($(ls "$out" | wc -l) queries)"
  exit 0
fi
rm -rf .sqlx
mkdir -p .sqlx
cp "$out"/*.json .sqlx/
echo "wrote $(ls .sqlx | wc -l) queries to .sqlx/"
