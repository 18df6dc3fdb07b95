#!/usr/bin/env python3
"""Turns bench/results/*.json (banter-load reports) into BENCHMARKS.md.

  report.py --latency-rate <results> <rates...>   print a fifth of banter's largest sustained
                                                   fan-out rate (messages per user per second)
  report.py --write <file> <results> <rates...>   write the benchmark report
"""
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

# A fan-out rate is sustained when nothing is lost and p99 stays under this.
SUSTAINED_P99_MS = 1000.0


def load(results, server, name):
    path = os.path.join(results, f"{server}-{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def sustained(r):
    return (
        r is not None
        and r["lost"] == 0
        and r["counters"]["send_errors"] == 0
        and r["counters"]["connect_failed"] == 0
        and r["e2e"]["p99_ms"] <= SUSTAINED_P99_MS
    )


def max_sustained(results, server, rates):
    best = None
    for rate in rates:
        r = load(results, server, f"fanout-{rate}")
        if sustained(r):
            best = (rate, r)
    return best


def peak(results, server, rates):
    """The run with the most deliveries per second, sustained or not."""
    runs = [load(results, server, f"fanout-{rate}") for rate in rates]
    runs = [(rate, r) for rate, r in zip(rates, runs) if r]
    return max(runs, key=lambda x: x[1]["deliveries_per_s"]) if runs else None


def ratio(a, b):
    if not b:
        return "n/a"
    return f"{a / b:.1f}×"


def cmd(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except Exception:
        return "unknown"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"- CPU: {os.cpu_count()} cores, {model}",
        f"- Memory: {mem}; kernel {platform.release()}",
        f"- Open files per process: hard limit {cmd(['sh', '-c', 'ulimit -Hn'])}",
        f"- {cmd(['rustc', '--version'])}; Node {cmd(['node', '--version'])}",
        f"- {cmd(['psql', '--version'])}; {cmd(['redis-server', '--version'])}",
        "- Everything on this one machine: two server instances, Postgres, Redis and the load "
        "generator share the same cores.",
    ]


def ms(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fanout_table(results, rates):
    rows = [
        "| msgs/user/s | offered deliveries/s | banter deliveries/s | p50 ms | p99 ms | lost "
        "| baseline deliveries/s | p50 ms | p99 ms | lost | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        b = load(results, "banter", f"fanout-{rate}")
        n = load(results, "baseline", f"fanout-{rate}")
        if not b:
            continue
        offered = b["users"] * float(rate) * b["users"] / b["channels"]
        cells = [str(rate), f"{offered:,.0f}"]
        for r in (b, n):
            if r:
                cells += [f"{r['deliveries_per_s']:,.0f}", ms(r["e2e"]["p50_ms"]), ms(r["e2e"]["p99_ms"]), f"{r['lost']:,}"]
            else:
                cells += ["-", "-", "-", "-"]
        cells.append(ratio(b["deliveries_per_s"], n["deliveries_per_s"]) if n else "n/a")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def cpu(r):
    return ", ".join(f"{s['cpu_pct']:.0f}%" for s in r["servers"])


def cores(r):
    """Server CPU of a run, in cores (all instances together)."""
    return sum(s["cpu_pct"] for s in r["servers"]) / 100


def per_cpu_second(r):
    """Deliveries per second of server CPU."""
    c = cores(r)
    return r["deliveries_per_s"] / c if c > 0 else 0


def heap_rows(path):
    """(total bytes per socket, {call site: bytes per socket}) from a bench/heap.py table."""
    if not os.path.exists(path):
        return None
    total, rows = None, {}
    with open(path) as f:
        for line in f:
            if "B per socket (all of the heap" in line:
                m = line.split("sockets, ")[-1].split(" B per socket")[0]
                total = int(m.replace(",", ""))
            elif line.startswith("| ") and not line.startswith("| bytes") and "---" not in line:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) == 2 and cells[0].replace(",", "").isdigit():
                    rows[cells[1].strip("`")] = int(cells[0].replace(",", ""))
    return total, rows


def heap_table(results):
    before = heap_rows(os.path.join(results, "heap-banter-published.md"))
    after = heap_rows(os.path.join(results, "heap-banter-patched.md"))
    if not before or not after:
        return []
    out = [
        "| call site | published engineioxide, B/socket | patched, B/socket |",
        "|---|---:|---:|",
    ]
    sites = sorted(set(before[1]) | set(after[1]), key=lambda k: -max(before[1].get(k, 0), after[1].get(k, 0)))
    for site in sites:
        b, a = before[1].get(site), after[1].get(site)
        out.append(f"| `{site[:110]}` | {f'{b:,}' if b is not None else '-'} | {f'{a:,}' if a is not None else '-'} |")
    if before[0] and after[0]:
        out.append(f"| **all of the heap, per socket** | **{before[0]:,}** | **{after[0]:,}** |")
    return out


def gen(r):
    g = r["generator"]
    cpu = "/".join(f"{p:.0f}%" for p in g["cpu_pct"])
    return cpu + (" (saturated)" if g["saturated"] else "")


def write(path, results, rates):
    out = []
    add = out.append
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    add("# banter benchmarks")
    add("")
    add(f"Generated by `bench/run.sh` on {now}. Every figure below comes from the JSON reports in "
        "`bench/results/`, written by the load generator `banter-load` (`banter-load/`); "
        "the baseline is the Node.js Socket.IO server in `bench/baseline/` (socket.io 4.8, "
        "@socket.io/redis-adapter, pg, one insert per message), run with the same events and "
        "payloads, on the same Postgres and Redis, one after the other; *bare* is published "
        "socketioxide 0.18.9 with its default configuration and its Redis adapter "
        "(`bench/bare/`), relaying the same events and storing nothing: the floor of what a chat "
        "server on socketioxide can cost.")
    add("")
    add("## Machine")
    out.extend(machine())
    add("")
    add("The machine is shared and noisy: figures move by 10-20 % between runs. Ratios between the "
        "servers, measured minutes apart, are steadier than the absolute numbers.")
    add("")

    b_idle, n_idle = load(results, "banter", "idle"), load(results, "baseline", "idle")
    b_flood, n_flood = load(results, "banter", "flood"), load(results, "baseline", "flood")
    b_lat, n_lat = load(results, "banter", "latency"), load(results, "baseline", "latency")
    b_max, n_max = max_sustained(results, "banter", rates), max_sustained(results, "baseline", rates)

    r_idle = load(results, "bare", "idle")
    r_lat = load(results, "bare", "latency")
    b_write, n_write = load(results, "banter", "flood-write"), load(results, "baseline", "flood-write")
    b_few, n_few = load(results, "banter", "flood-few"), load(results, "baseline", "flood-few")
    b_live, n_live = load(results, "banter", "livestream"), load(results, "baseline", "livestream")

    add("## Targets")
    add("| target | measured | met |")
    add("|---|---|---|")
    if b_idle:
        per = b_idle["rss_per_connection_kib"] or 0
        node = (n_idle or {}).get("rss_per_connection_kib") or 0
        add(f"| idle: one instance holds as many sockets as one process may open, all in one channel | "
            f"{b_idle['counters']['connected']:,} connected, {b_idle['counters']['connect_failed']} failed | "
            f"{'yes' if b_idle['counters']['connect_failed'] == 0 else 'no'} |")
        add(f"| idle: at most 12 KiB server RSS per idle socket at 19,500 sockets, leaner than the Node.js "
            f"baseline in the same run | banter {per:.1f} KiB, baseline {node:.1f} KiB | "
            f"{'yes' if per <= 12 and (not node or per < node) else 'no'} |")
        add(f"| idle: 2,000 or more connections per second | {b_idle['connects_per_s']:,.0f}/s | "
            f"{'yes' if b_idle['connects_per_s'] >= 2000 else 'no'} |")
    if b_max:
        bare = load(results, "bare", f"fanout-{b_max[0]}")
        if bare:
            bp, rp = per_cpu_second(b_max[1]), per_cpu_second(bare)
            add(f"| fan-out: deliveries per server CPU-second at least those of bare socketioxide "
                f"(at banter's largest sustained rate, {b_max[0]} msgs/user/s) | banter {bp:,.0f}, bare {rp:,.0f} "
                f"({ratio(bp, rp)}) | {'yes' if bp >= rp else 'no'} |")
    n_best = n_max or peak(results, "baseline", rates)
    if b_max and n_best:
        bd, nd = b_max[1]["deliveries_per_s"], n_best[1]["deliveries_per_s"]
        kind = "sustained" if n_max else "its best, not sustained"
        add(f"| fan-out (1,000 users, 10 channels): 5× the baseline's deliveries/s at equal or lower p99 | "
            f"banter {bd:,.0f} deliveries/s sustained vs baseline {nd:,.0f} ({kind}): {ratio(bd, nd)}; "
            f"p99 {ms(b_max[1]['e2e']['p99_ms'])} vs {ms(n_best[1]['e2e']['p99_ms'])} ms | "
            f"{'yes' if bd >= 5 * nd and b_max[1]['e2e']['p99_ms'] <= n_best[1]['e2e']['p99_ms'] else 'no'} |")
    if b_lat:
        add(f"| p99 end-to-end under 10 ms at a fifth of banter's largest sustained fan-out rate | "
            f"{ms(b_lat['e2e']['p99_ms'])} ms at {b_lat['deliveries_per_s']:,.0f} deliveries/s"
            + (f" (bare socketioxide {ms(r_lat['e2e']['p99_ms'])} ms)" if r_lat else "")
            + f" | {'yes' if b_lat['e2e']['p99_ms'] < 10 else 'no'} |")
    for label, b, n in (("channels of 20", b_flood, n_flood), ("one-member channels (the write path)", b_write, n_write)):
        if b:
            ba = b["acked_per_s"]
            add(f"| flood, {label}: 20,000 acked, persisted messages/s on two instances | {ba:,.0f}/s"
                + (f" ({ratio(ba, n['acked_per_s'])} the baseline's {n['acked_per_s']:,.0f}/s)" if n else "")
                + f" | {'yes' if ba >= 20000 else 'no'} |")
    for label, b, n, target in (("20 users × 8 in flight in 4 channels", b_few, n_few, 15000),
                                ("the livestream case, 400 senders in one channel", b_live, n_live, 10000)):
        if b:
            ba = b["acked_per_s"]
            add(f"| flood, {label}: {target:,} acked, persisted messages/s on two instances | {ba:,.0f}/s "
                f"({b['deliveries_per_s']:,.0f} deliveries/s)"
                + (f" ({ratio(ba, n['acked_per_s'])} the baseline's {n['acked_per_s']:,.0f}/s)" if n else "")
                + f" | {'yes' if ba >= target else 'no'} |")
    add("")

    add("## Reference ceiling")
    add("Measured on this machine class with 1,000 sockets in one room and the load generator on the "
        "same cores (figures given with the performance brief, not re-measured by `bench/run.sh`):")
    add("")
    add("| server | deliveries/s | RSS per idle socket |")
    add("|---|---|---|")
    add("| minimal tokio-tungstenite broadcast server | 1.2-1.6 million | 7.2 kB |")
    add("| bare socketioxide 0.18.9, default configuration | 0.6-0.8 million | 28.2 kB |")
    add("")
    add("Bare socketioxide is also measured in this run (idle and fan-out, below), with its Redis "
        "adapter across two instances as banter runs.")
    add("")
    add("When each socket receives few messages, every delivery costs one send system call (about "
        "8 µs of server CPU here), so realistic chat traffic is bounded near 100,000 deliveries per "
        "second per core.")
    add("")

    add("## Idle connections (one instance, one channel)")
    add("| | connections | failed | connects/s | handshake p50 / p99 ms | server RSS before → connected | RSS per connection | other events received |")
    add("|---|---|---|---|---|---|---|---|")
    for label, r in (("banter", b_idle), ("baseline", n_idle), ("bare socketioxide", r_idle)):
        if not r:
            continue
        s = r["servers"][0]
        events = sum(r["events"].values())
        add(f"| {label} | {r['counters']['connected']:,} | {r['counters']['connect_failed']:,} | "
            f"{r['connects_per_s']:,.0f} | {ms(r['connect']['p50_ms'])} / {ms(r['connect']['p99_ms'])} | "
            f"{s['rss_before_kib'] / 1024:.0f} → {s['rss_connected_kib'] / 1024:.0f} MiB | "
            f"{(r['rss_per_connection_kib'] or 0):.1f} KiB | {events:,} |")
    if b_idle and n_idle:
        add("")
        add(f"Ratios, banter to baseline: connects/s {ratio(b_idle['connects_per_s'], n_idle['connects_per_s'])}, "
            f"RSS per connection {ratio(b_idle['rss_per_connection_kib'] or 0, n_idle['rss_per_connection_kib'] or 0)}"
            + (f"; banter to bare socketioxide: RSS per connection "
               f"{ratio(b_idle['rss_per_connection_kib'] or 0, r_idle['rss_per_connection_kib'] or 0)}" if r_idle else "")
            + ". The bare server's sockets join no channel (it has no default channel).")
    heap = heap_table(results)
    if heap:
        add("")
        add("### Heap per idle socket, by call site (banter, 2,000 sockets, massif)")
        add("`bench/heap.sh published` and `bench/heap.sh patched`: the same banter on engineioxide "
            "0.17.9 as published and with the patches of `vendor/PATCHES.md`; debug symbols and the "
            "system allocator, one snapshot in the middle of the idle hold, its allocation tree "
            "summed per call site (task cells by their future's type). Rows are bytes per socket; "
            "RSS differs from requested heap by the allocator's rounding and what it keeps.")
        add("")
        out.extend(heap)
    if b_idle:
        per = b_idle["rss_per_connection_kib"] or 0
        add("")
        add("### Projection: 1,000,000 connections on one instance")
        gib = per * 1_000_000 / 1024 / 1024
        rate = b_idle["connects_per_s"] or 1
        add(f"- Memory: {per:.1f} KiB × 1,000,000 ≈ {gib:.1f} GiB of server RSS for the sockets, "
            "plus the kernel's socket buffers (not in RSS; about 4-8 KiB per idle loopback TCP socket "
            "with default buffer sizes).")
        add("- File descriptors: 1,000,000 plus a few; the hard limit here is 20,000 per process, so "
            "`LimitNOFILE`/`nofile` must be raised, with `fs.nr_open` and `fs.file-max` above it.")
        add("- Ports: a client address reaches one server port through at most ~28,000 ephemeral ports "
            "(32768-60999), so a million connections need ≥ 36 client addresses (or several server "
            "ports behind the balancer).")
        add(f"- Time: at the measured {rate:,.0f} connections/s, the whole million connects in "
            f"{1_000_000 / rate / 60:.1f} minutes; presence stays O(N): a connect sends no per-member "
            "presence event to a crowded channel (`channel.presence` at most once per second instead).")
    add("")

    add("## Connect and reconnect storms (two instances)")
    add("| | users | round | connected | failed | seconds | connects/s |")
    add("|---|---|---|---|---|---|---|")
    for label in ("banter", "baseline"):
        r = load(results, label, "storm")
        if not r:
            continue
        for i, rd in enumerate(r["rounds"]):
            add(f"| {label} | {r['users']:,} | {'first connect' if i == 0 else f'reconnect {i}'} | "
                f"{rd['connected']:,} | {rd['failed']:,} | {rd['seconds']:.2f} | "
                f"{rd['connected'] / max(rd['seconds'], 1e-9):,.0f} |")
    add("")

    add("## Fan-out (1,000 users in 10 channels of 100, two instances)")
    add("Each user sends at the given rate; every member of the channel (sender included) receives "
        "every message: offered deliveries/s = users × rate × members. Latency is end to end, from "
        "the sender's `message.send` to each receiver's `message.new`.")
    add("")
    out.extend(fanout_table(results, rates))
    add("")
    if b_max:
        add(f"Largest sustained rate (nothing lost, p99 ≤ {SUSTAINED_P99_MS:.0f} ms): banter "
            f"{b_max[0]} msgs/user/s ({b_max[1]['deliveries_per_s']:,.0f} deliveries/s)"
            + (f"; baseline {n_max[0]} msgs/user/s ({n_max[1]['deliveries_per_s']:,.0f} deliveries/s)" if n_max else "; baseline: none of the rates")
            + ".")
        add("")
    add("| run | banter server CPU | banter generator CPU | baseline server CPU | baseline generator CPU |")
    add("|---|---|---|---|---|")
    for rate in rates:
        b = load(results, "banter", f"fanout-{rate}")
        n = load(results, "baseline", f"fanout-{rate}")
        if b:
            add(f"| fanout {rate} | {cpu(b)} | {gen(b)} | {cpu(n) if n else '-'} | {gen(n) if n else '-'} |")
    add("")

    add("### Server CPU per delivery: banter and bare socketioxide")
    add("Deliveries per second of server CPU (both instances' CPU together, from `/proc`), at each "
        "rate; bare socketioxide stores nothing, orders nothing across instances and limits "
        "nothing.")
    add("")
    add("| msgs/user/s | banter deliveries/s | banter server cores | banter deliveries per CPU-s | bare deliveries/s | bare p99 ms | bare lost | bare server cores | bare deliveries per CPU-s | banter / bare |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for rate in rates:
        b = load(results, "banter", f"fanout-{rate}")
        r = load(results, "bare", f"fanout-{rate}")
        if b and r:
            add(f"| {rate} | {b['deliveries_per_s']:,.0f} | {cores(b):.2f} | {per_cpu_second(b):,.0f} | "
                f"{r['deliveries_per_s']:,.0f} | {ms(r['e2e']['p99_ms'])} | {r['lost']:,} | {cores(r):.2f} | "
                f"{per_cpu_second(r):,.0f} | {ratio(per_cpu_second(b), per_cpu_second(r))} |")
    add("")

    add("## Flood: acked, persisted messages per second (two instances, one Postgres)")
    add("Every user keeps a fixed number of sends in flight. *flood*: channels of 20 members (each "
        "message is also delivered 20 times); *flood-write*: every user in a channel of its own, "
        "so the run measures the write path (limit, store, sequence, ack) with one delivery per "
        "message; *flood-few*: 20 users in 4 channels, so that each channel's sends queue behind its "
        "own commits; *livestream*: every user in one channel, one send in flight each (each message "
        "delivered to all of them).")
    add("")
    add("| | scenario | users | channels | in flight per user | acked/s | persisted | acked | ack p50 / p99 ms | server CPU | generator CPU |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, name, r in (("banter", "flood", b_flood), ("baseline", "flood", n_flood),
                           ("banter", "flood-write", b_write), ("baseline", "flood-write", n_write),
                           ("banter", "flood-few", b_few), ("baseline", "flood-few", n_few),
                           ("banter", "livestream", b_live), ("baseline", "livestream", n_live)):
        if r:
            add(f"| {label} | {name} | {r['users']} | {r['channels']} | {r['inflight']} | {r['acked_per_s']:,.0f} | "
                f"{r['persisted']:,} | {r['counters']['acked']:,} | {ms(r['ack']['p50_ms'])} / {ms(r['ack']['p99_ms'])} | "
                f"{cpu(r)} | {gen(r)} |")
    if b_flood and n_flood:
        add("")
        add(f"Ratios, banter to baseline: flood {ratio(b_flood['acked_per_s'], n_flood['acked_per_s'])}"
            + (f", flood-write {ratio(b_write['acked_per_s'], n_write['acked_per_s'])}" if b_write and n_write else "")
            + ".")
    add("")

    add("## Latency at a fifth of banter's largest sustained fan-out rate")
    add("| | msgs/user/s | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | lost |")
    add("|---|---|---|---|---|---|---|---|")
    for label, r in (("banter", b_lat), ("baseline", n_lat), ("bare socketioxide", r_lat)):
        if r:
            add(f"| {label} | {r['rate_per_user']} | {r['deliveries_per_s']:,.0f} | {ms(r['e2e']['p50_ms'])} | "
                f"{ms(r['e2e']['p90_ms'])} | {ms(r['e2e']['p99_ms'])} | {ms(r['e2e']['max_ms'])} | {r['lost']:,} |")
    add("")

    add("## Charts")
    add("Latency per second of the run (p50, p99, max) and the latency distribution:")
    add("")
    for name in ["latency", "flood", "flood-write"] + [f"fanout-{rates[-1]}"]:
        for label in ("banter", "baseline", "bare"):
            png = os.path.join(results, f"{label}-{name}.png")
            if os.path.exists(png):
                add(f"![{label} {name}]({png})")
                add("")

    # The conversations benchmark (bench/mixed.sh), when it has been run.
    mixed = os.path.join(results, "mixed.md")
    if os.path.exists(mixed):
        with open(mixed) as f:
            text = f.read().rstrip()
        add(text.replace("# ", "## ", 1) if text.startswith("# ") else text)
        add("")

    notes = os.path.join(os.path.dirname(__file__), "analysis.md")
    if os.path.exists(notes):
        with open(notes) as f:
            add(f.read().rstrip())
        add("")

    add("## Exact commands")
    add("The commands behind the reports, by report file (`bench/run.sh` runs, for banter and the "
        "baseline: idle, the fan-out rates, storm, flood, flood-write, flood-few, livestream; for bare socketioxide: idle "
        "and the fan-out rates; then the latency runs; and `bench/heap.sh` for the heap tables):")
    add("")
    add("```")
    for f in sorted(os.listdir(results)):
        if f.endswith(".json"):
            with open(os.path.join(results, f)) as fh:
                c = json.load(fh)["command"]
            c = c.split("banter-load", 1)[-1]
            add(f"target/release/banter-load{c}")
    add("```")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--latency-rate":
        best = max_sustained(sys.argv[2], "banter", sys.argv[3:])
        rate = float(best[0]) if best else float(sys.argv[3])
        print(f"{rate / 5:g}")
    elif len(sys.argv) >= 4 and sys.argv[1] == "--write":
        write(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
