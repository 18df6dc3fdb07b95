# Shell functions the benchmark scripts share (sourced after scripts/lib.sh).

# CPU seconds (user + system) of every process whose command is postgres.
postgres_cpu() {
  python3 - <<'PY'
import os
hz = os.sysconf("SC_CLK_TCK")
total = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        continue
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    if name.startswith("postgres"):
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
print(total / hz)
PY
}
node_cpu() { # node_cpu <redis url>: CPU seconds of one Redis server
  redis-cli -u "$1" INFO cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.4f\n", s}'
}
