#!/usr/bin/env bash
# Interop: a real Postfix (Debian's packages) as smtpbind's upstream.
#
# Starts a private Postfix instance on loopback (its own config, queue and data
# directories under a temp dir; the system instance is not touched) that offers
# submission with STARTTLS (a certificate from a CA this script generates),
# smtpd_tls_auth_only = yes and Cyrus SASL against a private sasldb with two
# users, tenant-a and tenant-b. Nothing leaves the machine: relayhost is empty
# and every transport is discard:. smtpbind runs with a policy for tenant-a
# (tls: starttls, ca_file = the generated CA, a kubelet-style Secret with
# tenant-a's password), and the checks read Postfix's own log (maillog_file,
# via postlogd):
#   - 3 messages through smtpbind are each logged with sasl_username=tenant-a,
#     over TLS, and discarded (delivered) by Postfix;
#   - tenant-b's password presented to smtpbind gets 535 and Postfix logs no
#     connection and no sasl_username=tenant-b;
#   - controls: Postfix itself accepts tenant-b's password and refuses a wrong one;
#   - Postfix offers CHUNKING and PIPELINING, so every message goes up as BDAT
#     (its disconnect lines count bdat=, never data=), and a held message with
#     dot lines and 8-bit text arrives byte for byte (postcat);
#   - with `upstream.chunking: off` (DATA upstream, SendGrid's shape) a client
#     that pipelines MAIL, RCPT and DATA has DATA written behind the RCPTs
#     (issue 22): Postfix counts a DATA for the envelope whose only recipient
#     it refused (smtpbind alone would never send that DATA), answers it, and
#     the connection stays in step for the two messages that follow.
# Run as root (apt-get installs what is missing). Env: POSTFIX_PORT (10587),
# SMTPBIND_BIN (default: a debug build), KEEP=1 keeps the temp dir.
set -uo pipefail
cd "$(dirname "$0")"
. ./lib.sh
# shellcheck source=SCRIPTDIR/postfix-master.sh
. ./postfix-master.sh

PORT=${POSTFIX_PORT:-10587}
REALM=interop.test
MYHOST=postfix.$REALM   # also the SASL realm: Cyrus' default realm is the server's name

if [ "$(id -u)" -ne 0 ]; then echo "postfix.sh: run as root" >&2; exit 1; fi
if ! dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'install ok installed'; then
  # "No configuration": the package installs no main.cf and starts nothing.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
fi
apt_ensure postfix sasl2-bin libsasl2-modules openssl swaks jq || exit 1

BIN=$(smtpbind_bin) || { echo "postfix.sh: cannot build smtpbind" >&2; exit 1; }

