#!/usr/bin/env bash
# Generates the web app's wire types (frontend/lib/generated/*.ts) from the Rust types of
# src/contract.rs (ts-rs: each exported type's unit test writes its file), or with `--check`
# fails when the committed files differ from what the Rust types give. Run it after changing a
# wire type; `scripts/test.sh` checks it (stage `types`).
#
# JSON numbers are TypeScript `number` (TS_RS_LARGE_INT): banter's integers (seqs, counts,
# sizes) stay far below 2^53.
#
# Why ts-rs (over typeshare and specta): it reads the serde attributes the wire format is
# already written with (rename, skip, default, skip_serializing_if), so the TypeScript follows
# the JSON without a second set of annotations; it needs no CLI of its own (the export runs as
# unit tests with cargo); and it is a dev-dependency only (`cfg_attr(test, derive(TS))`), so
# the server binary carries none of it.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$PWD/frontend/lib/generated
check=${1:-}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
TS_RS_LARGE_INT=number TS_RS_EXPORT_DIR="$scratch" \
  cargo test --locked --lib -q export_bindings >/dev/null
if [ "$check" = --check ]; then
  if ! diff -ru "$out" "$scratch"; then
    echo "types.sh: frontend/lib/generated is not what src/contract.rs gives; run scripts/types.sh" >&2
    exit 1
  fi
  exit 0
fi
rm -rf "$out"
mkdir -p "$out"
cp "$scratch"/*.ts "$out"/
echo "wrote $(ls "$out" | wc -l) files to frontend/lib/generated"
