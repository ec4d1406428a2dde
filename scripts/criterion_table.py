#!/usr/bin/env python3
"""Turn criterion's saved estimates into a Markdown table.

usage: criterion_table.py TARGET_DIR[,TARGET_DIR...] GROUP_PREFIX [BASELINE_FUNCTION]

One row per benchmark group whose id starts with GROUP_PREFIX, one column
group per function: median time per iteration, messages (iterations) per
second, MB/s when the group has a byte throughput, and how many times
slower than BASELINE_FUNCTION (default: privasip) it is. With several
target directories (snapshots of repeated runs), each function's figure
is the fastest of its medians, the run least disturbed by other load.
"""
import json
import pathlib
import sys


def load(targets, prefix):
    rows = {}
    for target in targets.split(","):
        for bench in pathlib.Path(target, "criterion").glob("**/new/benchmark.json"):
            meta = json.loads(bench.read_text())
            group = meta["group_id"]
            if not group.startswith(prefix):
                continue
            est = json.loads((bench.parent / "estimates.json").read_text())
            ns = est["median"]["point_estimate"]
            nbytes = (meta.get("throughput") or {}).get("Bytes")
            funcs = rows.setdefault(group, {})
            old = funcs.get(meta["function_id"])
            if old is None or ns < old[0]:
                funcs[meta["function_id"]] = (ns, nbytes)
    return rows


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    target, prefix = sys.argv[1], sys.argv[2]
    base = sys.argv[3] if len(sys.argv) > 3 else "privasip"
    rows = load(target, prefix)
    if not rows:
        sys.exit(f"no criterion results for {prefix!r} under {target}/criterion")
    funcs = sorted({f for r in rows.values() for f in r}, key=lambda f: (f != base, f))
    print("| benchmark | " + " | ".join(funcs) + " |")
    print("|---|" + "---|" * len(funcs))
    for group in sorted(rows):
        cells = []
        b = rows[group].get(base)
        for f in funcs:
            if f not in rows[group]:
                cells.append("-")
                continue
            ns, nbytes = rows[group][f]
            cell = f"{ns/1000:.2f} µs"
            if nbytes:
                cell += f", {nbytes/ns*1e3:.0f} MB/s"
            if f != base and b:
                cell += f", **{ns/b[0]:.1f}x** slower"
            else:
                cell += f", {1e9/ns/1e3:.0f}k msg/s" if "rfc4475" not in group else ""
            cells.append(cell)
        print(f"| {group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
