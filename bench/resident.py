"""Where a running smtpbind's resident memory is: for each mapping of its
binary, how many pages are resident and in how many 64 KiB windows (the
kernel maps file pages around each fault, `fault_around_bytes`, 64 KiB by
default, so one executed function makes its whole window resident), and the
resident executable bytes attributed to crates by the symbols on each page.

usage: python3 bench/resident.py PID [BINARY]     (root: /proc/PID/pagemap)
BINARY defaults to /proc/PID/exe; symbols from `nm -n -C`.
"""
import bisect
import collections
import os
import re
import struct
import subprocess
import sys

WINDOW = 65536


def crate_of(name):
    n = name.lstrip("<&*").replace("dyn ", "").replace("mut ", "")
    return n.split("::")[0].split(" as ")[0].split("<")[0] or name[:20]


def main():
    pid = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else os.readlink(f"/proc/{pid}/exe")
    maps = []
    for line in open(f"/proc/{pid}/maps"):
        p = line.split()
        if len(p) >= 6 and p[5] == binary:
            lo, hi = (int(x, 16) for x in p[0].split("-"))
            maps.append((lo, hi, p[1], int(p[2], 16)))
    if not maps:
        sys.exit(f"{binary} is not mapped by {pid}")
    with open(binary, "rb") as f:
        pie = struct.unpack_from("<H", f.read(18), 16)[0] == 3  # ET_DYN
    base = min(lo - off for lo, _, _, off in maps if off == 0) if pie else 0
    syms = []
    out = subprocess.run(["nm", "-n", "-C", "--defined-only", binary],
                         capture_output=True, text=True).stdout
    for l in out.splitlines():
        m = re.match(r"([0-9a-f]+) [tTwW] (.*)", l)
        if m:
            syms.append((int(m.group(1), 16), m.group(2)))
    addrs = [a for a, _ in syms]
    pm = open(f"/proc/{pid}/pagemap", "rb")
    per_crate = collections.Counter()
    for lo, hi, perm, _ in maps:
        wins = collections.Counter()
        for page in range(lo, hi, 4096):
            pm.seek(page // 4096 * 8)
            (e,) = struct.unpack("<Q", pm.read(8))
            if not (e >> 63) & 1:
                continue
            wins[page // WINDOW] += 1
            if "x" not in perm or not syms:
                continue
            v0, v1 = page - base, page - base + 4096
            i = max(bisect.bisect_right(addrs, v0) - 1, 0)
            weights = collections.Counter()
            while i < len(syms) and syms[i][0] < v1:
                s = max(syms[i][0], v0)
                e2 = min(syms[i + 1][0] if i + 1 < len(syms) else v1, v1)
                if e2 > s:
                    weights[crate_of(syms[i][1])] += e2 - s
                i += 1
            tot = sum(weights.values()) or 1
            for k, w in weights.items():
                per_crate[k] += 4096 * w / tot
        full = sum(1 for n in wins.values() if n == WINDOW // 4096)
        print("%s %6d KiB mapped, %6d KiB resident, in %3d of %3d 64-KiB windows (%d of them whole)"
              % (perm, (hi - lo) // 1024, sum(wins.values()) * 4, len(wins),
                 (hi - lo + WINDOW - 1) // WINDOW, full))
    if per_crate:
        print("resident executable bytes by crate (symbols on each resident page):")
        for k, v in per_crate.most_common(20):
            print("  %8.1f KiB  %s" % (v / 1024, k))


if __name__ == "__main__":
    main()
