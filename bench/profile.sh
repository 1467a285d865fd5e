#!/usr/bin/env bash
# Profile of the proxies in bench/run.sh's reused-session mode (smtp-source -d):
# where smtpbind spends its CPU per message compared with haproxy's TCP
# passthrough. Same setup as bench/run.sh (smtp-sink -a upstream, smtpbind with
# tls: none + insecure: true, mechanism: none, client.auth: none, header_from:
# enforce; haproxy mode tcp). For each proxy (haproxy, smtpbind with its default
# workers, smtpbind with SMTPBIND_WORKER_THREADS=1):
#   1. ROUNDS interleaved timed runs (direct, smtp-source -> smtp-sink, as the
#      floor): msg/s, proxy CPU (utime+stime) per message and its kernel part,
#      context switches (voluntary + involuntary, all threads) per message, and
#      the CPU per message of the three processes together (load + sink +
#      proxy, user+sys; not the whole machine, so a build running alongside
#      does not count), from which the bound below is computed;
#   2. one run under `strace -c -f`: syscalls per message, by name;
#   3. one run under `perf record -e cpu-clock` (software clock: this VM has no
#      hardware counters): the hottest symbols by self time.
# strace and perf slow the proxy down; only their counts and shares are read,
# never their timings. See bench/README.md.
#
# Env: ROUNDS (5), MSGS (20000 per timed run), TRACE_MSGS (5000 under strace /
# perf), NICE (-10 as root), SESSIONS (8), SIZE (1024), SMTPBIND_BIN (default: scripts/build-release.sh),
# CALLGRAPH=0 skips the allocator call graph, KEEP=1 keeps the work dir
# (perf.data, strace output).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
ROUNDS=${ROUNDS:-5}
MSGS=${MSGS:-20000}
TRACE_MSGS=${TRACE_MSGS:-5000}
# All processes of the profile (load, sink, proxies) run at this nice value
# when root, so that other work on a shared machine disturbs them less.
NICE=${NICE:--10}
[ "$(id -u)" -eq 0 ] || NICE=0
N=(nice -n "$NICE")
SESSIONS=${SESSIONS:-8}
SIZE=${SIZE:-1024}

