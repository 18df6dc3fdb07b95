#!/usr/bin/env bash
# Writes a copy of the project's nginx.conf for a cluster on this machine.
#
#   scripts/nginx-local.sh OUT_DIR LISTEN BANTER_A BANTER_B [FRONTEND]
#
# LISTEN, BANTER_A, BANTER_B and FRONTEND are host:port (FRONTEND defaults to 127.0.0.1:3000).
# OUT_DIR receives nginx.conf and nginx's own files (pid, logs, temp). Start nginx with
#   nginx -p OUT_DIR -c OUT_DIR/nginx.conf -e OUT_DIR/error.log
#
# One change beyond addresses: `ip_hash` becomes `hash $remote_addr consistent`. ip_hash keys on
# the first three octets of an IPv4 address, so every client on 127.0.0.x would land on the same
# instance; hashing the whole address keeps each client sticky to one instance while clients on
# different loopback addresses spread over both.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
out=$1 listen=$2 a=$3 b=$4 frontend=${5:-127.0.0.1:3000}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

sed -e "s|listen 8080;|listen $listen;|" \
    -e 's|^\( *\)ip_hash;|\1hash $remote_addr consistent;|' \
    -e "s|server banter-a:4000|server $a|" \
    -e "s|server banter-b:4000|server $b|" \
    -e "s|server frontend:3000;|server $frontend;|" \
    -e "s|access_log /dev/stdout banter;|access_log $out/access.log banter;|" \
    -e "s|^http {|pid $out/nginx.pid;\nerror_log $out/error.log warn;\n\nhttp {\n    client_body_temp_path $out/tmp/body;\n    proxy_temp_path $out/tmp/proxy;\n    fastcgi_temp_path $out/tmp/fastcgi;\n    uwsgi_temp_path $out/tmp/uwsgi;\n    scgi_temp_path $out/tmp/scgi;|" \
    "$here/nginx.conf" > "$out/nginx.conf"
mkdir -p "$out/tmp"
for expected in 'hash $remote_addr consistent;' "listen $listen;" "server $a" "server $b" "server $frontend;" "pid $out/nginx.pid;"; do
  grep -qF "$expected" "$out/nginx.conf" || { echo "nginx-local.sh: could not set '$expected'" >&2; exit 1; }
done
echo "$out/nginx.conf"
