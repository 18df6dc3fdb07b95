#!/usr/bin/env bash
# What partitioning `messages` by month costs history and saves retention: the same 2,400,000
# messages (1,000 channels × 2,400, spread evenly over 24 months) in a plain table with the
# old unique (channel_id, seq) key and in the monthly partitioned layout of the migration
# `partition_messages` (24 partitions, an index on (channel_id, seq) in each). Measured with
# pgbench (prepared statements, generic plans as banter's connections use them, 2 clients):
#   - history: the newest 50 messages of a random channel, and the 50 before a random seq; on
#     the partitioned layout also as banter reads them first, within the last 31 days (which
#     prunes to the newest partitions; store::messages::page falls back to the full read when
#     that window does not hold the page);
#   - retention: removing the oldest month (100,000 messages): DELETE per channel by
#     (channel_id, seq), as retention does row by row, from the plain table; DETACH
#     CONCURRENTLY + DROP of the partition.
# Writes bench/results/partitions.md. Uses a scratch database on DATABASE_URL's server (else
# the local Postgres) and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_postgres
results=bench/results
mkdir -p "$results"
seconds=${SECONDS_PER_RUN:-15}
db=bench_partitions
url=$(database_url "$DATABASE_URL" "$db")
psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
trap 'psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT

log "loading 2,400,000 messages into each layout"
psql "$url" -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE FUNCTION chan(c int) RETURNS uuid IMMUTABLE LANGUAGE sql
  AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(c::text, 12, '0'))::uuid $$;
CREATE TABLE flat (
  id uuid PRIMARY KEY, channel_id uuid NOT NULL, seq bigint NOT NULL, sender_name text NOT NULL,
  text text NOT NULL, created_at timestamptz NOT NULL,
  UNIQUE (channel_id, seq));
CREATE TABLE parted (
  id uuid NOT NULL, channel_id uuid NOT NULL, seq bigint NOT NULL, sender_name text NOT NULL,
  text text NOT NULL, created_at timestamptz NOT NULL,
  PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
DO $$
DECLARE m timestamp := date_trunc('month', now() AT TIME ZONE 'UTC') - interval '23 months';
BEGIN
  FOR i IN 0..23 LOOP
    EXECUTE format('CREATE TABLE parted_%s PARTITION OF parted FOR VALUES FROM (%L) TO (%L)',
                   i, (m + make_interval(months => i)) AT TIME ZONE 'UTC',
                   (m + make_interval(months => i + 1)) AT TIME ZONE 'UTC');
  END LOOP;
END $$;
CREATE INDEX parted_channel_seq ON parted (channel_id, seq);
-- Message s of a channel is in month (s - 1) / 100: 100 messages a month per channel.
INSERT INTO flat
SELECT gen_random_uuid(), chan(c), s, 'someone', repeat('x', 100),
       (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '23 months'
        + make_interval(months => (s - 1) / 100) + make_interval(mins => s % 100)) AT TIME ZONE 'UTC'
FROM generate_series(1, 1000) c, generate_series(1, 2400) s;
INSERT INTO parted SELECT * FROM flat;
VACUUM ANALYZE flat;
VACUUM ANALYZE parted;
SQL

run() { # run <name> <sql>: pgbench, prints "avg latency ms<TAB>tps"
  local script
  script=$(mktemp)
  printf '\\set c random(1, 1000)\n\\set s random(51, 2400)\n%s\n' "$2" > "$script"
  PGOPTIONS='-c plan_cache_mode=force_generic_plan' pgbench -n -M prepared -c 2 -j 2 \
    -T "$seconds" -f "$script" "$url" 2>/dev/null |
    awk -F' = ' '/latency average/ {split($2, a, " "); l = a[1]} /^tps/ {split($2, b, " "); t = b[1]} END {printf "%s\t%.0f\n", l, t}'
  rm -f "$script"
}

{
  echo "| query | layout | avg latency ms | queries/s |"
  echo "|---|---|---|---|"
  for layout in flat parted; do
    log "history on $layout" >&2
    r=$(run latest "SELECT id, seq, text FROM $layout WHERE channel_id = chan(:c) ORDER BY seq DESC LIMIT 50;")
    echo "| newest 50 of a channel | $layout | ${r%%	*} | ${r##*	} |"
    r=$(run before "SELECT id, seq, text FROM $layout WHERE channel_id = chan(:c) AND seq < :s ORDER BY seq DESC LIMIT 50;")
    echo "| 50 before a seq | $layout | ${r%%	*} | ${r##*	} |"
  done
  log "history on parted, last 31 days first" >&2
  r=$(run latest "SELECT id, seq, text FROM parted WHERE channel_id = chan(:c) AND created_at >= now() - interval '31 days' ORDER BY seq DESC LIMIT 50;")
  echo "| newest 50 of a channel, within the last 31 days | parted | ${r%%	*} | ${r##*	} |"
} > "$results/partitions.md"

log "retention: removing the oldest month"
# One statement per channel (its 100 oldest messages), in one psql session.
delete_ms=$(python3 - "$url" <<'PY'
import subprocess, sys, time
url = sys.argv[1]
script = "".join(
    f"DELETE FROM flat WHERE id IN (SELECT id FROM flat WHERE channel_id = chan({c}) "
    f"AND seq < 101 ORDER BY seq LIMIT 1000);\n" for c in range(1, 1001))
start = time.monotonic()
subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1"], input=script, text=True, check=True)
print(round((time.monotonic() - start) * 1000))
PY
)
drop_ms=$(python3 - "$url" <<'PY'
import subprocess, sys, time
url = sys.argv[1]
start = time.monotonic()
subprocess.run(["psql", url, "-qc", "ALTER TABLE parted DETACH PARTITION parted_0 CONCURRENTLY"], check=True)
subprocess.run(["psql", url, "-qc", "DROP TABLE parted_0"], check=True)
print(round((time.monotonic() - start) * 1000))
PY
)
{
  echo
  echo "| removing the oldest month (100,000 messages) | layout | ms |"
  echo "|---|---|---|"
  echo "| DELETE by (channel_id, seq), one statement per channel | flat | $delete_ms |"
  echo "| DETACH PARTITION CONCURRENTLY + DROP TABLE | parted | $drop_ms |"
} >> "$results/partitions.md"
cat "$results/partitions.md"
