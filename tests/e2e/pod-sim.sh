#!/usr/bin/env bash
# pod-sim.sh — the two-tenant Kubernetes deployment, simulated with network
# namespaces on one machine (root needed; no Docker, no Kubernetes).
#
#   upstream ns   `smtpbind capture` on :587 (STARTTLS with a CA it generates,
#                 AUTH for the accounts acme and globex, both username `apikey`,
#                 one JSON line per accepted message in <account>.jsonl)
#   pod ns (x2)   smtpbind as UID 65532 with its tenant's Secret laid out as the
#                 kubelet does (..<timestamp>/ + ..data + symlinks), a policy
#                 whose ca_file is the capture's CA, the chart's egress
#                 lock-down rules (helm/smtpbind/files/egress-lockdown.sh, run
#                 with NET_ADMIN as its only capability, as the init container
#                 is), and a legacy mailer (tests/e2e/smtp_probe.py) as UID 1000.
#
# It shows: mail through each sidecar arrives under its tenant's account and
# not the other's; the mailer's direct connection to the upstream is refused
# after the lock-down (open before it) while UID 65532's succeeds; the other
# tenant's key gets 535 and a foreign sender 550, with nothing sent upstream;
# a Secret update through the ..data swap reaches smtpbind (unpinned key: not
# ready, 421; pinned key back: mail flows). Then a third pod is created the way
# a tenant's own chart creates it, patched by `smtpbind webhook` (over HTTPS),
# and run as patched: lock-down first, then the injected native sidecar with its
# volumes at their mount paths, then the mailer with SMTP_HOST/SMTP_PORT from
# the patch; its mail arrives under account acme, and /validate refuses the
# same pod holding the Secret in its mailer or another tenant's Secret.
#
# Issue 18 (contract §8 rules 5 and 7): the runtime bypasses of the lock-down
# — a root mailer with containerd's default capabilities becomes UID 65532
# (setpriv --reuid) or writes a SYN to an AF_PACKET socket (raw_syn.py) — get
# through, and fail with rule 5's securityContext (modelled with setpriv: the
# bounding set without NET_RAW/SETUID/SETGID, no_new_privs; and as /mutate
# patches a mailer with no securityContext); globex's lock-down covers SES's
# 2465/2587; bad SMTPBIND_LOCKDOWN_PORTS are refused; the injected sidecar
# runs with its SMTPBIND_UPSTREAM_PIN, and a policy edit that redirects the
# key makes it not ready (421, nothing sent) until the policy is put back.
#
# Each pod namespace is joined to the upstream namespace by a veth pair with a
# /30 of 10.233.0.0/16; no namespace has a default route, so nothing leaves them.
# Everything is torn down by a trap, whatever happens.
#
# Env: SMTPBIND_BIN (default <repo>/target/debug/smtpbind), KEEP_WORK=1 keeps
# the work directory (logs, policies) for a look after the run.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${SMTPBIND_BIN:-$ROOT/target/debug/smtpbind}
LOCKDOWN=$ROOT/helm/smtpbind/files/egress-lockdown.sh
PROBE=$ROOT/tests/e2e/smtp_probe.py
SMTPBIND_UID=65532
MAILER_UID=1000
UP_PORT=587
UP_NAME=smtp.upstream.test
# the ports each pod's lock-down covers (the chart's lockdownPorts per tenant):
# acme the default, globex an SES tenant (SES also listens on 2465 and 2587)
declare -A LOCK_PORTS=([acme]="25,465,587,2525" [globex]="25,465,587,2525,2465,2587")
SES_PORT=2587

PASS=0
FAIL=0
PIDS=()
NAMESPACES=()
MADE_DIRS=()
WORK=""
ID=$(( $$ % 100000 ))

say() { printf '%s\n' "$*"; }
die() {
  say "pod-sim: $*" >&2
  say "0 passed, 1 failed"
  exit 1
}
pass() { PASS=$((PASS + 1)); say "ok   - $*"; }
fail() { FAIL=$((FAIL + 1)); say "FAIL - $*"; }

# check NAME COMMAND...: one assertion
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

teardown() {
  local rc=$? pid ns
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.3
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for ns in "${NAMESPACES[@]}"; do
    # anything still running in a namespace this script created was started by it
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  # mount points this script created for the webhook-injected pod (empty: only mounted over in its own namespace)
  for d in "${MADE_DIRS[@]}"; do find "$d" -depth -type d -empty -delete 2>/dev/null; done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP_WORK:-0}" = 1 ]; then
      say "pod-sim: work directory kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- prerequisites ------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, iptables)"
