#!/usr/bin/env bash
# WAN benchmark: what a legacy mailer in the pod waits for per message when
# the provider is tens of milliseconds away. Everything runs on loopback; a
# link emulator (bench/wan.py link: a byte relay delaying each direction by
# DELAY_MS, default 20 ms = 40 ms RTT) stands between the sender side and the
# provider, which is smtpbind's own recording upstream (`smtpbind capture`:
# STARTTLS with a generated CA, AUTH, PIPELINING and CHUNKING offered, the
# profile of Gmail and Microsoft 365). Paths:
#   direct          client -> link -> capture (STARTTLS + AUTH by the client)
#   smtpbind        client -> smtpbind (loopback, AUTH) -> link -> capture,
#                   the pool of upstream connections on (policy default);
#                   the message goes upstream as BDAT (no 354 round trip)
#   smtpbind-pipelining-only  the same against a second capture (and link)
#                   offering PIPELINING but not CHUNKING (SendGrid, SES):
#                   DATA upstream; PIPELINING_ONLY=0 skips it
#   smtpbind-noreuse  the same with upstream.reuse.max_idle: 0
#   postfix         client -> a private Postfix instance (loopback, no AUTH)
#                   relayhost [localhost]:link, STARTTLS verified + SASL; also
#                   the time until the upstream has the message (capture log)
#   smtpbind-tls    (only if the binary accepts client.tls) client STARTTLS to smtpbind
# The legacy client (bench/wan.py measure) runs one message per session, no
# pipelining, sequentially and with CONC concurrent clients, in ROUNDS
# interleaved rounds; every figure is printed as a ratio to `direct` of the
# same run. See bench/README.md.
#
# Env: DELAY_MS (20), ROUNDS (5), SEQ (20 sessions per path per round),
# NICE (-10 as root: all benchmark processes), CONC (8), PER_CLIENT (5 sessions per concurrent client per round), SIZE (1024),
# TRACE_N (5 sessions per path for the per-step timing), SMTPBIND_BIN (default:
# scripts/build-release.sh), POSTFIX=0 skips Postfix, PIPELINING_ONLY=0 skips
# the second provider profile,
# KEEP=1 keeps the work dir.
# Cold bursts: IDLE_TIMEOUT (the sidecars' upstream.reuse.idle_timeout; default:
# the policy default) and COLD_WAIT (seconds without traffic before each path's
# first burst; longer than IDLE_TIMEOUT makes every first burst cold), and
# BASELINE_BIN (another smtpbind binary, e.g. the build before a change: adds a
# pooled path `smtpbind-baseline` measured in the same run); BURST_STAGGER_MS
# (also a burst of CONC sessions started this far apart, after another COLD_WAIT);
# CLIENTTLS=0 skips the client.tls path; CLIENT_PIPELINING=1 makes the client
# pipeline MAIL, RCPT and DATA in one write (nodemailer's and Postfix's way).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck source=SCRIPTDIR/../tests/interop/postfix-master.sh
. "$ROOT/tests/interop/postfix-master.sh"

DELAY_MS=${DELAY_MS:-20}
ROUNDS=${ROUNDS:-5}
SEQ=${SEQ:-20}
CONC=${CONC:-8}
PER_CLIENT=${PER_CLIENT:-5}
SIZE=${SIZE:-1024}
POSTFIX=${POSTFIX:-1}
PIPELINING_ONLY=${PIPELINING_ONLY:-1}
# Every process of the benchmark runs at this nice value (root only): on a
# shared machine, other work's CPU would otherwise add scheduling delay to each
# of the ~11 hops of a message and blur the round-trip counts.
NICE=${NICE:--10}
[ "$(id -u)" -eq 0 ] || NICE=0
N=(nice -n "$NICE")

# --- tools (idempotent) ------------------------------------------------------------
need=()
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
if [ "$POSTFIX" = 1 ]; then
  command -v postfix >/dev/null || need+=(postfix)
  dpkg-query -W -f='${Status}' libsasl2-modules 2>/dev/null | grep -q 'install ok installed' || need+=(libsasl2-modules)
