#!/usr/bin/env python3
"""Opens N client sessions to an SMTP server, reads each greeting, holds them
idle, and reports the server's memory (VmRSS from /proc/PID/status) while
they are open. Used by bench/run.sh; prints one JSON object."""
import argparse
import json
import re
import socket
import time
import urllib.request


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metric(admin, name):
    if not admin:
        return None
    try:
        text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True, help="host:port")
    ap.add_argument("--pid", type=int, required=True, help="server process to measure")
    ap.add_argument("--admin", help="host:port of smtpbind's admin endpoint (active sessions)")
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--hold", type=float, default=2.0, help="seconds to hold before the second reading")
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    before = status_kib(args.pid, "VmRSS")
    socks, greeted = [], 0
    for _ in range(args.n):
        s = socket.create_connection((host, int(port)), timeout=10)
        socks.append(s)
    for s in socks:
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            buf += chunk
        if re.match(rb"^220[ -]", buf):
            greeted += 1
    time.sleep(0.5)
    held = status_kib(args.pid, "VmRSS")
    active = metric(args.admin, "smtpbind_active_sessions")
    time.sleep(args.hold)
    held_later = status_kib(args.pid, "VmRSS")
    for s in socks:
        s.close()
    print(json.dumps({
        "sessions": args.n,
        "greeted": greeted,
        "active_sessions_metric": active,
        "rss_before_kib": before,
        "rss_held_kib": held,
        "rss_held_later_kib": held_later,
        "hwm_kib": status_kib(args.pid, "VmHWM"),
    }))


if __name__ == "__main__":
    main()
