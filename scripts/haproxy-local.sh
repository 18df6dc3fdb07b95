#!/usr/bin/env bash
# Writes a copy of the project's haproxy.cfg for a cluster on this machine.
#
#   scripts/haproxy-local.sh OUT_DIR LISTEN BANTER_A BANTER_B [FRONTEND [AGENT_A AGENT_B]]
#
# LISTEN, BANTER_A, BANTER_B, FRONTEND and the agents are host:port (FRONTEND defaults to
# 127.0.0.1:3000). AGENT_A and AGENT_B are the instances' AGENT_CHECK_ADDR; without them the
# agent checks are left out (weights stay as configured).
# OUT_DIR receives haproxy.cfg (with a lower maxconn, below). Start HAProxy in the foreground, its log on standard output:
#   haproxy -db -f OUT_DIR/haproxy.cfg > OUT_DIR/access.log
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
out=$1 listen=$2 a=$3 b=$4 frontend=${5:-127.0.0.1:3000} agent_a=${6:-} agent_b=${7:-}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# maxconn 4000: HAProxy asks for two descriptors a connection, and a process here may hold
# 20000 at most.
sed -e "s|bind \*:8081|bind $listen|" \
    -e "s|^\( *\)maxconn 20000|\1maxconn 4000|" \
    -e "s|server banter-a banter-a:4000|server banter-a $a|" \
    -e "s|server banter-b banter-b:4000|server banter-b $b|" \
    -e "/server banter-a /s|agent-check agent-port 4001|${agent_a:+agent-check agent-addr ${agent_a%:*} agent-port ${agent_a##*:}}|" \
    -e "/server banter-b /s|agent-check agent-port 4001|${agent_b:+agent-check agent-addr ${agent_b%:*} agent-port ${agent_b##*:}}|" \
    -e "s|server frontend frontend:3000|server frontend $frontend|" \
    "$here/haproxy.cfg" > "$out/haproxy.cfg"
for expected in "maxconn 4000" "bind $listen" "server banter-a $a" "server banter-b $b" "server frontend $frontend"; do
  grep -qF "$expected" "$out/haproxy.cfg" || { echo "haproxy-local.sh: could not set '$expected'" >&2; exit 1; }
done
echo "$out/haproxy.cfg"
