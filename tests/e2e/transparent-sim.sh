#!/usr/bin/env bash
# transparent-sim.sh — transparent mode (contract §11), simulated with network
# namespaces on one machine (root needed; no Docker, no Kubernetes). Modelled
# on pod-sim.sh.
#
#   upstream ns   `smtpbind capture` on [::]:587 (IPv4 and IPv6; STARTTLS with
#                 a CA of its own; accounts acme and globex, both `apikey`)
#   pod ns        the egress lock-down with SMTPBIND_REDIRECT=1 (NET_ADMIN
#                 only, as the init container), smtpbind as UID 65532 with
#                 client.tls (starttls: require, implicit_listen :4650) and a
#                 pair from `smtpbind tls-init --name <provider host>`, and a
#                 legacy mailer (smtp_probe.py, UID 1000) that still talks to
#                 the provider's host name (/etc/netns/<ns>/hosts), port 587
#                 with STARTTLS or 465 with TLS, verifying the pod-local CA.
#
# It shows: the mailer's message arrives under the pod's account through
# smtpbind without a change of host (the pod-local CA verifies: the real
# upstream's certificate would not); SMTPS on 465 too; IPv6 too; another
# tenant's key gets 535 with nothing upstream; smtpbind's own connection to
# :587 reaches the real upstream (no loop); the lock-down script is
# idempotent with the redirect and refuses a bad setting.
#
# Env: SMTPBIND_BIN (default <repo>/target/debug/smtpbind), KEEP_WORK=1.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${SMTPBIND_BIN:-$ROOT/target/debug/smtpbind}
LOCKDOWN=$ROOT/helm/smtpbind/files/egress-lockdown.sh
PROBE=$ROOT/tests/e2e/smtp_probe.py
SMTPBIND_UID=65532
MAILER_UID=1000
UP_NAME=smtp.provider.test
UP6_NAME=smtp6.provider.test
UP4=10.234.1.1
UP6=fd00:234::1

PASS=0
FAIL=0
PIDS=()
NAMESPACES=()
WORK=""
ID=$(( $$ % 100000 ))

say() { printf '%s\n' "$*"; }
die() { say "transparent-sim: $*" >&2; say "0 passed, 1 failed"; exit 1; }
pass() { PASS=$((PASS + 1)); say "ok   - $*"; }
fail() { FAIL=$((FAIL + 1)); say "FAIL - $*"; }
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }

teardown() {
  local rc=$? pid ns
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for ns in "${NAMESPACES[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP_WORK:-0}" = 1 ]; then say "transparent-sim: kept $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, iptables)"
[ -x "$BIN" ] || die "no smtpbind binary at $BIN"
missing=()
command -v iptables >/dev/null || missing+=(iptables)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/python3 ] || missing+=(python3)
# shellcheck source=SCRIPTDIR/sim-lib.sh
. "$ROOT/tests/e2e/sim-lib.sh"
sim_install "${missing[@]}"
sim_workdir transparent
probe() { local uid=$1; shift; asuid "$uid" "$POD" "$PY" "$WORK/smtp_probe.py" "$@"; }
json_field() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}
show_log() { [ -f "$1" ] && { say "---- $1"; tail -n 25 "$1"; say "----"; }; }

# ---- network: upstream + one pod, IPv4 and IPv6 ---------------------------------
UP=sbtr-up-$ID
POD=sbtr-pod-$ID
NAMESPACES+=("$UP" "$POD")
if ! { ip netns add "$UP" && ip netns add "$POD"; }; then die "ip netns add"; fi
ip link add "sbtu$ID" type veth peer name "sbtp$ID" || die "veth"
if ! { ip link set "sbtu$ID" netns "$UP" && ip link set "sbtp$ID" netns "$POD"; }; then die "veth netns"; fi
for ns in "$UP" "$POD"; do nsx "$ns" ip link set lo up; done
nsx "$UP" ip addr add "$UP4/30" dev "sbtu$ID"
nsx "$UP" ip -6 addr add "$UP6/64" dev "sbtu$ID" nodad
nsx "$POD" ip addr add 10.234.1.2/30 dev "sbtp$ID"
nsx "$POD" ip -6 addr add fd00:234::2/64 dev "sbtp$ID" nodad
if ! { nsx "$UP" ip link set "sbtu$ID" up && nsx "$POD" ip link set "sbtp$ID" up; }; then die "link up"; fi
# The mailer resolves the provider's name as it would in a cluster.
mkdir -p "/etc/netns/$POD"
printf '%s %s\n%s %s\n' "$UP4" "$UP_NAME" "$UP6" "$UP6_NAME" >"/etc/netns/$POD/hosts"
chmod 0644 "/etc/netns/$POD/hosts"

