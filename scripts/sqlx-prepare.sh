#!/usr/bin/env bash
# Regenerates the compile-time query data in `.sqlx/` (every `sqlx::query!` and
# `query_as!` of the workspace, checked against the schema of `migrations/`), or with `--check`
# fails when that data is not current. Run it after changing a query or adding a migration.
#
# It applies the migrations to a scratch database on the server of DATABASE_URL (else the local
# Postgres) and drops it afterwards. Needs sqlx-cli (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

ensure_postgres
# The newest sqlx-cli (0.9.0; the sqlx crate is 0.9.1, whose query data it writes alike).
sqlx_cli=0.9.0
cargo sqlx --version 2>/dev/null | grep -qF " $sqlx_cli" ||
  cargo install sqlx-cli --locked --version "$sqlx_cli" --no-default-features --features postgres,rustls

scratch="banter_sqlx_$$"
psql "$DATABASE_URL" -qc "CREATE DATABASE \"$scratch\"" >/dev/null
trap 'psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$scratch\" WITH (FORCE)" >/dev/null' EXIT
url=$(database_url "$DATABASE_URL" "$scratch")
DATABASE_URL="$url" sqlx migrate run --source migrations >/dev/null
DATABASE_URL="$url" cargo sqlx prepare --workspace "$@" -- --all-targets --locked