WORK=$(mktemp -d /tmp/smtpbind-postfix.XXXXXX)
chmod 755 "$WORK"
CONF=$WORK/conf
LOG=$WORK/postfix.log
SMTPBIND_PID=
cleanup() {
  [ -n "$SMTPBIND_PID" ] && kill "$SMTPBIND_PID" 2>/dev/null && wait "$SMTPBIND_PID" 2>/dev/null
  if [ -f "$CONF/main.cf" ]; then
    postfix -c "$CONF" stop >/dev/null 2>&1 || true
    # master may take a moment; make sure nothing of this instance survives
    for _ in $(seq 1 50); do
      [ -f "$WORK/data/master.lock" ] || break
      pid=$(tr -dc 0-9 < "$WORK/data/master.lock" 2>/dev/null)
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup_fail() { echo "postfix.sh: setup failed: $*" >&2; [ -f "$LOG" ] && tail -20 "$LOG" >&2; fail "setup: $*"; summary; exit 1; }

# --- certificates: a CA and a server certificate for localhost / 127.0.0.1 ---
mkdir -p "$WORK/tls"
(
  cd "$WORK/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.pem -subj "/CN=smtpbind interop CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout server.key -out server.csr -subj "/CN=localhost"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out server.pem
) >/dev/null 2>&1 || setup_fail "openssl"
chown root:postfix "$WORK/tls/server.key" && chmod 640 "$WORK/tls/server.key"

# --- Cyrus SASL: a private sasldb with two users, read by smtpd as postfix ---
PASS_A="pf-tenant-a-$(openssl rand -hex 12)"
PASS_B="pf-tenant-b-$(openssl rand -hex 12)"
mkdir -p "$CONF/sasl"
printf '%s' "$PASS_A" | saslpasswd2 -f "$WORK/sasldb2" -c -p -u "$MYHOST" tenant-a || setup_fail "saslpasswd2 tenant-a"
printf '%s' "$PASS_B" | saslpasswd2 -f "$WORK/sasldb2" -c -p -u "$MYHOST" tenant-b || setup_fail "saslpasswd2 tenant-b"
chown root:postfix "$WORK/sasldb2" && chmod 640 "$WORK/sasldb2"
cat > "$CONF/sasl/smtpd.conf" <<CONF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $WORK/sasldb2
mech_list: PLAIN LOGIN
CONF

# --- the private Postfix instance ---
mkdir -p "$WORK/queue" "$WORK/data"
chown postfix "$WORK/data"
cat > "$CONF/main.cf" <<CONF
compatibility_level = 3.6
config_directory = $CONF
queue_directory = $WORK/queue
data_directory = $WORK/data
meta_directory = /etc/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = $MYHOST
mydomain = $REALM
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
# nothing leaves the machine: no relayhost, every transport discards
relayhost =
mydestination =
relay_domains =
default_transport = discard:interop
relay_transport = discard:interop
local_transport = discard:interop
virtual_transport = discard:interop
smtputf8_enable = no
biff = no
alias_maps =
alias_database =
# Postfix's own log file (postlogd; no syslog here)
maillog_file = $LOG
maillog_file_prefixes = $WORK
# submission: STARTTLS required, AUTH only over TLS, Cyrus SASL (sasldb)
smtpd_tls_cert_file = $WORK/tls/server.pem
smtpd_tls_key_file = $WORK/tls/server.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $CONF/sasl
# empty: users log in as plain "tenant-a", found in the sasldb under realm \$myhostname
smtpd_sasl_local_domain =
smtpd_sasl_security_options = noanonymous
smtpd_sasl_authenticated_header = no
smtpd_client_restrictions = permit_sasl_authenticated, reject
smtpd_relay_restrictions = permit_sasl_authenticated, reject
# hold@example.net is held in the queue (not discarded) so postcat can show
# exactly what arrived
# refuse@example.net is refused at RCPT (the DATA pipelining section)
smtpd_recipient_restrictions = check_recipient_access inline:{ hold@example.net=HOLD, refuse@example.net=REJECT }, permit_sasl_authenticated, reject
CONF
postfix_master_cf "$PORT" > "$CONF/master.cf"

if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
  setup_fail "127.0.0.1:$PORT is already in use (set POSTFIX_PORT)"
fi
postfix -c "$CONF" check >"$WORK/check.out" 2>&1 || { cat "$WORK/check.out" >&2; setup_fail "postfix check"; }
postfix -c "$CONF" start >"$WORK/start.out" 2>&1 || { cat "$WORK/start.out" >&2; setup_fail "postfix start"; }
wait_smtp 127.0.0.1 "$PORT" 30 || setup_fail "postfix does not answer on $PORT"
echo "# postfix $(postconf -c "$CONF" -h mail_version) on 127.0.0.1:$PORT (config $CONF)"

# --- smtpbind for tenant-a in front of it ---
write_secret "$WORK/secret-a" tenant-a "$PASS_A"
PIN=$("$BIN" fingerprint "$WORK/secret-a/password") || setup_fail "fingerprint"
cat > "$WORK/policy.yaml" <<CONF
version: 1
tenant: tenant-a
upstream:
  address: 127.0.0.1:$PORT
  tls: starttls
  ca_file: $WORK/tls/ca.pem
  server_name: localhost
  connect_timeout: 5s
  reply_timeout: 30s
credential:
  secret_dir: $WORK/secret-a
  mechanism: auto
  pins: [ "$PIN" ]
client:
  auth: required
  accept:
    - username: apikey
      password: mounted
senders: [ "*@acme.example" ]
header_from: enforce
recipients:
  domains: [ example.net ]
CONF
"$BIN" check --credentials "$WORK/policy.yaml" >/dev/null || setup_fail "smtpbind check"
start_smtpbind "$BIN" "$WORK/policy.yaml" "$WORK/smtpbind.log" || setup_fail "smtpbind start"
echo "# smtpbind on $SMTPBIND_ADDR"

# the client side: the app in tenant-a's pod presents apikey + the mounted key
send() { # send PASSWORD N -> swaks transcript
  swaks --server "$SMTPBIND_ADDR" --timeout 30 --auth PLAIN --auth-user apikey --auth-password "$1" \
    --from app@acme.example --to "customer$2@example.net" \
    --header "Subject: postfix interop $2" --body "message $2 through smtpbind to Postfix" 2>&1
}
log_wait() { # log_wait REGEX: Postfix logs asynchronously (postlogd)
  for _ in $(seq 1 50); do grep -Eq "$1" "$LOG" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

QIDS=()
for i in 1 2 3; do
  out=$(send "$PASS_A" "$i")
  qid=$(printf '%s\n' "$out" | sed -n 's/^<[-~*]* *250 2\.0\.0 Ok: .*queued as \([0-9A-Za-z]*\).*/\1/p' | tail -1)
  if [ -n "$qid" ]; then
    pass "message $i: 250 from Postfix through smtpbind (queue id $qid)"
    QIDS+=("$qid")
  else
    fail "message $i: not accepted"; printf '%s\n' "$out" | tail -15
  fi
done
for qid in "${QIDS[@]}"; do
  check "Postfix log: $qid client=... sasl_method=PLAIN, sasl_username=tenant-a" \
    log_wait "postfix/smtpd\[[0-9]+\]: $qid: client=localhost\[127\.0\.0\.1\]:?[0-9]*, sasl_method=PLAIN, sasl_username=tenant-a$"
  check "Postfix log: $qid delivered (discard), nothing left the machine" \
    log_wait "postfix/discard\[[0-9]+\]: $qid: .*relay=none.*status=sent"
done
n=$(grep -c 'sasl_username=tenant-a$' "$LOG" || true)
check "Postfix log: exactly 3 messages with sasl_username=tenant-a (got $n)" [ "$n" -eq 3 ]
check "Postfix log: the sidecar's sessions were TLS (smtpd_tls_auth_only)" \
  log_wait "postfix/smtpd\[[0-9]+\]: Anonymous TLS connection established from localhost\[127\.0\.0\.1\]"
check "smtpbind audit: 3 relayed message events" \
  [ "$(grep '"event":"message"' "$WORK/smtpbind.log" | grep -c '"reply":"250')" -eq 3 ]

# --- tenant-b's password presented to tenant-a's sidecar ---
sleep 0.5
connects_before=$(grep -c 'postfix/smtpd\[[0-9]*\]: connect from' "$LOG" || true)
out=$(send "$PASS_B" 4)
check "tenant-b's password through tenant-a's sidecar: 535" \
  grep -Eq '^<[-~*]* *535 5\.7\.8' <<<"$out"
out=$(swaks --server "$SMTPBIND_ADDR" --timeout 30 --auth LOGIN --auth-user tenant-b --auth-password "$PASS_B" \
  --from app@acme.example --to customer5@example.net 2>&1)
check "tenant-b's own username and password through the sidecar: 535" \
  grep -Eq '^<[-~*]* *535 5\.7\.8' <<<"$out"
sleep 1
connects_after=$(grep -c 'postfix/smtpd\[[0-9]*\]: connect from' "$LOG" || true)
check "Postfix log: no upstream connection for the refused sessions ($connects_before -> $connects_after)" \
  [ "$connects_before" -eq "$connects_after" ]
check "Postfix log: no sasl_username=tenant-b" bash -c "! grep -q 'sasl_username=tenant-b' '$LOG'"
check "Postfix log: still exactly 3 accepted messages" \
  [ "$(grep -c ': client=localhost' "$LOG")" -eq 3 ]
check "smtpbind never logged either password" \
  bash -c "! grep -qF -e '$PASS_A' -e '$PASS_B' '$WORK/smtpbind.log'"

# --- controls: Postfix's SASL is real (tenant-b exists upstream, bad passwords fail) ---
direct() { # direct USER PASSWORD: AUTH only, straight to Postfix over STARTTLS
  swaks --server "127.0.0.1:$PORT" --timeout 30 --tls --tls-verify --tls-ca-path "$WORK/tls/ca.pem" \
    --tls-sni localhost --auth PLAIN --auth-user "$1" --auth-password "$2" --quit-after AUTH 2>&1
}
out=$(direct tenant-b "$PASS_B")
check "control: Postfix accepts tenant-b's own password directly (235)" grep -Eq '^<[-~*]* *235 ' <<<"$out"
out=$(direct tenant-a "$PASS_B")
check "control: Postfix refuses tenant-a with tenant-b's password (535)" grep -Eq '^<[-~*]* *535 ' <<<"$out"
out=$(swaks --server "127.0.0.1:$PORT" --timeout 30 --auth PLAIN --auth-user tenant-a --auth-password "$PASS_A" \
  --quit-after AUTH 2>&1)
check "control: Postfix offers no AUTH before STARTTLS (smtpd_tls_auth_only)" \
  bash -c "! grep -q 'AUTH PLAIN' <<<\"\$1\" && ! grep -Eq '^<[-~*]* *235 ' <<<\"\$1\"" _ "$out"

# --- hostile paths (issue 9): Postfix logs exactly the mailbox smtpbind
# approved, or nothing of that transaction reached Postfix ---
HOSTILE=$WORK/hostile.jsonl
SMTPBIND_PASSWORD="$PASS_A" python3 ./hostile_paths.py "$SMTPBIND_ADDR" >"$HOSTILE" 2>"$WORK/hostile.err" \
  || { cat "$WORK/hostile.err" >&2; fail "hostile_paths.py ran"; }
while IFS= read -r line; do
  name=$(jq -r .case <<<"$line"); expect=$(jq -r .expect <<<"$line"); reply=$(jq -r .reply <<<"$line")
  if [ "$expect" = relay ]; then
    qid=$(jq -r .queue_id <<<"$line"); from=$(jq -r .from <<<"$line"); to=$(jq -r .to <<<"$line")
    if [ "$qid" = null ]; then fail "hostile $name: not relayed: $reply"; continue; fi
    check "hostile $name: Postfix logs from=<$from>" \
      log_wait "$(printf '%s' "$qid: from=<$from>," | sed 's/[][\.*^$()+?{}|/]/\\&/g')"
    check "hostile $name: Postfix logs to=<$to>, and only that recipient" \
      bash -c '[ "$(grep -F "$1: to=" "$2" | grep -cF "$1: to=<$3>,")" -eq 1 ] && [ "$(grep -cF "$1: to=" "$2")" -eq 1 ]' _ "$qid" "$LOG" "$to"
  else
    check "hostile $name: refused with $expect (got: $reply)" [ "${reply#"$expect"}" != "$reply" ]
  fi
done <"$HOSTILE"
relayed=$(grep -c '"expect": "relay"' "$HOSTILE" || true)
check "hostile: Postfix accepted exactly the $relayed relayed cases (3 + $relayed in all)" \
  [ "$(grep -c ': client=localhost' "$LOG")" -eq $((3 + relayed)) ]
check "hostile: no Postfix log line names evil.example as a recipient or an AUTH= sender" \
  bash -c "! grep -E 'to=<[^>]*@evil\.example>|victim@globex' '$LOG' | grep -v '\"'"

# --- content over BDAT: dot lines and 8-bit, byte for byte (postcat of a held message) ---
CONTENT=$WORK/content.out
SMTPBIND_PASSWORD="$PASS_A" python3 - "$SMTPBIND_ADDR" >"$CONTENT" 2>&1 <<'PY'
import os, smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
body = ("line one\r\n.\r\n.leading dot\r\n..two dots\r\ncaf\u00e9 \u00fcber \u2713\r\n"
        + "x" * 200 + "\r\n.\r\nlast line\r\n").encode("utf-8")
msg = b"From: app@acme.example\r\nTo: hold@example.net\r\nSubject: bdat content\r\n" \
      b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" \
      b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body
s = smtplib.SMTP(host, int(port), timeout=30)
s.ehlo("interop")
s.login("apikey", os.environ["SMTPBIND_PASSWORD"])
s.mail("app@acme.example", ["BODY=8BITMIME"])
s.rcpt("hold@example.net")
code, reply = s.data(msg)
s.quit()
print(code, reply.decode())
sys.stdout.buffer.write(b"BODY\n" + body.replace(b"\r\n", b"\n"))
PY
# after BDAT Postfix says "Ok: <n> bytes queued as <id>"
qid=$(sed -n '1s/^250 2\.0\.0 Ok: .*queued as \([0-9A-Za-z]*\).*/\1/p' "$CONTENT")
if [ -n "$qid" ]; then
  pass "content: 250 from Postfix through smtpbind (queue id $qid)"
  # postcat -b starts at the empty line that ends the header section
  { echo; sed '1,/^BODY$/d' "$CONTENT"; } >"$WORK/content.expected"
  log_wait "postfix/cleanup\[[0-9]+\]: $qid: hold:" >/dev/null
  postcat -c "$CONF" -b -q "$qid" >"$WORK/content.got" 2>"$WORK/postcat.err"
  check "content: the held message's body is byte-identical (dot lines, 8-bit)" \
    cmp "$WORK/content.expected" "$WORK/content.got"
else
  fail "content: not accepted"; cat "$CONTENT"
fi

# --- the upstream path was BDAT: stop smtpbind (its pooled connections QUIT)
# and read Postfix's per-connection command counts ---
kill "$SMTPBIND_PID" 2>/dev/null; wait "$SMTPBIND_PID" 2>/dev/null; SMTPBIND_PID=
accepted=$(grep -c ': client=localhost' "$LOG")
for _ in $(seq 1 50); do
  bdat=$(grep -E 'postfix/smtpd\[[0-9]+\]: disconnect from localhost' "$LOG" |
    sed -n 's/.* bdat=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  [ "${bdat:-0}" -ge "$accepted" ] && break; sleep 0.1
done
check "Postfix log: all $accepted accepted messages came by BDAT (bdat=$bdat over the disconnect lines)" \
  [ "${bdat:-0}" -eq "$accepted" ]
check "Postfix log: no DATA command from the sidecar's connections" \
  bash -c "! grep -E 'disconnect from localhost.* data=' '$LOG'"

# --- DATA pipelined behind the RCPTs (issue 22): DATA upstream, a client
# that pipelines MAIL, RCPT and DATA ---
sed 's/^  reply_timeout: 30s$/  reply_timeout: 30s\n  chunking: off/' "$WORK/policy.yaml" >"$WORK/policy-data.yaml"
start_smtpbind "$BIN" "$WORK/policy-data.yaml" "$WORK/smtpbind-data.log" || setup_fail "smtpbind (chunking: off) start"
from_line=$(($(wc -l <"$LOG") + 1))
PIPE=$WORK/pipelined.out
SMTPBIND_PASSWORD="$PASS_A" python3 - "$SMTPBIND_ADDR" >"$PIPE" 2>&1 <<'PY'
import base64, os, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=30)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline().decode().rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines[-1]
def send(text):
    s.sendall(text.encode())
reply()
send("EHLO pipelining\r\n"); reply()
token = base64.b64encode(b"\0apikey\0" + os.environ["SMTPBIND_PASSWORD"].encode()).decode()
send("AUTH PLAIN %s\r\n" % token); print("auth", reply())
# every recipient refused by Postfix, DATA in the same write
send("MAIL FROM:<app@acme.example>\r\nRCPT TO:<refuse@example.net>\r\nDATA\r\n")
print("refused", reply(), "|", reply(), "|", reply())
send("RSET\r\n"); print("rset", reply())
for n in (1, 2):
    send("MAIL FROM:<app@acme.example>\r\nRCPT TO:<pipe%d@example.net>\r\n"
         "RCPT TO:<pipe%d-cc@example.net>\r\nDATA\r\n" % (n, n))
    print("envelope%d" % n, reply(), "|", reply(), "|", reply(), "|", reply())
    send("From: app@acme.example\r\nSubject: pipelined %d\r\n\r\nbody %d\r\n.\r\n" % (n, n))
    print("message%d" % n, reply())
send("QUIT\r\n"); print("quit", reply())
PY
check "pipelined: Postfix's RCPT refusal, then 554 no valid recipients" \
  grep -Eq '^refused 250 2\.1\.0 .*\| 554 5\.7\.1 <refuse@example\.net>: Recipient address rejected.*\| 554 5\.5\.1 no valid recipients$' "$PIPE"
check "pipelined: RSET answered 250 after it" grep -Eq '^rset 250' "$PIPE"
for n in 1 2; do
  check "pipelined message $n: 250 to MAIL and both RCPTs, 354, then 250 from Postfix" \
    bash -c "grep -Eq '^envelope$n 250 2\.1\.0 .*\| 250 2\.1\.5 .*\| 250 2\.1\.5 .*\| 354 ' '$PIPE' && grep -Eq '^message$n 250 2\.0\.0 Ok: queued as' '$PIPE'"
done
kill "$SMTPBIND_PID" 2>/dev/null; wait "$SMTPBIND_PID" 2>/dev/null; SMTPBIND_PID=
for _ in $(seq 1 50); do
  tail -n +"$from_line" "$LOG" | grep -Eq 'disconnect from localhost.* data=' && break; sleep 0.1
done
disc=$(tail -n +"$from_line" "$LOG" | grep -E 'postfix/smtpd\[[0-9]+\]: disconnect from localhost' | tail -1)
check "Postfix log: one connection took the 3 DATA commands, 2 accepted (data=2/3: the refused envelope's DATA was pipelined) — $disc" \
  grep -q ' data=2/3 ' <<<"$disc"
check "Postfix log: both pipelined messages with sasl_username=tenant-a" \
  [ "$(tail -n +"$from_line" "$LOG" | grep -c 'sasl_username=tenant-a$')" -eq 2 ]
check "Postfix log: no improper pipelining reported" \
  bash -c "! tail -n +$from_line '$LOG' | grep -q 'improper command pipelining'"

if [ "$INTEROP_FAILED" -gt 0 ]; then
  echo "--- postfix.log"; tail -40 "$LOG"; echo "--- smtpbind.log"; tail -20 "$WORK/smtpbind.log"
fi
summary