# ---- secrets, the upstream -------------------------------------------------------
declare -A KEY PIN
for t in acme globex; do
  KEY[$t]="SG.transparent-$t-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  PIN[$t]="sha256:$(printf '%s' "${KEY[$t]}" | sha256sum | cut -d' ' -f1)"
  mkdir -p "$WORK/accounts/$t"
  printf apikey >"$WORK/accounts/$t/username"
  printf '%s' "${KEY[$t]}" >"$WORK/accounts/$t/password"
done
mkdir -p "$WORK/log"
chmod -R go+rX "$WORK"
nsx "$UP" "$SB" capture --listen "[::]:587" --tls starttls --hostname "$UP_NAME" \
  --ca-out "$WORK/upstream-ca.pem" --account "acme=$WORK/accounts/acme" \
  --account "globex=$WORK/accounts/globex" --log-dir "$WORK/log" >"$WORK/capture.log" 2>&1 &
PIDS+=($!)
wait_for 30 grep -q '"event":"listening"' "$WORK/capture.log" || { show_log "$WORK/capture.log"; die "capture did not start"; }
wait_for 10 test -s "$WORK/upstream-ca.pem" || die "no upstream CA"
chmod 0644 "$WORK/upstream-ca.pem"

# ---- the pod: tls-init (init container), lock-down with redirect, smtpbind -------
"$SB" tls-init --dir "$WORK/client-tls" --name "$UP_NAME" --name "$UP6_NAME" >"$WORK/tls-init.log" 2>&1 \
  || { show_log "$WORK/tls-init.log"; die "tls-init failed"; }
chown -R "$SMTPBIND_UID" "$WORK/client-tls"
chmod 0644 "$WORK/client-tls/ca.crt"
check "tls-init wrote ca.crt, tls.crt, tls.key and no CA key" \
  test "$(cd "$WORK/client-tls" && printf '%s ' *)" = "ca.crt tls.crt tls.key "
mkdir -p "$WORK/secret" && printf apikey >"$WORK/secret/username" && printf '%s' "${KEY[acme]}" >"$WORK/secret/password"
chown -R "$SMTPBIND_UID" "$WORK/secret" && chmod 0700 "$WORK/secret"
cat >"$WORK/policy.yaml" <<EOF
version: 1
tenant: acme
listen: "127.0.0.1:2525"
admin: "127.0.0.1:9525"
upstream:
  address: "$UP4:587"
  tls: starttls
  ca_file: "$WORK/upstream-ca.pem"
  server_name: "$UP_NAME"
  connect_timeout: 5s
credential:
  secret_dir: "$WORK/secret"
  pins: ["${PIN[acme]}"]
client:
  accept: [{username: apikey, password: mounted}]
  tls:
    cert_dir: "$WORK/client-tls"
    starttls: require
    implicit_listen: "127.0.0.1:4650"
senders: ["*@acme.example"]
shutdown:
  drain: 1s
EOF
chmod 0644 "$WORK/policy.yaml"

lockdown() { # lockdown [ENV=VALUE...]: the init container, NET_ADMIN only
  nsx "$POD" env SMTPBIND_UID="$SMTPBIND_UID" SMTPBIND_REDIRECT=1 "$@" \
    setpriv --inh-caps=-all --bounding-set=-all,+net_admin sh "$LOCKDOWN"
}
lockdown >"$WORK/lockdown.log" 2>&1 || { show_log "$WORK/lockdown.log"; die "the lock-down script failed"; }
rules() { nsx "$POD" sh -c 'iptables-save; ip6tables-save' | grep -c SMTPBIND; }
n1=$(rules)
lockdown >"$WORK/lockdown2.log" 2>&1
check "lock-down with redirect is idempotent (rules: $n1 then $(rules))" test "$n1" = "$(rules)"
check "IPv4 and IPv6: nat OUTPUT jumps to the redirect chain" \
  nsx "$POD" sh -c "iptables -t nat -C OUTPUT -p tcp -m multiport --dports 25,465,587,2525 -j SMTPBIND-REDIRECT \
    && ip6tables -t nat -C OUTPUT -p tcp -m multiport --dports 25,465,587,2525 -j SMTPBIND-REDIRECT"
