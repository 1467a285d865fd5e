#!/usr/bin/env bash
# Cost per pod: N sidecars (default 100) of the shipped static binary, each its
# own process with its own policy and Secret, as one per tenant pod would be.
# Reads PSS (/proc/PID/smaps_rollup: shared code pages divided among the
# processes that map them, i.e. counted once over all sidecars) and RSS (code
# pages counted in every process) per sidecar:
#   1. idle, after start;
#   2. under load: LOADED sidecars at once (default 10), each with SESSIONS
#      (8) concurrent smtp-source sessions, one message per session, relaying
#      over STARTTLS + AUTH to `smtpbind capture` (so the pooled upstream
#      connections carry their rustls state); sampled every 0.5 s, the peak
#      per sidecar kept;
#   3. after the load, the pool's idle connections still open.
# See bench/README.md. Runs as root on Debian (installs postfix for smtp-source
# with apt-get when missing). Everything listens on 127.0.0.1:0 (ports read
# from each process's "listening" event) and is stopped at the end.
#
# Env: N (100), LOADED (10), SESSIONS (8), MSGS (2000 per loaded sidecar),
# SIZE (1024), PREWARM (unset: the policy default; else upstream.reuse.prewarm),
# SMTPBIND_BIN (default: scripts/build-release.sh), KEEP=1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
N=${N:-100}
LOADED=${LOADED:-10}
SESSIONS=${SESSIONS:-8}
MSGS=${MSGS:-2000}
SIZE=${SIZE:-1024}