need=()
command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null || need+=(postfix)
command -v haproxy >/dev/null || need+=(haproxy)
command -v strace >/dev/null || need+=(strace)
command -v perf >/dev/null || need+=(linux-perf)
command -v python3 >/dev/null || need+=(python3)
bench_need profile "${need[@]}"
bench_binary
bench_workdir profile
cleanup() {
  bench_stop_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
ctx_switches() { # all threads of PID: voluntary + involuntary
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {s += $2} END {print s + 0}'
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

SINK_PORT=$(free_port); HAP_PORT=$(free_port)
SB_PORT=$(free_port); SB_ADMIN=$(free_port); SB1_PORT=$(free_port); SB1_ADMIN=$(free_port)
mkdir -p "$WORK/secret/..2026_01_01_00_00_00.000000001"
printf 'bench' > "$WORK/secret/..2026_01_01_00_00_00.000000001/username"
printf 'bench-password' > "$WORK/secret/..2026_01_01_00_00_00.000000001/password"
ln -s ..2026_01_01_00_00_00.000000001 "$WORK/secret/..data"
ln -s ..data/username "$WORK/secret/username"
ln -s ..data/password "$WORK/secret/password"
PIN=$("$SMTPBIND_BIN" fingerprint "$WORK/secret/password")
bench_sink_policy "$WORK/p" "$SB_PORT" "$SB_ADMIN" "$SINK_PORT" "$PIN"
bench_sink_policy "$WORK/p1" "$SB1_PORT" "$SB1_ADMIN" "$SINK_PORT" "$PIN"
"$SMTPBIND_BIN" check "$WORK/p/policy.yaml" >/dev/null

"${N[@]}" smtp-sink -u nobody -4 -m 4096 -a "127.0.0.1:$SINK_PORT" 4096 2>"$WORK/sink.err" &
SINK_PID=$!; PIDS+=("$SINK_PID")
bench_haproxy "$HAP_PORT" "$SINK_PORT" "${N[@]}"
"${N[@]}" "$SMTPBIND_BIN" run --policy "$WORK/p/policy.yaml" >"$WORK/sb.log" 2>&1 &
SB_PID=$!; PIDS+=("$SB_PID")
SMTPBIND_WORKER_THREADS=1 "${N[@]}" "$SMTPBIND_BIN" run --policy "$WORK/p1/policy.yaml" >"$WORK/sb1.log" 2>&1 &
SB1_PID=$!; PIDS+=("$SB1_PID")
for p in "$SINK_PORT" "$HAP_PORT" "$SB_PORT" "$SB1_PORT"; do bench_wait_220 "$p"; done

source_run() { # PORT COUNT
  "${N[@]}" smtp-source -4 -d -s "$SESSIONS" -m "$2" -l "$SIZE" -f bench@bench.example -t sink@bench.example \
    -M bench.example "127.0.0.1:$1" >/dev/null
}
# Index 3, direct (no proxy), is only in the timed runs: the machine's CPU
# per message without a proxy.
names=(haproxy smtpbind smtpbind-1w direct)
ports=("$HAP_PORT" "$SB_PORT" "$SB1_PORT" "$SINK_PORT")
pids=("$HAP_PID" "$SB_PID" "$SB1_PID" "")

echo "== machine"
echo "cpus: $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
echo "smtpbind: $("$SMTPBIND_BIN" --version) ($SMTPBIND_BIN); haproxy: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)"
echo "perf: $(perf --version 2>&1); hardware counters: $(perf stat -e instructions -x, true 2>&1 | grep -q 'not supported' && echo 'not supported (software cpu-clock sampling only)' || echo yes)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (all processes of the profile at nice $NICE)"
echo "load: smtp-source -d, $SESSIONS sessions, $SIZE-byte messages, $MSGS msgs per timed run, $ROUNDS rounds"
for i in 0 1 2; do source_run "${ports[$i]}" 200; done   # warm up (pools, caches)

TSV=$WORK/timed.tsv
: > "$TSV"
for round in $(seq 1 "$ROUNDS"); do
  for k in 0 1 2 3; do
    i=$(((k + round) % 4))
    pid=${pids[$i]}
    c0=0; u0=0; x0=0; c1=0; u1=0; x1=0
    [ -z "$pid" ] || { c0=$(cpu_ticks "$pid"); u0=$(user_ticks "$pid"); x0=$(ctx_switches "$pid"); }
    s0=$(cpu_ticks "$SINK_PID")
    t0=$(date +%s%N)
    # bash's `time`: the load's own user+sys seconds
    { TIMEFORMAT='%3U %3S'; time source_run "${ports[$i]}" "$MSGS"; } 2>"$WORK/load.time"
    load_s=$(tail -1 "$WORK/load.time" | awk '{print $1 + $2}')
    t1=$(date +%s%N)
    s1=$(cpu_ticks "$SINK_PID")
    [ -z "$pid" ] || { c1=$(cpu_ticks "$pid"); u1=$(user_ticks "$pid"); x1=$(ctx_switches "$pid"); }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "${names[$i]}" \
      "$(awk -v n="$MSGS" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / ((b - a) / 1e9)}')" \
      "$(( (c1 - c0) * TICK_US / MSGS ))" \
      "$(awk -v n="$MSGS" -v a="$x0" -v b="$x1" 'BEGIN {printf "%.2f", (b - a) / n}')" \
      "$(( (u1 - u0) * TICK_US / MSGS ))" \
      "$(awk -v l="$load_s" -v t="$(( (s1 - s0 + c1 - c0) * TICK_US ))" -v n="$MSGS" 'BEGIN {printf "%.0f", (l * 1e6 + t) / n}')" \
      "$(awk -v l="$load_s" -v t="$(( (s1 - s0 + c1 - c0) * TICK_US ))" -v a="$t0" -v b="$t1" -v c="$(nproc)" \
          'BEGIN {printf "%.2f", (l * 1e6 + t) / ((b - a) / 1e3) / c}')" >> "$TSV"
  done
done
echo
echo "== timed runs (medians over $ROUNDS interleaved rounds; ratio = median of per-round ratios to haproxy)"
python3 - "$TSV" "$(nproc)" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
ncpu = int(sys.argv[2])
by = {}
for r, name, rate, cpu, ctx, user, machine, busy in rows:
    by.setdefault(name, {})[int(r)] = (float(rate), float(cpu), float(ctx), float(user), float(machine), float(busy))
base = by["haproxy"]
med = lambda d, i: st.median(v[i] for v in d.values())
print(f"{'path':<13} {'msg/s':>7} {'x hap':>6} {'(min-max)':>11} {'CPU us/msg':>11} {'x hap':>6} {'user us/msg':>12} "
      f"{'kernel':>7} {'ctxsw/msg':>10} {'all 3 us/msg':>13} {'of CPUs':>8}")
for name in ["direct", "haproxy", "smtpbind", "smtpbind-1w"]:
    d = by[name]
    rounds = sorted(d)
    rr = [d[k][0] / base[k][0] for k in rounds]
    proxy = name != "direct"
    cr = [d[k][1] / base[k][1] for k in rounds if base[k][1]]
    cpu = f"{med(d, 1):11.1f} {st.median(cr):5.2f}x {med(d, 3):12.1f} {med(d, 1) - med(d, 3):7.1f} {med(d, 2):10.2f}" if proxy \
        else f"{'-':>11} {'-':>6} {'-':>12} {'-':>7} {'-':>10}"
    print(f"{name:<13} {med(d, 0):7.0f} {st.median(rr):5.2f}x {min(rr):5.2f}-{max(rr):4.2f} {cpu} "
          f"{med(d, 4):13.0f} {100 * med(d, 5):7.0f}%")
# The bound: the load, the sink and the proxy share the machine's CPUs, so
# msg/s <= CPUs / (their CPU per message). A proxy with smtpbind's kernel time
# per message and no user-space work at all would make that sum smtpbind's
# minus smtpbind's user time; even with every CPU busy with these three
# processes all the time it could not exceed CPUs / that.
print()
print("bound: a proxy with smtpbind's own kernel time per message (its socket calls) and *no* user-space")
print("work at all, every CPU busy with load + sink + proxy (per round, median (min-max)):")
for name in ["smtpbind", "smtpbind-1w"]:
    d = by[name]
    b = [ncpu * 1e6 / (d[k][4] - d[k][3]) / base[k][0] for k in sorted(d) if d[k][4] > d[k][3]]
    same = [d[k][0] / base[k][0] * d[k][4] / (d[k][4] - d[k][3]) for k in sorted(d) if d[k][4] > d[k][3]]
    print(f"  {name:<12} at most {st.median(b):.2f}x haproxy's msg/s ({min(b):.2f}-{max(b):.2f}); "
          f"{st.median(same):.2f}x at the share of the CPUs it measured")
PY

echo
echo "== syscalls per message (strace -c -f, $TRACE_MSGS msgs; top 12 by count)"
for i in 0 1 2; do
  strace -c -f -q -o "$WORK/strace.${names[$i]}" -p "${pids[$i]}" &
  st_pid=$!
  sleep 1
  source_run "${ports[$i]}" "$TRACE_MSGS"
  kill -INT "$st_pid" 2>/dev/null || true
  wait "$st_pid" 2>/dev/null || true
  python3 - "$WORK/strace.${names[$i]}" "${names[$i]}" "$TRACE_MSGS" <<'PY'
import sys
path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        # % time, seconds, usecs/call, calls, [errors], syscall
        calls = int(f[3]); errors = int(f[4]) if len(f) == 6 else 0
        rows.append((calls, errors, f[-1]))
rows.sort(reverse=True)
total = sum(c for c, _, _ in rows)
print(f"{name}: {total / n:.1f} syscalls/msg: " + ", ".join(
    f"{s} {c / n:.2f}" + (f" ({e / n:.2f} err)" if e else "") for c, e, s in rows[:12]))
PY
done

echo
echo "== hottest symbols (perf record -e cpu-clock, $TRACE_MSGS msgs; self time share of the process)"
for i in 0 1; do
  perf record -q -e cpu-clock -F 2999 -o "$WORK/perf.${names[$i]}.data" -p "${pids[$i]}" >/dev/null 2>&1 &
  pf_pid=$!
  sleep 1
  source_run "${ports[$i]}" "$TRACE_MSGS"
  kill -INT "$pf_pid" 2>/dev/null || true
  wait "$pf_pid" 2>/dev/null || true
  echo "-- ${names[$i]}: by shared object"
  perf report -q -i "$WORK/perf.${names[$i]}.data" --stdio --sort dso 2>/dev/null |
    awk 'NF && n < 6 {printf "   %s\n", $0; n++}' || true
  echo "-- ${names[$i]}: top 25 symbols"
  perf report -q -i "$WORK/perf.${names[$i]}.data" --stdio --sort sym --no-children 2>/dev/null |
    awk 'NF && n < 25 {printf "   %s\n", substr($0, 1, 150); n++}' || true
  perf report -q -i "$WORK/perf.${names[$i]}.data" --stdio --sort dso,sym --no-children 2>/dev/null \
    > "$WORK/perf.${names[$i]}.txt" || true
  python3 - "$WORK/perf.${names[$i]}.txt" "${names[$i]}" <<'PY'
import re, sys
path, name = sys.argv[1], sys.argv[2]
# "  12.34%  dso  [.] symbol" -> share by group of symbols (self time)
groups = [
    ("kernel", lambda d, s: d.startswith("[kernel")),
    ("allocator (malloc, free, realloc)", lambda d, s: re.search(r"\b(_?_?libc_)?(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk|tcache)\b", s) is not None),
    ("memmove / memcpy / memset / memchr", lambda d, s: re.search(r"mem(move|cpy|set|chr|cmp)", s) is not None),
    ("header parsing (mail_parser)", lambda d, s: "mail_parser" in s),
    ("tokio runtime, wakers, timers", lambda d, s: "tokio" in s),
    ("logging / audit (serde, fmt, log)", lambda d, s: re.search(r"serde|core::fmt|smtpbind::log|smtpbind::audit|humantime|jiff", s) is not None),
    ("metrics", lambda d, s: "metrics" in s),
    ("smtpbind session / smtp code", lambda d, s: re.search(r"smtpbind::(session|smtp|server|upstream)", s) is not None),
    ("libc send/recv/epoll wrappers", lambda d, s: re.search(r"__libc_(send|recv)|epoll_wait|__send|__recv", s) is not None),
]
tot = {}
other = 0.0
for line in open(path):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    for g, f in groups:
        if f(dso, sym):
            tot[g] = tot.get(g, 0.0) + pct
            break
    else:
        other += pct
print("-- %s: self time by group: " % name + ", ".join("%s %.1f%%" % (g, v) for g, v in sorted(tot.items(), key=lambda x: -x[1])) + ", other %.1f%%" % other)
PY
done
if [ "${CALLGRAPH:-1}" = 1 ]; then
  # Inclusive time per smtpbind function (its callees and the syscalls they
  # make included): DWARF unwinding from .eh_frame (the release build has no
  # frame pointers and no debug info, but keeps unwind tables).
  echo
  echo "== smtpbind: inclusive time by function (perf record --call-graph dwarf, $((TRACE_MSGS / 2)) msgs; share of all samples, self in the 2nd column)"
  perf record -q -e cpu-clock -F 1999 --call-graph dwarf,16384 -o "$WORK/perf.cg.data" -p "$SB_PID" >/dev/null 2>&1 &
  pf_pid=$!
  sleep 1
  source_run "$SB_PORT" "$((TRACE_MSGS / 2))"
  kill -INT "$pf_pid" 2>/dev/null || true
  wait "$pf_pid" 2>/dev/null || true
  perf report -q -i "$WORK/perf.cg.data" --stdio --children --sort sym -g none 2>/dev/null |
    grep -E 'smtpbind::|mail_parser|rustls|tokio::runtime::(io|time)' |
    awk 'n < 30 {print "   " substr($0, 1, 170); n++}' || true
fi
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
