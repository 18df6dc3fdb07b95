#!/usr/bin/env python3
"""Turns a valgrind massif profile of a server holding idle sockets into a table of heap bytes
per socket, by call site.

    heap.py <massif.out> <sockets> [--title TITLE]

The snapshot used is the detailed one with the largest heap (give a file with the one snapshot
wanted, as `vgdb ... detailed_snapshot` writes it). Every leaf of its allocation tree is
attributed to a task cell by its future's type, or to the first frame from the allocation up
that names a crate of the server's stack, and the rows are summed by that.
Markdown goes to stdout.
"""

import argparse
import re
import sys
from collections import defaultdict

# "n3: 123456 0x4C2DB8F: malloc (vg_replace_malloc.c:381)" and "n0: 789 in 12 places, ..."
NODE = re.compile(r"^(\s*)n(\d+): (\d+) (.*)$")


def snapshots(path):
    """Yields (heap bytes, tree lines) for each detailed snapshot."""
    heap, lines, detailed = 0, [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("snapshot="):
                if detailed and lines:
                    yield heap, lines
                heap, lines, detailed = 0, [], False
            elif line.startswith("mem_heap_B="):
                heap = int(line.split("=", 1)[1])
            elif line.startswith("heap_tree=detailed") or line.startswith("heap_tree=peak"):
                detailed = True
            elif detailed and NODE.match(line):
                lines.append(line)
    if detailed and lines:
        yield heap, lines


def frame_name(rest):
    """The function of a tree line, without its address and source location."""
    rest = re.sub(r"^0x[0-9A-F]+: ", "", rest)
    return re.sub(r" \([^()]*:\d+\)$", "", rest).strip()


def leaves(lines):
    """(bytes, [frames from the allocation up]) for every leaf of the tree."""
    stack = []
    out = []
    for i, line in enumerate(lines):
        m = NODE.match(line)
        depth, children, size, rest = len(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        stack.append((depth, rest))
        if children == 0:
            out.append((size, [r for _, r in stack[1:]]))
    return out


# Frames that name the code that holds the memory.
OWNERS = ("banter::", "socketioxide", "engineioxide", "hyper::", "hyper_util", "tungstenite",
          "tokio_util", "tokio::sync", "redis::", "sqlx", "axum::", "tower", "matchit",
          "tokio::net", "tokio::runtime::io", "http::")


def site(frames):
    """The code an allocation is for: a task cell by its future, else the first frame (from
    the allocation up) that names a crate of the server's stack."""
    if frames and re.search(r" places?,", frames[-1]):
        return "(call sites below massif's threshold)"
    for rest in frames:
        name = frame_name(rest)
        if "task::core::Cell<" in name:
            return "task: " + name.split("task::core::Cell<", 1)[1][:100]
        if any(owner in name for owner in OWNERS):
            return name[:120]
    return frame_name(frames[-1])[:120] if frames else "(unknown)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("massif")
    ap.add_argument("sockets", type=int)
    ap.add_argument("--title", default="Heap per idle socket")
    ap.add_argument("--rows", type=int, default=20)
    args = ap.parse_args()
    best = max(snapshots(args.massif), key=lambda s: s[0], default=None)
    if best is None:
        sys.exit("no detailed snapshot in the profile")
    heap, lines = best
    sums = defaultdict(int)
    for size, frames in leaves(lines):
        sums[site(frames)] += size
    total = sum(sums.values())
    rows = sorted(sums.items(), key=lambda kv: -kv[1])
    print(f"### {args.title}\n")
    print(f"Heap at the plateau: {heap / 1e6:.1f} MB for {args.sockets:,} sockets, "
          f"{heap / args.sockets:,.0f} B per socket (all of the heap, divided).\n")
    print("| bytes per socket | call site |\n|---:|---|")
    shown = 0
    for name, size in rows[: args.rows]:
        print(f"| {size / args.sockets:,.0f} | `{name}` |")
        shown += size
    print(f"| {(total - shown) / args.sockets:,.0f} | the other {max(len(rows) - args.rows, 0)} call sites |")


if __name__ == "__main__":
    main()
