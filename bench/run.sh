#!/usr/bin/env bash
# smtpbind benchmark: Postfix's smtp-source as the load, smtp-sink as the
# upstream, three paths measured in the same run with interleaved rounds:
#   direct    smtp-source -> smtp-sink                    (the floor)
#   haproxy   smtp-source -> haproxy (mode tcp) -> smtp-sink (a proxy doing no work)
#   smtpbind  smtp-source -> smtpbind -> smtp-sink        (tls: none, insecure: true,
#                                                          client.auth: none)
# in two modes: one message per session (smtp-source's default) and reused
# sessions (smtp-source -d). Then smtpbind's memory: idle RSS after start, RSS
# with 500 idle client sessions, and VmHWM growth while relaying a 25 MiB message.
# See bench/README.md. Runs as root (installs postfix and haproxy with apt-get
# when missing); everything listens on 127.0.0.1 and stops at the end.
#
# Env: ROUNDS (5), MSGS (10000 per measurement, one message per session),
# MSGS_REUSE (20000, with -d), SESSIONS (8), SIZE (1024),
# IDLE_SESSIONS (500), BIG_MIB (25), REUSE_MAX_IDLE (unset: the policy default),
# SMTPBIND_BIN (default: scripts/build-release.sh, the static build the image ships),
# KEEP=1 keeps the work dir (policy, logs, raw TSV).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-5}
MSGS=${MSGS:-10000}
MSGS_REUSE=${MSGS_REUSE:-20000}
SESSIONS=${SESSIONS:-8}
SIZE=${SIZE:-1024}
IDLE_SESSIONS=${IDLE_SESSIONS:-500}
BIG_MIB=${BIG_MIB:-25}

