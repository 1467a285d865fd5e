#!/usr/bin/env python3
"""Summarizes bench/run.sh's per-run TSV: median msg/s per path and mode and
each path's ratio to direct (median of the per-round ratios)."""
import statistics
import sys
from collections import defaultdict

PATHS = ["direct", "haproxy", "smtpbind"]
MODES = [("session", "1 msg/session"), ("reuse", "reused sessions (-d)")]


def main(path):
    rate = defaultdict(dict)  # (mode, path) -> {round: msg/s}
    cpu = defaultdict(list)   # (mode, path) -> [proxy CPU µs per message]
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            key = (row["mode"], row["path"])
            rate[key][int(row["round"])] = float(row["msgs_per_s"])
            if row.get("proxy_cpu_us_per_msg") not in (None, "", "-"):
                cpu[key].append(float(row["proxy_cpu_us_per_msg"]))
    out = []
    out.append(f"{'mode':<22} {'path':<9} {'msg/s median':>12} {'min':>8} {'max':>8} "
               f"{'vs direct':>9} {'vs haproxy':>10} {'proxy CPU/msg':>13}")
    for mode, label in MODES:
        for p in PATHS:
            runs = rate.get((mode, p))
            if not runs:
                continue
            vals = list(runs.values())

            def ratio_to(base):
                b = rate.get((mode, base), {})
                rs = [runs[r] / b[r] for r in runs if r in b and b[r] > 0]
                return statistics.median(rs) if rs else float("nan")

            c = cpu.get((mode, p))
            out.append(
                f"{label:<22} {p:<9} {statistics.median(vals):>12.0f} {min(vals):>8.0f} {max(vals):>8.0f} "
                f"{ratio_to('direct'):>9.2f} {ratio_to('haproxy') if p != 'direct' else float('nan'):>10.2f} "
                + (f"{statistics.median(c):>10.0f} µs" if c else f"{'-':>13}")
            )
    print("\n".join(out).replace(" nan", "   -"))


if __name__ == "__main__":
    main(sys.argv[1])