need=()
command -v smtp-source >/dev/null || need+=(postfix)
command -v python3 >/dev/null || need+=(python3)
bench_need pss "${need[@]}"
bench_binary
bench_workdir pss
cleanup() {
  bench_stop_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_secret() { # DIR USER PASS (the kubelet's layout)
  local ts="..2026_01_01_00_00_00.000000001"
  mkdir -p "$1/$ts"
  printf '%s' "$2" > "$1/$ts/username"; printf '%s' "$3" > "$1/$ts/password"
  ln -sfn "$ts" "$1/..data"; ln -sfn ..data/username "$1/username"; ln -sfn ..data/password "$1/password"
}
listening_addr() { # LOG: the "listening" event's addr, waiting for it
  for _ in $(seq 1 300); do
    a=$(grep -m1 '"event":"listening"' "$1" 2>/dev/null | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p')
    [ -n "$a" ] && { echo "$a"; return 0; }
    sleep 0.1
  done
  echo "pss: no listening event in $1" >&2; return 1
}
rollup() { # PID -> "pss_kib rss_kib"
  awk '$1 == "Pss:" {p = $2} $1 == "Rss:" {r = $2} END {print p + 0, r + 0}' "/proc/$1/smaps_rollup"
}

# --- the upstream: one capture, an account per tenant ---------------------------------
CAP_PORT=$(free_port)
accounts=()
for i in $(seq 1 "$N"); do
  write_secret "$WORK/t$i/secret" "user$i" "pw-$i-$RANDOM$RANDOM"
  accounts+=(--account "t$i=$WORK/t$i/secret")
done
"$SMTPBIND_BIN" capture "${accounts[@]}" --listen "127.0.0.1:$CAP_PORT" --tls starttls \
  --ca-out "$WORK/ca.pem" >/dev/null 2>"$WORK/capture.err" &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -s "$WORK/ca.pem" ] && break; sleep 0.1; done

# --- N sidecars ----------------------------------------------------------------------
SB=()
for i in $(seq 1 "$N"); do
  pin=$("$SMTPBIND_BIN" fingerprint "$WORK/t$i/secret/password")
  mkdir -p "$WORK/t$i/policy"
  cat > "$WORK/t$i/policy/policy.yaml" <<CONF
version: 1
tenant: t$i
upstream:
  address: 127.0.0.1:$CAP_PORT
  tls: starttls
  ca_file: $WORK/ca.pem
  server_name: localhost
${PREWARM:+  reuse:
    prewarm: $PREWARM}
credential:
  secret_dir: $WORK/t$i/secret
  mechanism: auto
  pins: [ "$pin" ]
client:
  auth: none
senders: [ "*@t$i.example" ]
header_from: enforce
CONF
  "$SMTPBIND_BIN" run --policy "$WORK/t$i/policy/policy.yaml" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
    >"$WORK/t$i/log" 2>&1 &
  SB+=("$!"); PIDS+=("$!")
done
ADDR=()
for i in $(seq 1 "$N"); do ADDR+=("$(listening_addr "$WORK/t$i/log")"); done

echo "== machine"
echo "cpus: $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), memory $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "smtpbind: $("$SMTPBIND_BIN" --version) ($SMTPBIND_BIN, $(stat -c %s "$SMTPBIND_BIN") bytes, $(file -b "$SMTPBIND_BIN" 2>/dev/null | cut -d, -f1-5 || echo '?'))"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$N sidecars started; upstream: smtpbind capture, STARTTLS + AUTH, one account per tenant; upstream.reuse.prewarm: ${PREWARM:-policy default}"

report() { # LABEL FILE (lines: pss rss)
  python3 - "$1" "$2" <<'PY'
import sys, statistics as st
label, path = sys.argv[1], sys.argv[2]
rows = [tuple(map(int, l.split())) for l in open(path) if l.strip()]
pss = [r[0] for r in rows]; rss = [r[1] for r in rows]
mib = lambda k: k / 1024
print(f"{label:<34} n={len(rows):3d}  PSS median {mib(st.median(pss)):.2f} MiB (max {mib(max(pss)):.2f}, sum {mib(sum(pss)):.1f})"
      f"   RSS median {mib(st.median(rss)):.2f} MiB (max {mib(max(rss)):.2f})")
PY
}

sleep 2
: > "$WORK/idle.txt"
for p in "${SB[@]}"; do rollup "$p" >> "$WORK/idle.txt"; done
echo
echo "== per sidecar (PSS: shared pages divided among the $N processes; RSS: every page the process maps)"
report "idle, $N sidecars" "$WORK/idle.txt"
if [ -r "/proc/${SB[0]}/smaps_rollup" ]; then
  echo "  one idle sidecar's rollup: $(grep -E '^(Pss_Anon|Pss_File|Pss_Shmem|Private_Dirty|Shared_Clean):' "/proc/${SB[0]}/smaps_rollup" | awk '{printf "%s %s kB  ", $1, $2}')"
fi

# --- load: LOADED sidecars at once, SESSIONS sessions each --------------------------
[ "$LOADED" -gt "$N" ] && LOADED=$N
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CPU0=()
for i in $(seq 1 "$LOADED"); do CPU0+=("$(cpu_ticks "${SB[$((i - 1))]}")"); done
SRC=()
for i in $(seq 1 "$LOADED"); do
  smtp-source -4 -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -f "app@t$i.example" -t rcpt@dest.example \
    -M "t$i.example" "${ADDR[$((i - 1))]}" >/dev/null 2>"$WORK/src$i.err" &
  SRC+=("$!"); PIDS+=("$!")
done
declare -A PEAK_P PEAK_R
t0=$SECONDS
while :; do
  running=0
  for s in "${SRC[@]}"; do kill -0 "$s" 2>/dev/null && running=1; done
  for i in $(seq 1 "$LOADED"); do
    read -r p r < <(rollup "${SB[$((i - 1))]}")
    [ "$p" -gt "${PEAK_P[$i]:-0}" ] && PEAK_P[$i]=$p
    [ "$r" -gt "${PEAK_R[$i]:-0}" ] && PEAK_R[$i]=$r
  done
  [ "$running" = 0 ] && break
  sleep 0.5
done
fails=0
for s in "${SRC[@]}"; do wait "$s" || fails=$((fails + 1)); done
cpu_us=0
for i in $(seq 1 "$LOADED"); do
  cpu_us=$((cpu_us + ($(cpu_ticks "${SB[$((i - 1))]}") - CPU0[i - 1]) * TICK_US))
done
relayed=0
for i in $(seq 1 "$LOADED"); do
  admin=$(grep -m1 '"event":"listening"' "$WORK/t$i/log" | sed -n 's/.*"admin":"\([^"]*\)".*/\1/p')
  if [ -n "$admin" ] && command -v curl >/dev/null; then
    n=$(curl -s "http://$admin/metrics" | awk '/^smtpbind_messages_total/ && /relayed/ {s += $NF} END {printf "%d", s}')
    relayed=$((relayed + n))
  fi
done
: > "$WORK/load.txt"
for i in $(seq 1 "$LOADED"); do echo "${PEAK_P[$i]} ${PEAK_R[$i]}" >> "$WORK/load.txt"; done
report "peak under load ($SESSIONS sessions each)" "$WORK/load.txt"
echo "  load: $LOADED sidecars x $SESSIONS sessions x $MSGS msgs of $SIZE bytes in $((SECONDS - t0)) s; smtp-source failures: $fails; relayed (from /metrics): ${relayed:-?}"
echo "  sidecar CPU (user+sys) per message, one message per session, STARTTLS + AUTH upstream: $((cpu_us / (LOADED * MSGS))) us"
sleep 1
: > "$WORK/after.txt"
for i in $(seq 1 "$LOADED"); do rollup "${SB[$((i - 1))]}" >> "$WORK/after.txt"; done
report "after load (pool idle conns open)" "$WORK/after.txt"
: > "$WORK/idle2.txt"
for i in $(seq $((LOADED + 1)) "$N"); do rollup "${SB[$((i - 1))]}" >> "$WORK/idle2.txt"; done
[ -s "$WORK/idle2.txt" ] && report "the $((N - LOADED)) never-loaded, now" "$WORK/idle2.txt"
hwm=$(for i in $(seq 1 "$LOADED"); do awk '/^VmHWM/ {print $2}' "/proc/${SB[$((i - 1))]}/status"; done | sort -n | tail -1)
echo "  highest VmHWM among the loaded sidecars: $(awk -v k="$hwm" 'BEGIN {printf "%.2f", k / 1024}') MiB"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