# --- tools --------------------------------------------------------------------
need=()
command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null || need+=(postfix)
command -v haproxy >/dev/null || need+=(haproxy)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
bench_need bench "${need[@]}"
bench_binary
bench_workdir bench
cleanup() {
  bench_stop_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # wait_port PORT: until it answers 220
  for _ in $(seq 1 100); do
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 3 <&3" 2>/dev/null | grep -q 220; then return 0; fi
    sleep 0.1
  done
  echo "bench: nothing answers on 127.0.0.1:$1" >&2; return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

SINK_PORT=$(free_port); HAP_PORT=$(free_port); SB_PORT=$(free_port); SB_ADMIN=$(free_port)

# --- smtpbind policy ------------------------------------------------------------
mkdir -p "$WORK/secret/..2026_01_01_00_00_00.000000001"
printf 'bench' > "$WORK/secret/..2026_01_01_00_00_00.000000001/username"
printf 'bench-password' > "$WORK/secret/..2026_01_01_00_00_00.000000001/password"
ln -s ..2026_01_01_00_00_00.000000001 "$WORK/secret/..data"
ln -s ..data/username "$WORK/secret/username"
ln -s ..data/password "$WORK/secret/password"
PIN=$("$SMTPBIND_BIN" fingerprint "$WORK/secret/password")
write_policy() { # write_policy MECHANISM FILE
  cat > "$2" <<CONF
version: 1
tenant: bench
listen: 127.0.0.1:$SB_PORT
admin: 127.0.0.1:$SB_ADMIN
upstream:
  address: 127.0.0.1:$SINK_PORT
  tls: none
  insecure: true
credential:
  secret_dir: $WORK/secret
  mechanism: $1
  pins: [ "$PIN" ]
client:
  auth: none
senders: [ "*@bench.example" ]
header_from: enforce
limits:
  max_sessions: $((IDLE_SESSIONS + 64))
CONF
  if [ -n "${REUSE_MAX_IDLE:-}" ]; then
    sed -i "s/^  insecure: true$/  insecure: true\n  reuse:\n    max_idle: $REUSE_MAX_IDLE/" "$2"
  fi
}
# smtp-sink answers AUTH with "250 2.0.0 Ok", not RFC 4954's 235, so smtpbind
# (correctly) refuses it as an AUTH failure. If this smtpbind has a mode that
# sends no AUTH upstream (`mechanism: none`, tests and benchmarks only), use it
# and tell smtp-sink not to announce AUTH (-a); otherwise use smtp-sink as is.
SINK_FLAGS=()
# The policy lives in a directory of its own, as a mounted ConfigMap does:
# smtpbind watches the policy's directory, and writes there (its own log)
# would wake that watcher on every audit line.
POLICY=$WORK/policy/policy.yaml
mkdir -p "$WORK/policy"
write_policy none "$WORK/policy-none.yaml"
if "$SMTPBIND_BIN" check "$WORK/policy-none.yaml" >/dev/null 2>&1; then
  write_policy none "$POLICY"; SINK_FLAGS=(-a); UPSTREAM_AUTH="none (smtp-sink -a)"
else
  write_policy auto "$POLICY"; UPSTREAM_AUTH="auto (smtp-sink announces AUTH)"
fi
"$SMTPBIND_BIN" check "$POLICY" >/dev/null

# --- servers ------------------------------------------------------------------------
smtp-sink -u nobody -4 -m 4096 "${SINK_FLAGS[@]}" "127.0.0.1:$SINK_PORT" 4096 2>"$WORK/sink.err" &
SINK_PID=$!; PIDS+=("$SINK_PID")
bench_haproxy "$HAP_PORT" "$SINK_PORT"
start_smtpbind() { # sets SB_PID
  "$SMTPBIND_BIN" run --policy "$POLICY" >>"$WORK/smtpbind.log" 2>&1 &
  SB_PID=$!; PIDS+=("$SB_PID")
  wait_port "$SB_PORT"
}
wait_port "$SINK_PORT"; wait_port "$HAP_PORT"; start_smtpbind

metric() { # metric NAME LABEL-SUBSTRING: summed value
  curl -s "http://127.0.0.1:$SB_ADMIN/metrics" | awk -v n="$1" -v l="$2" \
    'index($0, n) == 1 && index($0, l) { s += $NF } END { printf "%d", s }'
}
source_run() { # source_run PORT COUNT [smtp-source flags...]
  local port=$1 count=$2; shift 2
  smtp-source -4 -s "$SESSIONS" -m "$count" -l "$SIZE" -f bench@bench.example -t sink@bench.example \
    -M bench.example "$@" "127.0.0.1:$port"
}

# --- the machine --------------------------------------------------------------------
echo "== machine"
echo "cpus: $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "smtpbind: $("$SMTPBIND_BIN" --version) ($SMTPBIND_BIN), upstream auth: $UPSTREAM_AUTH"
echo "haproxy: $(haproxy -v 2>/dev/null | head -1)"
echo "postfix (smtp-source, smtp-sink): $(postconf -d -h mail_version 2>/dev/null || echo '?')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
echo "load: $SESSIONS parallel sessions, ${SIZE}-byte messages, $MSGS msgs per measurement ($MSGS_REUSE with -d), $ROUNDS rounds"

# sanity: one message through each path
for port in "$SINK_PORT" "$HAP_PORT" "$SB_PORT"; do
  if ! source_run "$port" 1 >/dev/null 2>"$WORK/probe.err"; then
    echo "bench: a probe message through 127.0.0.1:$port failed: $(cat "$WORK/probe.err")" >&2
    grep '"upstream_error"' "$WORK/smtpbind.log" | tail -1 >&2 || true
    if [ "$port" = "$SB_PORT" ] && [ ${#SINK_FLAGS[@]} -eq 0 ]; then
      echo "bench: smtp-sink answers AUTH with 250, not 235, and this smtpbind has no" \
        "'credential.mechanism: none' for tls: none + insecure: true (see bench/README.md)" >&2
    fi
    exit 2
  fi
done

# --- throughput rounds ------------------------------------------------------------------
TSV=$WORK/runs.tsv
printf 'round\tmode\tpath\tmessages\tseconds\tmsgs_per_s\tproxy_cpu_us_per_msg\tupstream_connects\n' > "$TSV"
paths=(direct haproxy smtpbind)
echo
echo "== throughput (msg/s per run)"
for round in $(seq 1 "$ROUNDS"); do
  for mode in session reuse; do
    if [ "$mode" = reuse ]; then flags=(-d); n=$MSGS_REUSE; else flags=(); n=$MSGS; fi
    line="round $round $(printf '%-8s' "$mode")"
    for i in 0 1 2; do   # rotate the order each round
      path=${paths[$(((i + round) % 3))]}
      case $path in
        direct) port=$SINK_PORT; pid= ;;
        haproxy) port=$HAP_PORT; pid=$HAP_PID ;;
        smtpbind) port=$SB_PORT; pid=$SB_PID ;;
      esac
      relayed0=0; connects0=0
      if [ "$path" = smtpbind ]; then
        relayed0=$(metric smtpbind_messages_total 'result="relayed"')
        connects0=$(metric smtpbind_upstream_connect_seconds_count '')
      fi
      cpu0=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
      t0=$(date +%s%N)
      if ! source_run "$port" "$n" "${flags[@]}" >/dev/null 2>"$WORK/source.err"; then
        echo "bench: smtp-source through $path failed: $(cat "$WORK/source.err")" >&2; exit 2
      fi
      t1=$(date +%s%N)
      cpu1=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
      secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
      rate=$(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
      cpu_us=-; connects=-
      [ -n "$pid" ] && cpu_us=$(( (cpu1 - cpu0) * TICK_US / n ))
      if [ "$path" = smtpbind ]; then
        relayed=$(( $(metric smtpbind_messages_total 'result="relayed"') - relayed0 ))
        connects=$(( $(metric smtpbind_upstream_connect_seconds_count '') - connects0 ))
        if [ "$relayed" -ne "$n" ]; then
          echo "bench: smtpbind relayed $relayed of $n messages" >&2; exit 2
        fi
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$path" "$n" "$secs" "$rate" "$cpu_us" "$connects" >> "$TSV"
      line+="  $path $rate"
      sleep 0.5
    done
    echo "$line"
  done
done
echo
echo "== summary (median over $ROUNDS rounds; ratios are medians of per-round ratios; proxy CPU = the proxy process's user+sys time per message)"
python3 "$HERE/summarize.py" "$TSV"
echo "smtpbind new upstream connections per measurement (median): $(awk -F'\t' '$3 == "smtpbind" && $2 == "session" {print $8}' "$TSV" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') with 1 msg/session, $(awk -F'\t' '$3 == "smtpbind" && $2 == "reuse" {print $8}' "$TSV" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') with -d"

# --- memory -------------------------------------------------------------------------
echo
echo "== smtpbind memory"
echo "peak RSS (VmHWM) of the instance that ran the rounds: $(mib "$(kib "$SB_PID" VmHWM)") MiB; a fresh process for the rest:"
kill "$SB_PID"; wait "$SB_PID" 2>/dev/null || true
start_smtpbind
sleep 1
idle=$(kib "$SB_PID" VmRSS)
echo "idle RSS after start:                 $(mib "$idle") MiB ($idle KiB)"
source_run "$SB_PORT" 1 >/dev/null
sleep 0.5
warm=$(kib "$SB_PID" VmRSS)
echo "RSS after one 1 KiB message:          $(mib "$warm") MiB"
big=$((BIG_MIB * 1024 * 1024))
hwm0=$(kib "$SB_PID" VmHWM)
relayed0=$(metric smtpbind_messages_total 'result="relayed"')
t0=$(date +%s%N)
smtp-source -4 -m 1 -l "$big" -f bench@bench.example -t sink@bench.example -M bench.example \
  "127.0.0.1:$SB_PORT" >/dev/null 2>"$WORK/big.err" || { echo "bench: ${BIG_MIB} MiB message failed: $(cat "$WORK/big.err")" >&2; exit 2; }
t1=$(date +%s%N)
hwm1=$(kib "$SB_PID" VmHWM)
[ "$(( $(metric smtpbind_messages_total 'result="relayed"') - relayed0 ))" -eq 1 ] || { echo "bench: the ${BIG_MIB} MiB message was not relayed" >&2; exit 2; }
echo "VmHWM growth relaying a ${BIG_MIB} MiB message: $(mib $((hwm1 - hwm0))) MiB ($hwm0 -> $hwm1 KiB, $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", (b - a) / 1e9}') s)"
sleep 0.5
python3 "$HERE/hold_sessions.py" --addr "127.0.0.1:$SB_PORT" --pid "$SB_PID" --admin "127.0.0.1:$SB_ADMIN" \
  -n "$IDLE_SESSIONS" > "$WORK/hold.json"
python3 - "$WORK/hold.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
n = h["sessions"]
per = (h["rss_held_kib"] - h["rss_before_kib"]) / n
print(f"RSS with {n} idle client sessions:   {h['rss_held_kib'] / 1024:.1f} MiB "
      f"(+{(h['rss_held_kib'] - h['rss_before_kib']) / 1024:.1f} MiB, {per:.1f} KiB per session; "
      f"{h['greeted']} greeted, smtpbind_active_sessions {h['active_sessions_metric']:.0f}; "
      f"{h['rss_held_later_kib'] / 1024:.1f} MiB after holding)")
PY
sleep 1
echo "RSS after those sessions closed:      $(mib "$(kib "$SB_PID" VmRSS)") MiB (VmHWM $(mib "$(kib "$SB_PID" VmHWM)") MiB)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