fi
bench_need wan "${need[@]}"
bench_binary
bench_workdir wan
PF_CONF=
cleanup() {
  if [ -n "$PF_CONF" ] && [ -f "$PF_CONF/main.cf" ]; then
    postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
      pid=$(tr -dc 0-9 < "$WORK/pf/data/master.lock" 2>/dev/null || true)
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then break; fi
      sleep 0.1
    done
  fi
  bench_stop_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_220() { # wait_220 PORT: until it answers 220
  for _ in $(seq 1 150); do
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 3 <&3" 2>/dev/null | grep -q 220; then return 0; fi
    sleep 0.1
  done
  echo "wan: nothing answers 220 on 127.0.0.1:$1" >&2; return 1
}
write_secret() { # DIR USER PASS (the kubelet's layout)
  local ts="..2026_01_01_00_00_00.000000001"
  mkdir -p "$1/$ts"
  printf '%s' "$2" > "$1/$ts/username"; printf '%s' "$3" > "$1/$ts/password"
  ln -sfn "$ts" "$1/..data"; ln -sfn ..data/username "$1/username"; ln -sfn ..data/password "$1/password"
}

CAP_PORT=$(free_port); LINK_PORT=$(free_port)
CAP2_PORT=$(free_port); LINK2_PORT=$(free_port)
SBP_PORT=$(free_port); SBP_ADMIN=$(free_port)
SB_PORT=$(free_port); SB_ADMIN=$(free_port)
SBN_PORT=$(free_port); SBN_ADMIN=$(free_port)
PF_PORT=$(free_port)
USER_NAME=wan-user
PASSWORD="wan-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
write_secret "$WORK/secret" "$USER_NAME" "$PASSWORD"
PIN=$("$SMTPBIND_BIN" fingerprint "$WORK/secret/password")

# --- the provider: capture (STARTTLS, AUTH, PIPELINING, CHUNKING), and the link to it
start_provider() { # NAME CAPTURE-PORT LINK-PORT CAPTURE-FLAGS...
  local name=$1 cap=$2 link=$3; shift 3
  "${N[@]}" "$SMTPBIND_BIN" capture --account "wan=$WORK/secret" --listen "127.0.0.1:$cap" \
    --tls starttls --ca-out "$WORK/$name-ca.pem" --log-dir "$WORK/$name-log" "$@" >"$WORK/$name.out" 2>&1 &
  PIDS+=("$!")
  wait_220 "$cap"
  "${N[@]}" python3 "$HERE/wan.py" link --listen "127.0.0.1:$link" --to "127.0.0.1:$cap" \
    --delay-ms "$DELAY_MS" >"$WORK/$name-link.out" 2>&1 &
  PIDS+=("$!")
  wait_220 "$link"
}
start_provider capture "$CAP_PORT" "$LINK_PORT" --chunking
mv "$WORK/capture-ca.pem" "$WORK/ca.pem"; ln -s capture-log "$WORK/caplog"
if [ "$PIPELINING_ONLY" = 1 ]; then
  start_provider capture2 "$CAP2_PORT" "$LINK2_PORT"
fi

# --- smtpbind, pooled and with reuse off ---------------------------------------------
write_policy() { # FILE PORT ADMIN MAX_IDLE [EXTRA-CLIENT-LINES]; UP_LINK/UP_CA: another provider
  mkdir -p "$(dirname "$1")"
  cat > "$1" <<CONF
version: 1
tenant: wan
listen: 127.0.0.1:$2
admin: 127.0.0.1:$3
upstream:
  address: 127.0.0.1:${UP_LINK:-$LINK_PORT}
  tls: starttls
  ca_file: ${UP_CA:-$WORK/ca.pem}
  server_name: localhost
  reuse:
    max_idle: $4${IDLE_TIMEOUT:+
    idle_timeout: $IDLE_TIMEOUT}
credential:
  secret_dir: $WORK/secret
  mechanism: auto
  pins: [ "$PIN" ]
client:
  auth: required
  accept:
    - username: apikey
      password: mounted
${5:-}
senders: [ "*@acme.example" ]
header_from: enforce
CONF
}
start_sb() { # NAME POLICY PORT [BINARY]
  "${N[@]}" "${4:-$SMTPBIND_BIN}" run --policy "$2" >"$WORK/$1.log" 2>&1 &
  PIDS+=("$!")
  wait_220 "$3"
}
write_policy "$WORK/p-pool/policy.yaml" "$SB_PORT" "$SB_ADMIN" 16
write_policy "$WORK/p-noreuse/policy.yaml" "$SBN_PORT" "$SBN_ADMIN" 0
"$SMTPBIND_BIN" check --credentials "$WORK/p-pool/policy.yaml" "$WORK/p-noreuse/policy.yaml" >/dev/null
start_sb smtpbind "$WORK/p-pool/policy.yaml" "$SB_PORT"
start_sb smtpbind-noreuse "$WORK/p-noreuse/policy.yaml" "$SBN_PORT"

if [ "$PIPELINING_ONLY" = 1 ]; then
  UP_LINK=$LINK2_PORT UP_CA=$WORK/capture2-ca.pem write_policy "$WORK/p-pipe/policy.yaml" "$SBP_PORT" "$SBP_ADMIN" 16
  start_sb smtpbind-pipelining-only "$WORK/p-pipe/policy.yaml" "$SBP_PORT"
fi

PATHS="[{\"name\":\"direct\",\"host\":\"127.0.0.1\",\"port\":$LINK_PORT,\"starttls\":true,\"server_name\":\"localhost\",\"auth\":[\"$USER_NAME\",\"$PASSWORD\"]}"
PATHS+=",{\"name\":\"smtpbind\",\"host\":\"127.0.0.1\",\"port\":$SB_PORT,\"auth\":[\"apikey\",\"$PASSWORD\"]}"
[ "$PIPELINING_ONLY" = 1 ] && PATHS+=",{\"name\":\"smtpbind-pipelining-only\",\"host\":\"127.0.0.1\",\"port\":$SBP_PORT,\"auth\":[\"apikey\",\"$PASSWORD\"]}"
PATHS+=",{\"name\":\"smtpbind-noreuse\",\"host\":\"127.0.0.1\",\"port\":$SBN_PORT,\"auth\":[\"apikey\",\"$PASSWORD\"]}"
if [ -n "${BASELINE_BIN:-}" ]; then
  SBB_PORT=$(free_port); SBB_ADMIN=$(free_port)
  write_policy "$WORK/p-baseline/policy.yaml" "$SBB_PORT" "$SBB_ADMIN" 16
  start_sb smtpbind-baseline "$WORK/p-baseline/policy.yaml" "$SBB_PORT" "$BASELINE_BIN"
  PATHS+=",{\"name\":\"smtpbind-baseline\",\"host\":\"127.0.0.1\",\"port\":$SBB_PORT,\"auth\":[\"apikey\",\"$PASSWORD\"]}"
fi

# --- smtpbind with TLS from the mailer (client.tls), when this binary has it --------
CLIENT_TLS="not measured: this smtpbind does not accept client.tls"
SBT_PORT=$(free_port); SBT_ADMIN=$(free_port)
# contract §11: client.tls.cert_dir (tls.crt, tls.key), starttls: offer; the pair from `smtpbind tls-init`
"$SMTPBIND_BIN" tls-init --dir "$WORK/ctls" >/dev/null 2>&1 || true
write_policy "$WORK/p-tls/policy.yaml" "$SBT_PORT" "$SBT_ADMIN" 16 \
  "  tls:
    cert_dir: $WORK/ctls
    starttls: offer"
if [ "${CLIENTTLS:-1}" = 1 ] && [ -f "$WORK/ctls/tls.crt" ] && "$SMTPBIND_BIN" check "$WORK/p-tls/policy.yaml" >"$WORK/p-tls.check" 2>&1; then
  start_sb smtpbind-tls "$WORK/p-tls/policy.yaml" "$SBT_PORT"
  PATHS+=",{\"name\":\"smtpbind-clienttls\",\"host\":\"127.0.0.1\",\"port\":$SBT_PORT,\"starttls\":true,\"server_name\":\"localhost\",\"ca\":\"$WORK/ctls/ca.crt\",\"auth\":[\"apikey\",\"$PASSWORD\"]}"
  CLIENT_TLS="measured (client.tls starttls, self-signed cert on loopback)"
fi

# --- a private Postfix instance as the local relay ----------------------------------
if [ "$POSTFIX" = 1 ]; then
  PF_CONF=$WORK/pf/conf
  mkdir -p "$PF_CONF" "$WORK/pf/queue" "$WORK/pf/data"
  chown postfix "$WORK/pf/data"
  cat > "$PF_CONF/main.cf" <<CONF
compatibility_level = 3.6
config_directory = $PF_CONF
queue_directory = $WORK/pf/queue
data_directory = $WORK/pf/data
meta_directory = /etc/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.wan.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
mydestination =
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
maillog_file = $WORK/pf/postfix.log
maillog_file_prefixes = $WORK
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [localhost]:$LINK_PORT
smtp_host_lookup = native
smtp_tls_security_level = verify
smtp_tls_verify_cert_match = hostname
smtp_tls_CAfile = $WORK/ca.pem
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = static:$USER_NAME:$PASSWORD
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
CONF
  postfix_master_cf "$PF_PORT" \
    "smtp      unix  - - n -  - smtp" \
    "relay     unix  - - n -  - smtp" > "$PF_CONF/master.cf"
  postfix -c "$PF_CONF" check >"$WORK/pf.check" 2>&1 || { cat "$WORK/pf.check" >&2; exit 2; }
  "${N[@]}" postfix -c "$PF_CONF" start >"$WORK/pf.start" 2>&1 || { cat "$WORK/pf.start" >&2; exit 2; }
  wait_220 "$PF_PORT"
  PATHS+=",{\"name\":\"postfix\",\"host\":\"127.0.0.1\",\"port\":$PF_PORT,\"delivery_log\":\"$WORK/caplog/wan.jsonl\"}"
fi
PATHS+="]"

# --- the machine ---------------------------------------------------------------------
echo "== machine"
echo "cpus: $(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "smtpbind: $("$SMTPBIND_BIN" --version) ($SMTPBIND_BIN)"
[ "$POSTFIX" = 1 ] && echo "postfix: $(postconf -c "$PF_CONF" -h mail_version)"
echo "python: $(python3 --version 2>&1) (client and link emulator)"
echo "link: ${DELAY_MS} ms each way ($((DELAY_MS * 2)) ms RTT), no loss, no bandwidth limit; upstream: smtpbind capture (STARTTLS, AUTH PLAIN/LOGIN, PIPELINING and CHUNKING offered: Gmail/Microsoft 365-like)"
[ "$PIPELINING_ONLY" = 1 ] && echo "smtpbind-pipelining-only: a second capture and link offering PIPELINING without CHUNKING (SendGrid/SES-like)"
echo "client.tls: $CLIENT_TLS"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (benchmark processes at nice $NICE)"
echo "load: 1 KiB-ish messages ($SIZE bytes), $ROUNDS rounds; per path per round: a burst of $CONC (not counted), $SEQ sequential sessions, $CONC clients x $PER_CLIENT sessions"

CLIENT_ARGS=()
[ "${CLIENT_PIPELINING:-0}" = 1 ] && CLIENT_ARGS=(--pipelining) && echo "client: pipelines MAIL, RCPT and DATA (CLIENT_PIPELINING=1)"
"${N[@]}" python3 "$HERE/wan.py" trace --paths "$PATHS" --ca "$WORK/ca.pem" --n "${TRACE_N:-5}" --size "$SIZE" \
  --rtt-ms "$((DELAY_MS * 2))" "${CLIENT_ARGS[@]}"
"${N[@]}" python3 "$HERE/wan.py" measure --paths "$PATHS" --ca "$WORK/ca.pem" --rounds "$ROUNDS" \
  --seq "$SEQ" --conc "$CONC" --per-client "$PER_CLIENT" --size "$SIZE" \
  --rtt-ms "$((DELAY_MS * 2))" --cold-wait "${COLD_WAIT:-0}" --burst-stagger-ms "${BURST_STAGGER_MS:-0}" --json-out "$WORK/result.json" "${CLIENT_ARGS[@]}"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
sb_metrics() { # NAME ADMIN-PORT
  echo "$1: $(curl -s "http://127.0.0.1:$2/metrics" | grep -E '^smtpbind_(messages_total|upstream_reuse_total|upstream_connect_seconds_count|upstream_burst_warmups_total|upstream_prewarm_total)' | tr '\n' ' ')"
}
sb_metrics smtpbind "$SB_ADMIN"
sb_metrics smtpbind-noreuse "$SBN_ADMIN"
[ -n "${BASELINE_BIN:-}" ] && sb_metrics smtpbind-baseline "$SBB_ADMIN"
[ "$PIPELINING_ONLY" = 1 ] && sb_metrics smtpbind-pipelining-only "$SBP_ADMIN"
echo "verbs the providers saw: capture $(cat "$WORK"/capture-log/*.jsonl | grep -o '"verb":"[A-Z]*"' | sort | uniq -c | tr -s ' \n' ' ')"
if [ "$PIPELINING_ONLY" = 1 ]; then
  echo "  capture2 $(cat "$WORK"/capture2-log/*.jsonl | grep -o '"verb":"[A-Z]*"' | sort | uniq -c | tr -s ' \n' ' ')"
fi
