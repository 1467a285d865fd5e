#!/usr/bin/env bash
# Interop: nodemailer (npm) as the legacy mailer, pool: true with 5 connections.
#
# Installs nodemailer from package-lock.json into tests/interop/node_modules
# (npm ci), starts smtpbind's capture upstream (`smtpbind capture`, STARTTLS +
# AUTH, two accounts tenant-a and tenant-b that both log in as "apikey") and a
# sidecar for tenant-a in front of it, then sends 200 messages with
#   nodemailer.createTransport({pool: true, maxConnections: 5, host, port,
#     secure: false, ignoreTLS: true, auth: {user: 'apikey', pass: <tenant-a key>}})
# and checks: nodemailer got 250 for all 200; the capture upstream's activity
# log has exactly 200 lines for account tenant-a, none for tenant-b, with the
# same queue ids nodemailer was given; the sidecar saw at most 5 sessions.
# Then TLS toward the mailer (issue 13): the sidecar's pair comes from
# `smtpbind tls-init`, and nodemailer trusts its CA through
# NODE_EXTRA_CA_CERTS (the README's recipe) with requireTLS (STARTTLS on the
# plain listener) and with secure: true (the implicit-TLS listener).
# Env: SMTPBIND_BIN (default: a debug build), KEEP=1 keeps the temp dir.
set -uo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
. ./lib.sh

COUNT=${COUNT:-200}
command -v npm >/dev/null || apt_ensure nodejs npm || exit 1
if ! node -e 'require("nodemailer")' 2>/dev/null; then
  npm ci --no-audit --no-fund --silent >/dev/null || { echo "nodemailer.sh: npm ci failed" >&2; exit 1; }
fi
BIN=$(smtpbind_bin) || { echo "nodemailer.sh: cannot build smtpbind" >&2; exit 1; }

