#!/usr/bin/env bash
# Memory under hostile uploads: one release banter instance, eight users from eight addresses
# send the same thing at once, while the instance's RSS is sampled every 50 ms. Four rounds,
# each on a fresh instance:
#
#   at-cap      progressive JPEGs of 5000 × 5000 (25,000,000 pixels, at IMAGE_MAX_PIXELS),
#               multipart to `/api/upload/upload`: decoded for their thumbnails, within the
#               decode budget
#   over-cap    progressive JPEGs of 9400 × 9400 (88 million pixels): refused from the header
#   gif-screen  35-byte GIFs whose logical screen is 8000 × 8000: refused from the header
#   json-bodies 40 announcements (`POST /api/uploads`, five per user) of 10 MiB of JSON each:
#               refused past the 64 KiB REST limit
#
#   bench/hostile-memory.sh
#
# Prints one line per round (answers, RSS before, peak, 5 s and 30 s after the last answer) and
# writes them to bench/results/hostile-memory-<date>.md. Loopback only; stops what it starts.
# Settings: DATABASE_URL, REDIS_URL (as in scripts/dev.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. bench/lib.sh

ensure_postgres
ensure_redis
command -v curl >/dev/null 2>&1 || apt_install curl
cargo build --release --locked -p banter

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
work=$(mktemp -d)
db="banter_bench_decode_$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
admin_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db_url="${admin_url%/*}/$db"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The JPEGs are drawn by Pillow, in a virtual environment of its own under target/.
venv=target/pillow-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import PIL' 2>/dev/null; then
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'pillow==11.*'
fi
log "images"
"$venv/bin/python" - "$work" <<'PY'
import sys
from PIL import Image
for name, side in (("at-cap", 5000), ("over-cap", 9400)):
    # Gradients (and some texture in the one under the cap), saved as progressive JPEGs; both
    # files stay under UPLOAD_MAX_BYTES.
    g = Image.linear_gradient("L").resize((side, side))
    third = Image.effect_noise((side, side), 40) if side <= 5000 else g.rotate(180)
    image = Image.merge("RGB", (g, g.rotate(90), third))
    image.save(f"{sys.argv[1]}/{name}.jpg", "JPEG", quality=85, progressive=True)
PY
python3 -c "import sys; sys.stdout.write('{\"name\":\"a.txt\",\"type\":\"text/plain\",\"size\":1,\"pad\":\"' + 'x' * (10 * 1024 * 1024) + '\"}')" >"$work/json-bodies.json"
printf 'GIF89a\x40\x1f\x40\x1f\x80\x00\x00\xff\xff\xff\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b' >"$work/gif-screen.gif"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

mkdir -p bench/results
report="bench/results/hostile-memory-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# Memory under hostile uploads ($(date -u +%Y-%m-%d), release build, 8 users at once)"
  echo
  echo "| round | file | answers | RSS before (MiB) | peak (MiB) | 5 s after (MiB) | 30 s after (MiB) | seconds |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$report"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for round in at-cap over-cap gif-screen json-bodies; do
  case $round in
    at-cap) file=$work/at-cap.jpg type=image/jpeg ;;
    over-cap) file=$work/over-cap.jpg type=image/jpeg ;;
    gif-screen) file=$work/gif-screen.gif type=image/gif ;;
    json-bodies) file=$work/json-bodies.json type=application/json ;;
  esac
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
  psql "$admin_url" -qc "CREATE DATABASE \"$db\"" >/dev/null
  rm -rf target/bench-uploads
  start_bench_banter "$db_url" "decode$RANDOM" "$port" "decode-$round" "$work/banter-$round.log"
  pid=$!
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  cookies=()
  for i in $(seq 8); do
    jar=$work/cookies-$i
    curl -fs --interface "127.0.0.$((10 + i))" -c "$jar" -H 'content-type: application/json' \
      -d "{\"username\":\"decoder$i\"}" "http://127.0.0.1:$port/api/auth/guest" >/dev/null
    cookies+=("$jar")
  done
  sleep 2
  before=$(rss_kib "$pid")
  peak=$before
  started=$(date +%s.%N)
  uploads=()
  for i in $(seq 8); do
    if [ "$round" = json-bodies ]; then
      for j in $(seq 5); do
        curl -s --interface "127.0.0.$((10 + i))" -b "${cookies[$((i - 1))]}" -o /dev/null -w '%{http_code}\n' \
          -H "content-type: $type" --data-binary "@$file" "http://127.0.0.1:$port/api/uploads" >"$work/answer-$i-$j" &
        uploads+=($!)
      done
      continue
    fi
    curl -s --interface "127.0.0.$((10 + i))" -b "${cookies[$((i - 1))]}" -o /dev/null -w '%{http_code}\n' \
      -F "file=@$file;type=$type" "http://127.0.0.1:$port/api/upload/upload" >"$work/answer-$i" &
    uploads+=($!)
  done
  running() { for p in "${uploads[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
  while running; do
    now=$(rss_kib "$pid")
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.05
  done
  wait "${uploads[@]}" || true
  seconds=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
  answers=$(sort "$work"/answer-* | uniq -c | awk '{printf "%s%s × %s", (NR > 1 ? ", " : ""), $1, $2}')
  for _ in $(seq 100); do
    now=$(rss_kib "$pid")
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.05
  done
  after=$(rss_kib "$pid")
  sleep 25
  later=$(rss_kib "$pid")
  line="| $round | $(stat -c %s "$file") bytes | $answers | $((before / 1024)) | $((peak / 1024)) | $((after / 1024)) | $((later / 1024)) | $seconds |"
  echo "$line" | tee -a "$report"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  rm -f "$work"/answer-*
done
log "report: $report"