lockdown SMTPBIND_REDIRECT=yes >/dev/null 2>&1
check "a bad SMTPBIND_REDIRECT value fails the init container" test $? -ne 0

asuid "$SMTPBIND_UID" "$POD" "$SB" run --policy "$WORK/policy.yaml" >"$WORK/smtpbind.log" 2>&1 &
PIDS+=($!)
wait_for 30 nsx "$POD" curl -fsS -m 2 http://127.0.0.1:9525/readyz || { show_log "$WORK/smtpbind.log"; die "smtpbind not ready"; }
pass "smtpbind (UID $SMTPBIND_UID) is ready"

# ---- the mailer, unchanged: the provider's host name ------------------------------
lines() { if [ -f "$WORK/log/$1.jsonl" ]; then grep -c . "$WORK/log/$1.jsonl"; else echo 0; fi; }
recorded() { # recorded ACCOUNT RCPT: one TLS record of RCPT under ACCOUNT
  [ "$(grep -F "\"$2\"" "$WORK/log/$1.jsonl" 2>/dev/null | grep -c '"tls":true')" = 1 ]
}
send() { # send HOST PORT TLS KEY RCPT
  probe "$MAILER_UID" send --host "$1" --port "$2" --tls "$3" --cafile "$WORK/client-tls/ca.crt" \
    --user apikey --password "$4" --mail-from billing@acme.example --rcpt-to "$5" --subject transparent
}
for case in "$UP_NAME 587 starttls IPv4" "$UP_NAME 465 implicit IPv4" "$UP6_NAME 587 starttls IPv6" "$UP6_NAME 465 implicit IPv6"; do
  read -r host port mode fam <<<"$case"
  rcpt="tr-$mode-$port-$fam-$RANDOM@inbox.example"
  r=$(send "$host" "$port" "$mode" "${KEY[acme]}" "$rcpt")
  check "$fam: the mailer's $mode to $host:$port verifies the pod-local CA and gets 250 ($r)" \
    test "$(json_field "$r" code)" = 250
  wait_for 5 recorded acme "$rcpt"
  check "$fam: it arrived through smtpbind under account acme" recorded acme "$rcpt"
done
ev=$(grep '"event":"message"' "$WORK/smtpbind.log" | head -n1)
check "the audit event names the SNI the mailer asked for ($(json_field "$ev" client_sni))" \
  test "$(json_field "$ev" client_sni)" = "$UP_NAME"

before="$(lines acme):$(lines globex)"
r=$(send "$UP_NAME" 587 starttls "${KEY[globex]}" "tr-cross-$RANDOM@inbox.example")
check "another tenant's key through the redirect gets 535 ($r)" test "$(json_field "$r" code)" = 535
sleep 0.3
check "nothing reached the upstream after the refused AUTH" test "$(lines acme):$(lines globex)" = "$before"

# ---- no loop: smtpbind's own UID reaches the real upstream ---------------------------
r=$(probe "$SMTPBIND_UID" connect --host "$UP4" --port 587 --timeout 5)
check "UID $SMTPBIND_UID connects to the real upstream :587, not to itself ($r)" \
  bash -c "grep -q 'ESMTP capture' <<<'$(json_field "$r" banner)'"
r=$(probe "$MAILER_UID" connect --host "$UP4" --port 587 --timeout 5)
check "the mailer's :587 lands on smtpbind ($r)" \
  bash -c "grep -q 'ESMTP smtpbind' <<<'$(json_field "$r" banner)'"
r=$(probe "$MAILER_UID" send --host "$UP_NAME" --port 587 --user apikey --password "${KEY[acme]}" \
  --mail-from billing@acme.example --rcpt-to "tr-plain-$RANDOM@inbox.example")
check "require: a mailer that skips STARTTLS is not offered AUTH, so never sends its key ($r)" \
  test "$(json_field "$r" stage):$(json_field "$r" code)" = auth:0
r=$(probe "$MAILER_UID" send --host "$UP_NAME" --port 587 \
  --mail-from billing@acme.example --rcpt-to "tr-plain-$RANDOM@inbox.example")
check "require: MAIL before STARTTLS gets 530 ($r)" test "$(json_field "$r" code)" = 530

if [ "$FAIL" -gt 0 ]; then show_log "$WORK/smtpbind.log"; show_log "$WORK/capture.log"; show_log "$WORK/lockdown.log"; fi
say "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
