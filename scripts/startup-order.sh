#!/usr/bin/env bash
# Regenerates scripts/startup-order.txt: the functions a serving sidecar runs
# (start, the prewarmed STARTTLS + AUTH upstream connection, two relayed
# messages, /metrics and /readyz, then idle), which build.rs asks rust-lld to
# place first in .text so that they share a few 64 KiB windows instead of
# making all of .text resident (bench/README.md, "Idle RSS").
#
#   bash scripts/startup-order.sh [BINARY]     # default: scripts/build-release.sh
#
# Runs the binary under valgrind's callgrind (names not demangled), against
# `smtpbind capture` on loopback; keeps the names that are symbols of the
# binary. Needs valgrind, python3 and nm. Everything it starts is stopped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$("$ROOT/scripts/build-release.sh")}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

ts="..2026_01_01_00_00_00.000000001"
mkdir -p "$WORK/secret/$ts" "$WORK/policy"
printf 'user1' > "$WORK/secret/$ts/username"; printf 'order-%s' "$RANDOM$RANDOM" > "$WORK/secret/$ts/password"
ln -sfn "$ts" "$WORK/secret/..data"; ln -sfn ..data/username "$WORK/secret/username"; ln -sfn ..data/password "$WORK/secret/password"
CAP=$(free_port); SMTP=$(free_port); ADMIN=$(free_port)
"$BIN" capture --account "t1=$WORK/secret" --listen "127.0.0.1:$CAP" --tls starttls --ca-out "$WORK/ca.pem" >/dev/null 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$WORK/ca.pem" ] && break; sleep 0.1; done
cat > "$WORK/policy/policy.yaml" <<CONF
version: 1
tenant: t1
listen: 127.0.0.1:$SMTP
admin: 127.0.0.1:$ADMIN
upstream:
  address: 127.0.0.1:$CAP
  tls: starttls
  ca_file: $WORK/ca.pem
  server_name: localhost
credential:
  secret_dir: $WORK/secret
  pins: [ "$("$BIN" fingerprint "$WORK/secret/password")" ]
client:
  auth: none
senders: [ "*@t1.example" ]
header_from: enforce
CONF
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.out" \
  "$BIN" run --policy "$WORK/policy/policy.yaml" >"$WORK/run.log" 2>&1 &
VG=$!
PIDS+=("$VG")
for _ in $(seq 1 300); do grep -q '"event":"listening"' "$WORK/run.log" && break; sleep 0.1; done
sleep 3
python3 - "$SMTP" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60)
s.ehlo("order.test")
for _ in range(2):
    s.sendmail("a@t1.example", ["r@dest.example"],
               "From: a@t1.example\r\nTo: r@dest.example\r\nSubject: order\r\n\r\nhello\r\n")
s.quit()
PY
curl -sf "http://127.0.0.1:$ADMIN/metrics" >/dev/null
curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null
sleep 5
kill -TERM "$VG"
wait "$VG" || true
python3 - "$WORK/cg.out" "$BIN" "$ROOT/scripts/startup-order.txt" <<'PY'
import re, subprocess, sys
cg, binary, out = sys.argv[1:]
syms = set()
for l in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    p = l.split()
    if len(p) == 3 and p[1] in "tTwW":
        syms.add(p[2])
names, seen = [], set()
for l in open(cg, errors="replace"):
    m = re.match(r"c?fn=\(\d+\) (.*)", l)
    if m:
        n = re.sub(r"'\d+$", "", m.group(1).strip())
        if n in syms and n not in seen:
            seen.add(n)
            names.append(n)
open(out, "w").write("\n".join(names) + "\n")
print("%s: %d functions" % (out, len(names)))
PY