WORK=$(mktemp -d /tmp/smtpbind-nodemailer.XXXXXX)
SMTPBIND_PID=
CAPTURE_PID=
cleanup() {
  for p in $SMTPBIND_PID $CAPTURE_PID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
setup_fail() { echo "nodemailer.sh: setup failed: $*" >&2; fail "setup: $*"; summary; exit 1; }

KEY_A="SG.tenantA-$(openssl rand -hex 16 2>/dev/null || head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
KEY_B="SG.tenantB-$(openssl rand -hex 16 2>/dev/null || head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
write_secret "$WORK/secret-a" apikey "$KEY_A"
write_secret "$WORK/secret-b" apikey "$KEY_B"
mkdir -p "$WORK/activity"

# the capture upstream on a free port
"$BIN" capture --listen 127.0.0.1:0 --account "tenant-a=$WORK/secret-a" --account "tenant-b=$WORK/secret-b" \
  --ca-out "$WORK/ca.pem" --log-dir "$WORK/activity" >"$WORK/capture.log" 2>&1 &
CAPTURE_PID=$!
UP=
for _ in $(seq 1 200); do
  UP=$(grep -m1 '"event":"listening"' "$WORK/capture.log" 2>/dev/null | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p')
  [ -n "$UP" ] && [ -s "$WORK/ca.pem" ] && break
  sleep 0.1
done
[ -n "$UP" ] || { cat "$WORK/capture.log" >&2; setup_fail "capture upstream did not start"; }

PIN=$("$BIN" fingerprint "$WORK/secret-a/password") || setup_fail "fingerprint"
"$BIN" tls-init --dir "$WORK/client-tls" >/dev/null || setup_fail "tls-init"
cat > "$WORK/policy.yaml" <<CONF
version: 1
tenant: tenant-a
upstream:
  address: $UP
  tls: starttls
  ca_file: $WORK/ca.pem
  server_name: localhost
credential:
  secret_dir: $WORK/secret-a
  pins: [ "$PIN" ]
client:
  auth: required
  accept:
    - username: apikey
      password: mounted
  tls:
    cert_dir: $WORK/client-tls
    starttls: offer
    implicit_listen: 127.0.0.1:0
senders: [ "*@acme.example" ]
header_from: enforce
CONF
start_smtpbind "$BIN" "$WORK/policy.yaml" "$WORK/smtpbind.log" || setup_fail "smtpbind start"
echo "# capture upstream $UP, smtpbind $SMTPBIND_ADDR, nodemailer $(node -p 'require("nodemailer/package.json").version')"

start=$(date +%s%N)
RESULT=$(SMTP_HOST=${SMTPBIND_ADDR%:*} SMTP_PORT=${SMTPBIND_ADDR##*:} SMTP_PASS_FILE="$WORK/secret-a/password" \
  COUNT=$COUNT timeout 300 node "$HERE/nodemailer-pool.js")
rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "$RESULT" > "$WORK/result.json"
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if not isinstance(v,list) else "\n".join(map(str,v)))' "$WORK/result.json" "$1" 2>/dev/null; }
check "nodemailer finished (exit $rc, ${elapsed_ms} ms)" [ "$rc" -eq 0 ]
accepted=$(field accepted); accepted=${accepted:-0}
check "nodemailer: all $COUNT accepted with 250 (got $accepted)" [ "$accepted" -eq "$COUNT" ]
[ "$accepted" -eq "$COUNT" ] || field errors

sleep 0.3
lines_a=$(cat "$WORK/activity/tenant-a.jsonl" 2>/dev/null | wc -l)
lines_b=$(cat "$WORK/activity/tenant-b.jsonl" 2>/dev/null | wc -l)
check "capture log: exactly $COUNT lines for account tenant-a (got $lines_a)" [ "$lines_a" -eq "$COUNT" ]
check "capture log: no line for account tenant-b (got $lines_b)" [ "$lines_b" -eq 0 ]
field queueIds | sort > "$WORK/nm-qids"
sed -n 's/.*"queue_id":"\([^"]*\)".*/\1/p' "$WORK/activity/tenant-a.jsonl" 2>/dev/null | sort > "$WORK/up-qids"
check "every 250 nodemailer got is one distinct upstream record (queue ids match)" \
  bash -c "[ \$(sort -u '$WORK/up-qids' | wc -l) -eq $COUNT ] && cmp -s '$WORK/nm-qids' '$WORK/up-qids'"
rcpts=$(sed -n 's/.*"rcpt_to":\["\([^"]*\)"\].*/\1/p' "$WORK/activity/tenant-a.jsonl" 2>/dev/null | sort -u | wc -l)
check "each of the $COUNT recipients recorded once (got $rcpts distinct)" [ "$rcpts" -eq "$COUNT" ]
check "every upstream record was over TLS as apikey" \
  bash -c "[ \$(grep -c '\"username\":\"apikey\".*\"tls\":true' '$WORK/activity/tenant-a.jsonl') -eq $COUNT ]"
sessions=$(grep '"event":"message"' "$WORK/smtpbind.log" | sed -n 's/.*"session":"\{0,1\}\([^",]*\)"\{0,1\},.*/\1/p' | sort -u | wc -l)
check "nodemailer's pool used 2..5 client sessions (got $sessions)" [ "$sessions" -ge 2 -a "$sessions" -le 5 ]
check "smtpbind never logged the key" bash -c "! grep -qF '$KEY_A' '$WORK/smtpbind.log'"

# TLS toward the mailer: requireTLS (STARTTLS) and secure: true (implicit TLS).
IMPLICIT=$(grep -m1 '"event":"listening"' "$WORK/smtpbind.log" | grep -o '"listen":"127[^"]*","tls":"implicit"' | sed 's/"listen":"\([^"]*\)".*/\1/')
for mode in requireTLS secure; do
  port=${SMTPBIND_ADDR##*:}; [ "$mode" = secure ] && port=${IMPLICIT##*:}
  out=$(NODE_EXTRA_CA_CERTS="$WORK/client-tls/ca.crt" SMTP_PORT="$port" SMTP_MODE=$mode \
    SMTP_PASS_FILE="$WORK/secret-a/password" timeout 60 node "$HERE/nodemailer-tls.js" 2>&1)
  check "nodemailer $mode: 250 over TLS verified against the pod-local CA ($out)" \
    bash -c "grep -q '\"code\":250' <<<'$out' && grep -q '\"authorized\":true' <<<'$out'"
  rcpt="nodemailer-$mode@example.net"
  check "nodemailer $mode: recorded under account tenant-a" \
    grep -q "\"account\":\"tenant-a\".*\"$rcpt\"" "$WORK/activity/tenant-a.jsonl"
done

if [ "$INTEROP_FAILED" -gt 0 ]; then
  echo "--- smtpbind.log (last 20)"; tail -20 "$WORK/smtpbind.log"
fi
summary
