"""Writes bench/results/mixed.md from bench/mixed.sh's reports (mixed-sends.json,
mixed-mixed.json) and its CPU table (mixed.tsv).

    python3 bench/mixed.py <results> <users> <rate> <seconds>
"""
import datetime, json, os, sys
results, users, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
when = datetime.datetime.fromtimestamp(
    os.path.getmtime(f"{results}/mixed-mixed.json"), datetime.timezone.utc
).strftime("%Y-%m-%d %H:%M")
rows = {}
for line in open(f"{results}/mixed.tsv"):
    run, pg, redis = line.split()
    d = json.load(open(f"{results}/mixed-{run}.json"))
    ops = {"send": (d["counters"]["sent"], d["counters"]["acked"], d["counters"]["send_errors"], d["ack"])}
    for name, o in d.get("ops", {}).items():
        ops[name] = (o["sent"], o["acked"], o["errors"], o["ack"])
    total = sum(v[1] for v in ops.values())
    banter_cpu_s = sum(s["cpu_pct"] for s in d["servers"]) / 100 * d["duration_s"]
    rows[run] = dict(d=d, ops=ops, total=total, pg=float(pg), redis=float(redis), banter=banter_cpu_s)
out = [
    "# Conversations under load (bench/mixed.sh)",
    "",
    f"Run on {when} UTC. "
    f"Two banter instances, one Postgres, one Redis, the load generator, all on this 2-core machine. "
    f"{users} users in channels of 25, {rate:g} operation/s each, {seconds} s; "
    "`sends`: every operation a `message.send`; `mixed`: 50% sends, 15% edits of one's own "
    "messages, 25% reactions added or taken back, 10% read markers (`channel.read`).",
    "",
    "| run | operations acked | /s | banter CPU-s | Postgres CPU-s | Redis CPU-s | banter µs/op | Postgres µs/op | Redis µs/op | message.new delivered | change events delivered | errors |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for run, r in rows.items():
    d = r["d"]
    changes = sum(v for k, v in d["events"].items() if k in ("message.updated", "message.reactions", "message.deleted"))
    errors = sum(v[2] for v in r["ops"].values())
    n = max(r["total"], 1)
    out.append(
        f"| {run} | {r['total']} | {r['total'] / d['duration_s']:.0f} | {r['banter']:.2f} | {r['pg']:.2f} | {r['redis']:.2f} "
        f"| {r['banter'] / n * 1e6:.0f} | {r['pg'] / n * 1e6:.0f} | {r['redis'] / n * 1e6:.0f} "
        f"| {d['counters']['delivered']} | {changes} | {errors} |"
    )
sends, mixed = rows.get("sends"), rows.get("mixed")
if sends and mixed and sends["total"] and mixed["total"]:
    # What the operations other than sends cost: the mixed run's total, less its sends at the
    # sends run's cost per send.
    n_sends = mixed["ops"]["send"][1]
    others = mixed["total"] - n_sends
    if others > 0:
        per = {k: (mixed[k] - n_sends * sends[k] / sends["total"]) / others * 1e6 for k in ("banter", "pg", "redis")}
        out += ["", f"Derived: each of the {others} edits, reactions and read markers cost about "
                f"{per['banter']:.0f} µs of banter CPU, {per['pg']:.0f} µs of Postgres CPU and "
                f"{per['redis']:.0f} µs of Redis CPU (the mixed run's totals less its {n_sends} sends "
                f"at the sends run's cost per send: {sends['banter'] / sends['total'] * 1e6:.0f}, "
                f"{sends['pg'] / sends['total'] * 1e6:.0f} and {sends['redis'] / sends['total'] * 1e6:.0f} µs)."]
out += ["", "Ack latency by operation (ms):", "", "| run | operation | acked | p50 | p99 |", "|---|---|---|---|---|"]
for run, r in rows.items():
    for name, (sent, acked, errors, ack) in r["ops"].items():
        out.append(f"| {run} | {name} | {acked} | {ack['p50_ms']:.2f} | {ack['p99_ms']:.2f} |")
out.append("")
open(f"{results}/mixed.md", "w").write("\n".join(out))
print("\n".join(out))
