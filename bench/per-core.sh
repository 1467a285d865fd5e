#!/usr/bin/env bash
# Thread-per-core, emulated: would one current-thread runtime per core (each
# with its own sessions and its own pool of upstream connections, no
# cross-thread wake-ups) relay reused sessions (smtp-source -d) faster or
# cheaper than smtpbind's multi-thread runtime? Before building it, this
# measures the same layout with processes: two smtpbind processes with one
# worker each, each taking half of the load, against haproxy, one smtpbind
# with its default workers, and one smtpbind with one worker. Every path gets
# the same load: two smtp-source processes of SESSIONS/2 sessions and MSGS/2
# messages each, started together; interleaved rounds; CPU per message is the
# proxy processes' user+sys. See bench/README.md ("Thread-per-core").
#
# Env: ROUNDS (5), MSGS (20000 per run), SESSIONS (8), SIZE (1024), NICE (-10
# as root), SMTPBIND_BIN (default: scripts/build-release.sh), KEEP=1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
ROUNDS=${ROUNDS:-5}
MSGS=${MSGS:-20000}
SESSIONS=${SESSIONS:-8}
SIZE=${SIZE:-1024}
NICE=${NICE:--10}
[ "$(id -u)" -eq 0 ] || NICE=0
N=(nice -n "$NICE")

need=()
command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null || need+=(postfix)
command -v haproxy >/dev/null || need+=(haproxy)
command -v python3 >/dev/null || need+=(python3)
bench_need per-core "${need[@]}"
bench_binary
bench_workdir per-core
trap bench_stop_all EXIT
trap 'exit 130' INT TERM

cpu_ticks() { local s=0 p; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$s"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

SINK_PORT=$(free_port); HAP_PORT=$(free_port)
mkdir -p "$WORK/secret"
printf 'bench' > "$WORK/secret/username"
printf 'bench-password' > "$WORK/secret/password"
PIN=$("$SMTPBIND_BIN" fingerprint "$WORK/secret/password")
"${N[@]}" smtp-sink -u nobody -4 -m 4096 -a "127.0.0.1:$SINK_PORT" 4096 2>"$WORK/sink.err" &
PIDS+=("$!")
bench_haproxy "$HAP_PORT" "$SINK_PORT" "${N[@]}"
start_smtpbind() { # WORKERS ("" = default): sets SB_PORT, SB_PID
  SB_PORT=$(free_port)
  local admin dir
  admin=$(free_port); dir="$WORK/p$SB_PORT"
  bench_sink_policy "$dir" "$SB_PORT" "$admin" "$SINK_PORT" "$PIN"
  env ${1:+SMTPBIND_WORKER_THREADS=$1} "${N[@]}" "$SMTPBIND_BIN" run --policy "$dir/policy.yaml" >"$dir/log" 2>&1 &
  SB_PID=$!; PIDS+=("$SB_PID")
}
# name, the two ports the halves of the load go to, the proxy processes
start_smtpbind ""; DEF_PORT=$SB_PORT; DEF_PID=$SB_PID
start_smtpbind 1; ONE_PORT=$SB_PORT; ONE_PID=$SB_PID
start_smtpbind 1; A_PORT=$SB_PORT; A_PID=$SB_PID
start_smtpbind 1; B_PORT=$SB_PORT; B_PID=$SB_PID
names=(haproxy smtpbind smtpbind-1w 2x-smtpbind-1w)
ports_a=("$HAP_PORT" "$DEF_PORT" "$ONE_PORT" "$A_PORT")
ports_b=("$HAP_PORT" "$DEF_PORT" "$ONE_PORT" "$B_PORT")
procs=("$HAP_PID" "$DEF_PID" "$ONE_PID" "$A_PID $B_PID")
for p in "$SINK_PORT" "$HAP_PORT" "$DEF_PORT" "$ONE_PORT" "$A_PORT" "$B_PORT"; do bench_wait_220 "$p"; done

half() { # PORT COUNT
  "${N[@]}" smtp-source -4 -d -s "$((SESSIONS / 2))" -m "$2" -l "$SIZE" -f bench@bench.example \
    -t sink@bench.example -M bench.example "127.0.0.1:$1" >/dev/null
}
both() { # PORT-A PORT-B COUNT-EACH
  half "$1" "$3" & local a=$!
  half "$2" "$3" & local b=$!
  wait "$a"; wait "$b"
}
echo "== machine"
echo "cpus: $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "smtpbind: $("$SMTPBIND_BIN" --version) ($SMTPBIND_BIN); haproxy: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (all processes at nice $NICE)"
echo "load: 2 x smtp-source -d -s $((SESSIONS / 2)), $SIZE-byte messages, $MSGS msgs per run, $ROUNDS rounds"
for i in 0 1 2 3; do both "${ports_a[$i]}" "${ports_b[$i]}" 100; done   # warm up
TSV=$WORK/runs.tsv
: > "$TSV"
for round in $(seq 1 "$ROUNDS"); do
  for k in 0 1 2 3; do
    i=$(((k + round) % 4))
    read -ra pp <<< "${procs[$i]}"   # two processes for the emulated layout
    c0=$(cpu_ticks "${pp[@]}"); t0=$(date +%s%N)
    both "${ports_a[$i]}" "${ports_b[$i]}" "$((MSGS / 2))"
    t1=$(date +%s%N); c1=$(cpu_ticks "${pp[@]}")
    printf '%s\t%s\t%s\t%s\n' "$round" "${names[$i]}" \
      "$(awk -v n="$MSGS" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / ((b - a) / 1e9)}')" \
      "$(( (c1 - c0) * TICK_US / MSGS ))" >> "$TSV"
  done
done
echo
echo "== medians over $ROUNDS interleaved rounds (ratio = median of per-round ratios to haproxy)"
python3 - "$TSV" <<'PY'
import sys, statistics as st
by = {}
for line in open(sys.argv[1]):
    r, name, rate, cpu = line.split("\t")
    by.setdefault(name, {})[int(r)] = (float(rate), float(cpu))
base = by["haproxy"]
print(f"{'proxy':<16} {'msg/s':>7} {'x hap':>6} {'(min-max)':>11} {'CPU us/msg':>11} {'(min-max)':>9}")
for name, d in by.items():
    rr = [d[k][0] / base[k][0] for k in sorted(d)]
    cpus = [v[1] for v in d.values()]
    print(f"{name:<16} {st.median(v[0] for v in d.values()):7.0f} {st.median(rr):5.2f}x {min(rr):5.2f}-{max(rr):4.2f} "
          f"{st.median(cpus):11.0f} {min(cpus):4.0f}-{max(cpus):.0f}")
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