[ -x "$BIN" ] || die "no smtpbind binary at $BIN (cargo build first, or set SMTPBIND_BIN)"
missing=()
command -v iptables >/dev/null || missing+=(iptables)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v setcap >/dev/null || missing+=(libcap2-bin)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/python3 ] || missing+=(python3)
command -v ip >/dev/null || missing+=(iproute2)
# shellcheck source=SCRIPTDIR/sim-lib.sh
. "$ROOT/tests/e2e/sim-lib.sh"
if [ ${#missing[@]} -gt 0 ]; then
  say "pod-sim: installing ${missing[*]}"
  sim_install "${missing[@]}"
fi
# the mailer runs as another UID: the work dir holds what that UID runs
sim_workdir podsim
probe() { local uid=$1 ns=$2; shift 2; asuid "$uid" "$ns" "$PY" "$WORK/smtp_probe.py" "$@"; }
# json_field JSON KEY
json_field() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }

# wait_for SECONDS COMMAND...
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

show_log() {
  local f=$1
  [ -f "$f" ] || return 0
  say "---- last lines of $f"
  tail -n 25 "$f"
  say "----"
}

# ---- network: upstream + two pods -----------------------------------------------
UP=sbsim-up-$ID
NAMESPACES+=("$UP")
ip netns add "$UP" || die "ip netns add failed"
nsx "$UP" ip link set lo up

declare -A POD_NS UP_IP
setup_pod() { # setup_pod TENANT INDEX
  local t=$1 i=$2 ns=sbsim-$1-$ID
  NAMESPACES+=("$ns")
  ip netns add "$ns" || return 1
  nsx "$ns" ip link set lo up || return 1
  ip link add "sb${i}u$ID" type veth peer name "sb${i}p$ID" || return 1
  ip link set "sb${i}u$ID" netns "$UP" || return 1
  ip link set "sb${i}p$ID" netns "$ns" || return 1
  nsx "$UP" ip addr add "10.233.$i.1/30" dev "sb${i}u$ID" || return 1
  nsx "$UP" ip link set "sb${i}u$ID" up || return 1
  nsx "$ns" ip addr add "10.233.$i.2/30" dev "sb${i}p$ID" || return 1
  nsx "$ns" ip link set "sb${i}p$ID" up || return 1
  POD_NS[$t]=$ns
  UP_IP[$t]=10.233.$i.1
}
setup_pod acme 1 || die "could not set up the acme pod namespace"
setup_pod globex 2 || die "could not set up the globex pod namespace"
say "pod-sim: namespaces $UP ${POD_NS[acme]} ${POD_NS[globex]}"

# ---- tenant credentials, laid out as the kubelet mounts a Secret ----------------
# <dir>/..2026_01_02_03_04_05.123456789/{username,password}
# <dir>/..data -> ..2026_01_02_03_04_05.123456789
# <dir>/username -> ..data/username, <dir>/password -> ..data/password
declare -A KEY PIN
make_secret() { # make_secret DIR USERNAME PASSWORD
  local dir=$1 ts
  ts="..$(date -u +%Y_%m_%d_%H_%M_%S).$(printf '%09d' "$RANDOM$RANDOM")"
  mkdir -p "$dir/$ts" || return 1
  printf '%s' "$2" >"$dir/$ts/username"
  printf '%s' "$3" >"$dir/$ts/password"
  chmod 0444 "$dir/$ts/username" "$dir/$ts/password"
  chmod 0755 "$dir" "$dir/$ts"
  ln -s "$ts" "$dir/..data"
  ln -s ..data/username "$dir/username"
  ln -s ..data/password "$dir/password"
}
for t in acme globex; do
  KEY[$t]="SG.podsim-$t-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  PIN[$t]="sha256:$(printf '%s' "${KEY[$t]}" | sha256sum | cut -d' ' -f1)"
  mkdir -p "$WORK/$t" && chmod 0755 "$WORK/$t"
  make_secret "$WORK/$t/secret" apikey "${KEY[$t]}" || die "could not lay out the $t Secret"
  # the provider's side of the same account
  mkdir -p "$WORK/upstream/accounts/$t"
  printf '%s' apikey >"$WORK/upstream/accounts/$t/username"
  printf '%s' "${KEY[$t]}" >"$WORK/upstream/accounts/$t/password"
done
check "Secret layout: password resolves through ..data to a timestamped directory" \
  test "$(readlink -f "$WORK/acme/secret/password")" = "$(readlink -f "$WORK/acme/secret/..data")/password"

# ---- the upstream -------------------------------------------------------------
mkdir -p "$WORK/upstream/log"
chmod -R go+rX "$WORK/upstream"
nsx "$UP" "$SB" capture --listen "0.0.0.0:$UP_PORT" --tls starttls --hostname "$UP_NAME" \
  --ca-out "$WORK/upstream/ca.pem" \
  --account "acme=$WORK/upstream/accounts/acme" \
  --account "globex=$WORK/upstream/accounts/globex" \
  --log-dir "$WORK/upstream/log" >"$WORK/upstream/capture.log" 2>&1 &
PIDS+=($!)
if ! wait_for 30 grep -q '"event":"listening"' "$WORK/upstream/capture.log"; then
  show_log "$WORK/upstream/capture.log"
  die "the capture upstream did not report listening"
fi
wait_for 10 test -s "$WORK/upstream/ca.pem" || die "the capture upstream wrote no CA to $WORK/upstream/ca.pem"
chmod 0644 "$WORK/upstream/ca.pem"
say "pod-sim: capture upstream listening on :$UP_PORT in $UP"
# the provider's other port (as SES's 2587), to tell "refused by the lock-down" from "nothing listens"
nsx "$UP" "$SB" capture --listen "0.0.0.0:$SES_PORT" --tls starttls --hostname "$UP_NAME" \
  --account "acme=$WORK/upstream/accounts/acme" >"$WORK/upstream/capture-$SES_PORT.log" 2>&1 &
PIDS+=($!)
wait_for 30 grep -q '"event":"listening"' "$WORK/upstream/capture-$SES_PORT.log" \
  || die "the second capture upstream (:$SES_PORT) did not report listening"

# ---- before the lock-down: the path to the upstream is open ---------------------
r=$(probe "$MAILER_UID" "${POD_NS[acme]}" connect --host "${UP_IP[acme]}" --port "$UP_PORT" --timeout 5)
check "control: before the lock-down the mailer (UID $MAILER_UID) reaches the upstream directly ($r)" \
  test "$(json_field "$r" ok)" = True

# ---- per pod: lock-down (init container), then smtpbind (sidecar) ----------------
write_policy() { # write_policy TENANT
  local t=$1
  cat >"$WORK/$t/policy.yaml" <<EOF
# the shape the Helm chart renders (helm/smtpbind/templates/_helpers.tpl), with this simulation's paths
version: 1
tenant: "$t"
listen: "127.0.0.1:2525"
admin: "0.0.0.0:9525"
upstream:
  address: "${UP_IP[$t]}:$UP_PORT"
  tls: "starttls"
  ca_file: "$WORK/upstream/ca.pem"
  server_name: "$UP_NAME"
  connect_timeout: "5s"
credential:
  secret_dir: "$WORK/$t/secret"
  mechanism: "auto"
  pins: ["${PIN[$t]}"]
client:
  auth: "required"
  accept:
    - username: "apikey"
      password: "mounted"
senders: ["*@$t.example"]
header_from: "enforce"
data:
  bare_lf: "reject"
shutdown:
  drain: "2s"
EOF
  chmod 0644 "$WORK/$t/policy.yaml"
}

for t in acme globex; do
  ns=${POD_NS[$t]}
  write_policy "$t"
  # the init container: root with NET_ADMIN as its only capability
  if ! nsx "$ns" env SMTPBIND_UID="$SMTPBIND_UID" SMTPBIND_LOCKDOWN_PORTS="${LOCK_PORTS[$t]}" \
      setpriv --inh-caps=-all --bounding-set=-all,+net_admin sh "$LOCKDOWN" >"$WORK/$t/lockdown.log" 2>&1; then
    show_log "$WORK/$t/lockdown.log"
    die "the egress lock-down script failed in the $t pod"
  fi
  check "$t: lock-down rules installed for IPv4 and IPv6" \
    nsx "$ns" sh -c "iptables -C OUTPUT -p tcp -m multiport --dports ${LOCK_PORTS[$t]} -j SMTPBIND-EGRESS && ip6tables -C OUTPUT -p tcp -m multiport --dports ${LOCK_PORTS[$t]} -j SMTPBIND-EGRESS"

  asuid "$SMTPBIND_UID" "$ns" "$SB" check "$WORK/$t/policy.yaml" --credentials >"$WORK/$t/check.log" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then pass "$t: smtpbind check --credentials accepts the policy and the mounted Secret"; else
    fail "$t: smtpbind check --credentials (exit $rc)"; show_log "$WORK/$t/check.log"; fi

  asuid "$SMTPBIND_UID" "$ns" "$SB" run --policy "$WORK/$t/policy.yaml" >"$WORK/$t/smtpbind.log" 2>&1 &
  PIDS+=($!)
done

for t in acme globex; do
  ns=${POD_NS[$t]}
  if wait_for 30 nsx "$ns" curl -fsS -m 2 http://127.0.0.1:9525/readyz; then
    pass "$t: smtpbind (UID $SMTPBIND_UID) is ready (/readyz 200)"
  else
    fail "$t: smtpbind never became ready"
    show_log "$WORK/$t/smtpbind.log"
  fi
  check "$t: smtpbind runs as UID $SMTPBIND_UID" \
    test "$(ps -o uid= -p "$(nsx "$ns" ss -Hltnp 'sport = :2525' | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)" | tr -d ' ')" = "$SMTPBIND_UID"
  check "$t: smtpbind listens on loopback only" \
    test "$(nsx "$ns" ss -Hltn 'sport = :2525' | awk '{print $4}')" = "127.0.0.1:2525"
done

# ---- mail through each tenant's sidecar arrives under that tenant's account --------
count_lines() { # count_lines ACCOUNT
  local f="$WORK/upstream/log/$1.jsonl"
  if [ -f "$f" ]; then grep -c . "$f"; else echo 0; fi
}
# capture_has ACCOUNT RCPT MAIL_FROM: a line for this message with the right identity
capture_has() {
  "$PY" - "$WORK/upstream/log/$1.jsonl" "$1" "$2" "$3" <<'EOF'
import json, sys
path, account, rcpt, mail_from = sys.argv[1:5]
try:
    lines = [json.loads(l) for l in open(path) if l.strip()]
except FileNotFoundError:
    sys.exit(1)
hits = [l for l in lines if rcpt in l.get("rcpt_to", [])]
ok = len(hits) == 1 and hits[0].get("account") == account and hits[0].get("username") == "apikey" \
    and hits[0].get("mail_from") == mail_from and hits[0].get("tls") is True
sys.exit(0 if ok else 1)
EOF
}
capture_lacks() { # capture_lacks ACCOUNT RCPT
  local f="$WORK/upstream/log/$1.jsonl"
  [ ! -f "$f" ] || ! grep -qF "$2" "$f"
}

declare -A RCPT
for t in acme globex; do
  other=acme; [ "$t" = acme ] && other=globex
  RCPT[$t]="to-$t-$RANDOM$RANDOM@inbox.example"
  r=$(probe "$MAILER_UID" "${POD_NS[$t]}" send --host 127.0.0.1 --port 2525 --user apikey --password "${KEY[$t]}" \
    --mail-from "billing@$t.example" --rcpt-to "${RCPT[$t]}" --subject "pod-sim $t")
  check "$t: the mailer's message is accepted with 250 through the sidecar ($r)" \
    test "$(json_field "$r" code)" = 250
  wait_for 5 capture_has "$t" "${RCPT[$t]}" "billing@$t.example"
  check "$t: the upstream logged it under account $t (username apikey, TLS)" \
    capture_has "$t" "${RCPT[$t]}" "billing@$t.example"
  check "$t: the upstream did not log it under account $other" \
    capture_lacks "$other" "${RCPT[$t]}"
done

# ---- the lock-down: only smtpbind's UID reaches the upstream's SMTP port ----------
for t in acme globex; do
  ns=${POD_NS[$t]}
  r=$(probe "$MAILER_UID" "$ns" connect --host "${UP_IP[$t]}" --port "$UP_PORT" --timeout 5)
  check "$t: the mailer's direct connection to upstream :$UP_PORT is refused ($r)" \
    test "$(json_field "$r" error)" = refused
  # root in the app container, but without NET_ADMIN / NET_RAW (the chart drops them)
  r=$(nsx "$ns" setpriv --inh-caps=-all --bounding-set=-all,+chown,+dac_override,+fowner,+kill,+net_bind_service \
    "$PY" "$WORK/smtp_probe.py" connect --host "${UP_IP[$t]}" --port "$UP_PORT" --timeout 5)
  check "$t: a root process without NET_ADMIN is refused as well ($r)" \
    test "$(json_field "$r" error)" = refused
  r=$(probe "$SMTPBIND_UID" "$ns" connect --host "${UP_IP[$t]}" --port "$UP_PORT" --timeout 5)
  check "$t: smtpbind's UID $SMTPBIND_UID connects to upstream :$UP_PORT ($r)" \
    test "$(json_field "$r" ok)" = True
done
# per-tenant ports: the provider's :$SES_PORT is outside acme's list, inside globex's (SES)
r=$(probe "$MAILER_UID" "${POD_NS[acme]}" connect --host "${UP_IP[acme]}" --port "$SES_PORT" --timeout 5)
check "acme: ports outside its lock-down stay open: the mailer reaches the provider's :$SES_PORT ($r)" \
  test "$(json_field "$r" ok)" = True
r=$(probe "$MAILER_UID" "${POD_NS[globex]}" connect --host "${UP_IP[globex]}" --port "$SES_PORT" --timeout 5)
check "globex (SES ports): the mailer's direct connection to the provider's :$SES_PORT is refused ($r)" \
  test "$(json_field "$r" error)" = refused

# ---- the two runtime bypasses of the lock-down, and the securityContext that closes them ----
# A mailer with no securityContext runs with the runtime's default capabilities
# (containerd's list below) and, when its image says USER root, as root: the
# webhook cannot see an image's USER. Then (1) CAP_SETUID/SETGID let it become
# smtpbind's UID, which the lock-down lets through, and (2) CAP_NET_RAW lets it
# write TCP segments to an AF_PACKET socket, which netfilter never sees. Rule 5
# (contract §8) is what /mutate leaves on such a container: NET_RAW, SETUID and
# SETGID dropped from its bounding set and no_new_privs (allowPrivilegeEscalation:
# false). Both are modelled here with setpriv, as the runtime would start them.
RUNTIME_CAPS=chown,dac_override,fsetid,fowner,mknod,net_raw,setgid,setuid,setfcap,setpcap,net_bind_service,sys_chroot,kill,audit_write
RULE5_CAPS=chown,dac_override,fsetid,fowner,mknod,setfcap,setpcap,net_bind_service,sys_chroot,kill,audit_write
bounding_set() { printf -- '-all'; local c; for c in ${1//,/ }; do printf ',+%s' "$c"; done; }
# as_runtime NS COMMAND...: root with the runtime's default capabilities, no securityContext
as_runtime() { local ns=$1; shift; nsx "$ns" setpriv --inh-caps=-all --bounding-set="$(bounding_set "$RUNTIME_CAPS")" "$@"; }
# as_rule5 NS COMMAND...: the same container with the securityContext /mutate leaves
as_rule5() { local ns=$1; shift; nsx "$ns" setpriv --inh-caps=-all --bounding-set="$(bounding_set "$RULE5_CAPS")" --no-new-privs "$@"; }
install -m 0644 "$ROOT/tests/e2e/raw_syn.py" "$WORK/raw_syn.py"
ns=${POD_NS[acme]}
up_mac=$(nsx "$UP" cat "/sys/class/net/sb1u$ID/address")
raw_syn() { "$PY" "$WORK/raw_syn.py" --iface "sb1p$ID" --src-ip 10.233.1.2 --dst-ip "${UP_IP[acme]}" --dst-mac "$up_mac" --port "$UP_PORT"; }
become_smtpbind() { setpriv --reuid "$SMTPBIND_UID" --regid "$SMTPBIND_UID" --clear-groups "$PY" "$WORK/smtp_probe.py" connect --host "${UP_IP[acme]}" --port "$UP_PORT" --timeout 5; }
# 0. the same process, connecting as itself: the lock-down refuses root like any other UID
r=$(as_runtime "$ns" "$PY" "$WORK/smtp_probe.py" connect --host "${UP_IP[acme]}" --port "$UP_PORT" --timeout 5)
check "bypass: a root mailer with the runtime's default capabilities is refused when it connects as itself ($r)" \
  test "$(json_field "$r" error)" = refused
# 1. the threat: setuid to smtpbind's UID, and raw packets, both get through
r=$(as_runtime "$ns" bash -c "$(declare -f become_smtpbind); $(declare -p SMTPBIND_UID PY WORK UP_IP UP_PORT); become_smtpbind" 2>&1)
check "bypass (threat): with SETUID/SETGID it becomes UID $SMTPBIND_UID (setpriv --reuid) and reaches the upstream past the lock-down ($r)" \
  test "$(json_field "$r" ok 2>/dev/null)" = True
r=$(as_runtime "$ns" bash -c "$(declare -f raw_syn); $(declare -p PY WORK ID UP_IP UP_PORT up_mac); raw_syn" 2>&1)
check "bypass (threat): with NET_RAW an AF_PACKET client's SYN to upstream :$UP_PORT is answered with a SYN-ACK past the lock-down ($r)" \
  test "$(json_field "$r" synack 2>/dev/null)" = True
# 2. rule 5: both blocked
setuid_failed() { [ "$1" != 0 ] && grep -q "Operation not permitted" <<<"$2" && ! grep -q '"ok": true' <<<"$2"; }
raw_refused() { grep -q PermissionError <<<"$1" && [ "$(json_field "$1" ok)" = False ]; }
r=$(as_rule5 "$ns" bash -c "$(declare -f become_smtpbind); $(declare -p SMTPBIND_UID PY WORK UP_IP UP_PORT); become_smtpbind" 2>&1)
rc=$?
check "bypass (rule 5): without SETUID/SETGID and with no_new_privs, becoming UID $SMTPBIND_UID fails (exit $rc: $r)" \
  setuid_failed "$rc" "$r"
r=$(as_rule5 "$ns" bash -c "$(declare -f raw_syn); $(declare -p PY WORK ID UP_IP UP_PORT up_mac); raw_syn" 2>&1)
check "bypass (rule 5): without NET_RAW the AF_PACKET socket cannot be opened ($r)" \
  raw_refused "$r"
# 3. no_new_privs: a non-root mailer whose image ships a binary with file capabilities
#    (as ping once did: cap_net_raw+ep) gains NET_RAW at exec; no_new_privs ignores file capabilities
cp "$(readlink -f "$PY")" "$WORK/python3-netraw" && setcap cap_net_raw+ep "$WORK/python3-netraw" && chmod 0755 "$WORK/python3-netraw"
r=$(nsx "$ns" setpriv --reuid "$MAILER_UID" --regid "$MAILER_UID" --clear-groups --inh-caps=-all \
  --bounding-set="$(bounding_set "$RUNTIME_CAPS")" bash -c "$(declare -f raw_syn); $(declare -p WORK ID UP_IP UP_PORT up_mac); PY=$WORK/python3-netraw; raw_syn" 2>&1)
check "bypass (threat): UID $MAILER_UID running a binary with file capability cap_net_raw gets past the lock-down ($r)" \
  test "$(json_field "$r" synack 2>/dev/null)" = True
r=$(nsx "$ns" setpriv --reuid "$MAILER_UID" --regid "$MAILER_UID" --clear-groups --inh-caps=-all \
  --bounding-set="$(bounding_set "$RUNTIME_CAPS")" --no-new-privs bash -c "$(declare -f raw_syn); $(declare -p WORK ID UP_IP UP_PORT up_mac); PY=$WORK/python3-netraw; raw_syn" 2>&1)
check "bypass (rule 5): with no_new_privs the same binary gets no NET_RAW ($r)" \
  grep -q "PermissionError" <<<"$r"

# ---- the lock-down script refuses bad input, and leaves the rules in force -------------
rules_before=$(nsx "$ns" iptables -S | md5sum)
for bad in "0" "70000" "99999999999999999999" "25,,587" "25;iptables -F" "$(seq -s, 1 16)" "587 25"; do
  if nsx "$ns" env SMTPBIND_LOCKDOWN_PORTS="$bad" setpriv --inh-caps=-all --bounding-set=-all,+net_admin \
      sh "$LOCKDOWN" >"$WORK/lockdown-bad.log" 2>&1; then
    fail "lock-down: SMTPBIND_LOCKDOWN_PORTS='$bad' was accepted"
  else
    check "lock-down: SMTPBIND_LOCKDOWN_PORTS='$bad' is refused ($(head -c 120 "$WORK/lockdown-bad.log"))" \
      grep -q '"error"' "$WORK/lockdown-bad.log"
  fi
done
check "lock-down: the refused runs left the installed rules unchanged" test "$(nsx "$ns" iptables -S | md5sum)" = "$rules_before"

# ---- cross-tenant credentials are refused ------------------------------------------
for t in acme globex; do
  other=acme; [ "$t" = acme ] && other=globex
  before_t=$(count_lines "$t")
  before_o=$(count_lines "$other")
  r=$(probe "$MAILER_UID" "${POD_NS[$t]}" send --host 127.0.0.1 --port 2525 --user apikey --password "${KEY[$other]}" \
    --mail-from "billing@$t.example" --rcpt-to "cross-$t-$RANDOM@inbox.example")
  check "$t: $other's key presented to $t's sidecar gets 535 ($r)" \
    test "$(json_field "$r" code)" = 535
  sleep 0.5
  check "$t: nothing reached the upstream after the refused AUTH" \
    test "$(count_lines "$t"):$(count_lines "$other")" = "$before_t:$before_o"
  r=$(probe "$MAILER_UID" "${POD_NS[$t]}" send --host 127.0.0.1 --port 2525 --user apikey --password "${KEY[$t]}" \
    --mail-from "billing@$other.example" --rcpt-to "spoof-$t-$RANDOM@inbox.example")
  check "$t: MAIL FROM in $other's domain gets 550 from $t's sidecar ($r)" \
    test "$(json_field "$r" code)" = 550
  metrics=$(nsx "${POD_NS[$t]}" curl -fsS -m 2 http://127.0.0.1:9525/metrics 2>/dev/null)
  check "$t: /metrics counts the identity_mismatch rejection" \
    "$PY" -c '
import re, sys
for line in sys.stdin:
    if line.startswith("smtpbind_rejections_total{") and "reason=\"identity_mismatch\"" in line \
       and float(line.rsplit(None, 1)[1]) >= 1:
        sys.exit(0)
sys.exit(1)' <<<"$metrics"
done

# ---- the Secret is a directory: the kubelet's ..data swap reaches smtpbind ------------
# (why the chart never mounts it with subPath) Swap acme's Secret to an unpinned key,
# as the kubelet swaps an updated Secret, then back.
swap_data() { # swap_data SECRET_DIR TARGET: the kubelet's atomic rename of ..data_tmp over ..data
  ln -sfn "$2" "$1/..data_tmp" && mv -T "$1/..data_tmp" "$1/..data"
}
readyz_code() { nsx "${POD_NS[acme]}" curl -s -o /dev/null -w '%{http_code}' -m 2 http://127.0.0.1:9525/readyz; }
sdir=$WORK/acme/secret
orig=$(readlink "$sdir/..data")
rot="..$(date -u +%Y_%m_%d_%H_%M_%S).000000002"
mkdir -p "$sdir/$rot" && chmod 0755 "$sdir/$rot"
printf '%s' apikey >"$sdir/$rot/username"
printf '%s' "SG.podsim-unpinned-$RANDOM$RANDOM" >"$sdir/$rot/password"
chmod 0444 "$sdir/$rot/username" "$sdir/$rot/password"
swap_data "$sdir" "$rot"
wait_for 20 test "$(readyz_code)" = 503
check "rotation: an unpinned key swapped in through ..data makes acme not ready (/readyz $(readyz_code))" \
  test "$(readyz_code)" = 503
before=$(count_lines acme)
r=$(probe "$MAILER_UID" "${POD_NS[acme]}" send --host 127.0.0.1 --port 2525 --user apikey --password "${KEY[acme]}" \
  --mail-from "billing@acme.example" --rcpt-to "unpinned-$RANDOM@inbox.example")
check "rotation: while no pinned key is mounted a new session gets 421 ($r)" test "$(json_field "$r" code)" = 421
check "rotation: nothing reached the upstream meanwhile" test "$(count_lines acme)" = "$before"
swap_data "$sdir" "$orig"
wait_for 20 test "$(readyz_code)" = 200
check "rotation: the pinned key swapped back makes acme ready again (/readyz $(readyz_code))" \
  test "$(readyz_code)" = 200
rcpt="after-rotation-$RANDOM$RANDOM@inbox.example"
r=$(probe "$MAILER_UID" "${POD_NS[acme]}" send --host 127.0.0.1 --port 2525 --user apikey --password "${KEY[acme]}" \
  --mail-from "billing@acme.example" --rcpt-to "$rcpt")
wait_for 5 capture_has acme "$rcpt" "billing@acme.example"
check "rotation: mail flows again under account acme ($r)" capture_has acme "$rcpt" "billing@acme.example"

# ---- a pod patched by the admission webhook -------------------------------------------
# `smtpbind webhook` (HTTPS, a CA made here) patches the pod a tenant's own chart
# creates (annotated smtpbind.dev/inject); the patch is applied with Python's
# jsonpatch, and this script then plays the kubelet for the patched pod only:
# init containers in their order (the lock-down with the capabilities and env
# the patch gives it, the native sidecar as its UID with its args and its
# volumes bind-mounted at their mount paths in a private mount namespace,
# started and probed before the app), then the mailer as its UID with the
# environment the patch gave it. Its mail must arrive under account acme.
WH=$WORK/webhook
mkdir -p "$WH/tls" && chmod 0755 "$WH"
webhook_ok=1
if ! python3 -c 'import jsonpatch' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "jsonpatch==1.33" >/dev/null 2>&1 || webhook_ok=0
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=pod-sim-webhook-ca \
  -keyout "$WH/ca.key" -out "$WH/ca.pem" 2>/dev/null \
  && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$WH/tls/tls.key" -out "$WH/tls.csr" 2>/dev/null \
  && printf 'subjectAltName=DNS:localhost\n' >"$WH/ext" \
  && openssl x509 -req -in "$WH/tls.csr" -CA "$WH/ca.pem" -CAkey "$WH/ca.key" -CAcreateserial -days 1 \
    -extfile "$WH/ext" -out "$WH/tls/tls.crt" 2>/dev/null || webhook_ok=0
cat >"$WH/config.yaml" <<EOF
version: 1
sidecar:
  image: registry.example/smtpbind:pod-sim
  egress_lockdown: true
  lockdown_image: registry.example/smtpbind-egress-lockdown:pod-sim
tenants:
  - name: acme
    namespaces: [shop-acme]
    credential_secret: acme-smtp
    policy_config_map: acme-smtpbind
    # rule 7: where acme's key may go (the injected pod's upstream, set up below as 10.233.3.1)
    upstream:
      address: "10.233.3.1:$UP_PORT"
      server_name: "$UP_NAME"
  - name: globex
    namespaces: [shop-globex]
    credential_secret: globex-smtp
    policy_config_map: globex-smtpbind
    upstream:
      address: "10.233.2.1:$UP_PORT"
      server_name: "$UP_NAME"
    lockdown_ports: [${LOCK_PORTS[globex]}]
EOF
check "webhook: smtpbind check accepts its configuration" "$SB" check "$WH/config.yaml"
nsx "$UP" "$SB" webhook --config "$WH/config.yaml" --listen 127.0.0.1:8443 --lame-duck 100ms --tls-dir "$WH/tls" >"$WH/webhook.log" 2>&1 &
PIDS+=($!)
wait_for 20 grep -q '"event":"listening"' "$WH/webhook.log" || webhook_ok=0
# admit FILE ENDPOINT OUT: one AdmissionReview through the webhook, as the API server sends it
admit() { nsx "$UP" curl -sS -m 10 --cacert "$WH/ca.pem" --resolve localhost:8443:127.0.0.1 -o "$3" -w '%{http_code}' \
  -H 'Content-Type: application/json' --data-binary "@$1" "https://localhost:8443/$2"; }
python3 "$ROOT/tests/e2e/webhook_pod.py" review shop-acme >"$WH/review.json"
code=$(admit "$WH/review.json" mutate "$WH/mutate.json")
check "webhook: /mutate answers the annotated pod over TLS (HTTP $code)" test "$code" = 200
if [ "$webhook_ok" = 1 ] && python3 "$ROOT/tests/e2e/webhook_pod.py" patched "$WH/review.json" "$WH/mutate.json" >"$WH/pod.json" \
    && python3 "$ROOT/tests/e2e/webhook_pod.py" plan "$WH/pod.json" >"$WH/plan.json"; then
  pass "webhook: the JSON Patch applies (jsonpatch) to the pod"
else
  fail "webhook: no patched pod (see $WH)"
  show_log "$WH/webhook.log"
  webhook_ok=0
fi
# plan EXPR: a value of the plan (a Python expression over p)
plan() { python3 -c 'import json, sys; p = json.load(open(sys.argv[1])); v = eval(sys.argv[2]); print(v if isinstance(v, str) else json.dumps(v))' "$WH/plan.json" "$1"; }

if [ "$webhook_ok" = 1 ]; then
  python3 - "$WH/review.json" "$WH/pod.json" >"$WH/validate.json" <<'EOF'
import json, sys
review = json.load(open(sys.argv[1]))
review["request"]["object"] = json.load(open(sys.argv[2]))
print(json.dumps(review))
EOF
  code=$(admit "$WH/validate.json" validate "$WH/validated.json")
  check "webhook: /validate admits the patched pod (HTTP $code)" \
    python3 -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["response"]["allowed"] else 1)' "$WH/validated.json"
  check "webhook: the lock-down comes first, then the native sidecar ($(plan '[c["name"] for c in p["init"]]'))" \
    test "$(plan '[c["name"] for c in p["init"]][:2]')" = '["smtpbind-egress-lockdown", "smtpbind"]'
  check "webhook: the pod is annotated smtpbind.dev/status=injected" test "$(plan 'p["status"]')" = injected

  setup_pod injected 3 || die "could not set up the injected pod's namespace"
  ns=${POD_NS[injected]}
  # the kubelet's volumes: the tenant's Secret and its policy ConfigMap (client.auth: none,
  # the decision for injected pods: rule 2 keeps the mailer from the mounted password)
  mkdir -p "$WH/volumes/configmap" && chmod -R 0755 "$WH/volumes"
  make_secret "$WH/volumes/secret" apikey "${KEY[acme]}" || die "could not lay out the injected pod's Secret"
  # the provider's CA travels in the credential Secret (key ca.crt), which the platform
  # writes: the one CA a pinned sidecar accepts without SMTPBIND_UPSTREAM_CA (rule 7)
  sdata=$(readlink -f "$WH/volumes/secret/..data")
  install -m 0444 "$WORK/upstream/ca.pem" "$sdata/ca.crt" && ln -s ..data/ca.crt "$WH/volumes/secret/ca.crt"
  cat >"$WH/volumes/configmap/policy.yaml" <<EOF
version: 1
tenant: "acme"
upstream:
  address: "${UP_IP[injected]}:$UP_PORT"
  tls: "starttls"
  ca_file: "/var/run/secrets/smtpbind/ca.crt"
  server_name: "$UP_NAME"
credential:
  secret_dir: "/var/run/secrets/smtpbind"
  pins: ["${PIN[acme]}"]
client:
  auth: "none"
senders: ["*@acme.example"]
shutdown:
  drain: "2s"
EOF
  chmod 0644 "$WH/volumes/configmap/policy.yaml"
  source_dir() { # source_dir SOURCE: the kubelet's directory for a volume source of the plan
    case $1 in
      secret:acme-smtp) echo "$WH/volumes/secret" ;;
      configMap:acme-smtpbind) echo "$WH/volumes/configmap" ;;
      emptyDir) mkdir -p "$WH/volumes/empty-$RANDOM" && echo "$_" ;;
      *) return 1 ;;
    esac
  }
  # mount_lines INDEX: sets MOUNT_LINES to shell lines that bind-mount init container
  # INDEX's volumes at their mount paths (creating missing mount points, removed at exit)
  mount_lines() {
    local path src dir missing
    MOUNT_LINES=""
    while IFS=$'\t' read -r path src; do
      [ -n "$path" ] || continue
      dir=$(source_dir "$src") || { say "pod-sim: unknown volume source $src" >&2; return 1; }
      missing=$path
      while [ ! -e "$(dirname "$missing")" ]; do missing=$(dirname "$missing"); done
      if [ ! -e "$missing" ]; then MADE_DIRS+=("$missing"); fi
      mkdir -p "$path" || return 1
      MOUNT_LINES+="mount --bind '$dir' '$path' && "
    done < <(plan "'\n'.join(k + '\t' + v for k, v in p['init'][$1]['mounts'].items())")
  }
  # 1. the lock-down init container: its env, root with exactly the capabilities it adds
  caps=$(plan '",".join("+" + c for c in p["init"][0]["caps"])')
  if nsx "$ns" env SMTPBIND_UID="$(plan 'p["init"][0]["env"]["SMTPBIND_UID"]')" \
      SMTPBIND_LOCKDOWN_PORTS="$(plan 'p["init"][0]["env"]["SMTPBIND_LOCKDOWN_PORTS"]')" \
      setpriv --inh-caps=-all --bounding-set="-all,$caps" sh "$LOCKDOWN" >"$WH/lockdown.log" 2>&1; then
    pass "webhook pod: the injected lock-down ran with capabilities $caps"
  else
    fail "webhook pod: the injected lock-down failed"; show_log "$WH/lockdown.log"
  fi
  # 2. the native sidecar, as its UID, its volumes at their mount paths (private mount namespace)
  uid=$(plan 'p["init"][1]["uid"]')
  mount_lines 1 || die "cannot mount the sidecar's volumes"
  mapfile -t args < <(plan '"\n".join(p["init"][1]["args"])')
  # its environment as the patch gives it (SMTPBIND_UPSTREAM_PIN, rule 7)
  mapfile -t envs < <(plan '"\n".join(k + "=" + v for k, v in p["init"][1]["env"].items())')
  check "webhook pod: the injected sidecar is pinned to acme's upstream (${envs[*]})" \
    test "$(plan 'p["init"][1]["env"].get("SMTPBIND_UPSTREAM_PIN", "")')" = "${UP_IP[injected]}:$UP_PORT/$UP_NAME"
  nsx "$ns" env "${envs[@]}" unshare -m --propagation private sh -c "${MOUNT_LINES}exec setpriv --reuid $uid --regid $uid --clear-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs \"\$0\" \"\$@\"" "$SB" "${args[@]}" >"$WH/sidecar.log" 2>&1 &
  PIDS+=($!)
  probe_url="http://127.0.0.1:$(plan 'p["init"][1]["probe"]["port"]')$(plan 'p["init"][1]["probe"]["path"]')"
  if wait_for 30 nsx "$ns" curl -fsS -m 2 "$probe_url"; then
    pass "webhook pod: the injected sidecar (UID $uid, args ${args[*]}) passes its startup probe ($probe_url)"
  else
    fail "webhook pod: the injected sidecar never became ready"; show_log "$WH/sidecar.log"
  fi
  # 3. the app container, as its UID, with the environment the patch gave it
  mailer_uid=$(plan 'p["containers"][0]["uid"]')
  smtp_host=$(plan 'p["containers"][0]["env"]["SMTP_HOST"]')
  smtp_port=$(plan 'p["containers"][0]["env"]["SMTP_PORT"]')
  rcpt="injected-$RANDOM$RANDOM@inbox.example"
  r=$(probe "$mailer_uid" "$ns" send --host "$smtp_host" --port "$smtp_port" \
    --mail-from "orders@acme.example" --rcpt-to "$rcpt" --subject "pod-sim webhook")
  check "webhook pod: the mailer (UID $mailer_uid) sends to SMTP_HOST:SMTP_PORT=$smtp_host:$smtp_port and gets 250 ($r)" \
    test "$(json_field "$r" code)" = 250
  wait_for 5 capture_has acme "$rcpt" "orders@acme.example"
  check "webhook pod: its mail arrives under account acme" capture_has acme "$rcpt" "orders@acme.example"
  check "webhook pod: and not under account globex" capture_lacks globex "$rcpt"
  r=$(probe "$mailer_uid" "$ns" connect --host "${UP_IP[injected]}" --port "$UP_PORT" --timeout 5)
  check "webhook pod: the mailer's direct connection to the upstream is refused ($r)" \
    test "$(json_field "$r" error)" = refused

  # rule 7: the tenant edits its policy ConfigMap to send the key elsewhere (here the
  # provider's other port, a listener that logs any AUTH it gets); the kubelet swaps the file
  pod_readyz() { nsx "$ns" curl -s -m 2 "$probe_url"; }
  cm=$WH/volumes/configmap/policy.yaml
  cp "$cm" "$WH/policy.good"
  sed "s/^  address: .*/  address: \"${UP_IP[injected]}:$SES_PORT\"/" "$WH/policy.good" >"$WH/policy.edit"
  chmod 0644 "$WH/policy.edit" && mv -f "$WH/policy.edit" "$cm"
  wait_for 20 eval 'pod_readyz | grep -q "upstream pin"'
  check "webhook pod (rule 7): a policy naming another upstream makes the sidecar not ready ($(pod_readyz))" \
    eval 'pod_readyz | grep -q "upstream.address .* is not the platform"'
  r=$(probe "$mailer_uid" "$ns" send --host "$smtp_host" --port "$smtp_port" \
    --mail-from "orders@acme.example" --rcpt-to "redirected-$RANDOM@inbox.example")
  check "webhook pod (rule 7): meanwhile a new session gets 421 ($r)" test "$(json_field "$r" code)" = 421
  nothing_captured() { ! grep -q '"captured"' "$WORK/upstream/capture-$SES_PORT.log"; }
  check "webhook pod (rule 7): the other listener received no mail" nothing_captured
  install -m 0644 "$WH/policy.good" "$WH/policy.back" && mv -f "$WH/policy.back" "$cm"
  wait_for 20 eval 'pod_readyz | grep -q "^ready"'
  check "webhook pod (rule 7): the policy put back, the sidecar is ready again without a restart ($(pod_readyz))" \
    eval 'pod_readyz | grep -q "^ready"'

  # rule 5: the same pod with a mailer that sets no securityContext at all, as /mutate
  # patches it; the runtime starts it as root (the image's USER is not the webhook's to
  # see) with its default capabilities minus what the patch drops, no_new_privs if it
  # set allowPrivilegeEscalation: false. Neither bypass may work.
  python3 "$ROOT/tests/e2e/webhook_pod.py" review shop-acme bare >"$WH/review-bare.json"
  admit "$WH/review-bare.json" mutate "$WH/mutate-bare.json" >/dev/null
  if python3 "$ROOT/tests/e2e/webhook_pod.py" patched "$WH/review-bare.json" "$WH/mutate-bare.json" >"$WH/pod-bare.json" \
      && python3 "$ROOT/tests/e2e/webhook_pod.py" plan "$WH/pod-bare.json" >"$WH/plan-bare.json"; then
    bare() { python3 -c 'import json, sys; p = json.load(open(sys.argv[1])); m = p["containers"][0]; v = eval(sys.argv[2]); print(v if isinstance(v, str) else json.dumps(v))' "$WH/plan-bare.json" "$1"; }
    drop=$(bare '",".join(m["drop"])')
    nnp=$(bare 'str(m["no_new_privs"])')
    check "webhook (rule 5): /mutate hardens a mailer with no securityContext (drops: $drop, no_new_privs: $nnp)" \
      test "$nnp" = True
    kept=$("$PY" -c 'import sys; d = set(sys.argv[2].split(",")); print(",".join(c for c in sys.argv[1].split(",") if "all" not in d and c not in d))' "$RUNTIME_CAPS" "$drop")
    as_patched() { local nnp_flag=(); [ "$nnp" = True ] && nnp_flag=(--no-new-privs)
      nsx "$ns" setpriv --inh-caps=-all --bounding-set="$(bounding_set "$kept")" "${nnp_flag[@]}" "$@"; }
    up_mac=$(nsx "$UP" cat "/sys/class/net/sb3u$ID/address")
    become_it() { setpriv --reuid "$SMTPBIND_UID" --regid "$SMTPBIND_UID" --clear-groups "$PY" "$WORK/smtp_probe.py" connect --host "${UP_IP[injected]}" --port "$UP_PORT" --timeout 5; }
    raw_it() { "$PY" "$WORK/raw_syn.py" --iface "sb3p$ID" --src-ip 10.233.3.2 --dst-ip "${UP_IP[injected]}" --dst-mac "$up_mac" --port "$UP_PORT"; }
    vars=$(declare -p SMTPBIND_UID PY WORK UP_IP UP_PORT ID up_mac)
    r=$(as_patched bash -c "$(declare -f become_it); $vars; become_it" 2>&1)
    rc=$?
    check "webhook pod (rule 5): the patched mailer cannot become UID $SMTPBIND_UID (exit $rc: $r)" setuid_failed "$rc" "$r"
    r=$(as_patched bash -c "$(declare -f raw_it); $vars; raw_it" 2>&1)
    check "webhook pod (rule 5): the patched mailer cannot open an AF_PACKET socket ($r)" raw_refused "$r"
  else
    fail "webhook: no patched pod for the mailer without a securityContext (see $WH/mutate-bare.json)"
  fi

  # /validate: the same pod holding the Secret in its mailer, or globex's in shop-acme
  python3 - "$WH/review.json" "$WH/pod.json" "$WH" <<'EOF'
import copy, json, sys
review, pod, out = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
mine = copy.deepcopy(pod)
mine["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "acme-smtp"}}]
theirs = copy.deepcopy(pod)
theirs["spec"]["volumes"].append({"name": "stolen", "secret": {"secretName": "globex-smtp"}})
for name, obj in (("mine", mine), ("theirs", theirs)):
    r = copy.deepcopy(review)
    r["request"]["object"] = obj
    json.dump(r, open(f"{out}/refuse-{name}.json", "w"))
EOF
  for which in mine theirs; do # the tenant's own Secret in the mailer; globex's anywhere
    admit "$WH/refuse-$which.json" validate "$WH/refused-$which.json" >/dev/null
    check "webhook: /validate refuses the pod referencing $which Secret ($(head -c 160 "$WH/refused-$which.json"))" \
      python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["response"]; sys.exit(0 if not r["allowed"] and r["status"]["code"] == 403 else 1)' "$WH/refused-$which.json"
  done
fi

if [ "$FAIL" -gt 0 ]; then
  for t in acme globex; do show_log "$WORK/$t/smtpbind.log"; done
  show_log "$WORK/upstream/capture.log"
fi
say "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
