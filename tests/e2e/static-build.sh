#!/usr/bin/env bash
# static-build.sh — the build that ships (scripts/build-release.sh, used by the
# Dockerfile and bench/run.sh) is linked statically against glibc. This shows
# that it is (no ELF interpreter, no shared library needed) and that it still
# does what a sidecar needs from libc: resolve the upstream's name through
# /etc/hosts and through DNS (glibc's built-in NSS sources, no libnss_*.so),
# verify the upstream's certificate, and relay a message under the mounted
# credential. Root needed: the sidecars run in a private mount namespace
# (unshare -m) where /etc/hosts and /etc/resolv.conf are bind-mounted test
# files, with a DNS server (tests/e2e/dns_stub.py) on 127.0.0.153:53.
#
# Env: SMTPBIND_BIN (default: built by scripts/build-release.sh), KEEP_WORK=1.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DNS_ADDR=127.0.0.153
PASS=0
FAIL=0
PIDS=()
WORK=$(mktemp -d /tmp/smtpbind-static.XXXXXX)

say() { printf '%s\n' "$*"; }
pass() { PASS=$((PASS + 1)); say "ok   - $*"; }
fail() { FAIL=$((FAIL + 1)); say "FAIL - $*"; }
check() { # check NAME COMMAND...
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
die() {
  say "static-build: $*" >&2
  say "$PASS passed, $((FAIL + 1)) failed"
  exit 1
}
stop_all() { # stops what this script started; true when every process is gone
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  ! pgrep -f "$WORK/" >/dev/null
}
cleanup() {
  stop_all
  if [ "${KEEP_WORK:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_for() { # wait_for SECONDS COMMAND...
  local end=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

[ "$(id -u)" = 0 ] || die "needs root (unshare -m, a DNS server on port 53)"
for tool in unshare python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

if [ -n "${SMTPBIND_BIN:-}" ]; then
  BIN=$SMTPBIND_BIN
else
  say "static-build: building with scripts/build-release.sh"
  BIN=$("$ROOT/scripts/build-release.sh") || die "scripts/build-release.sh failed"
fi

# ---- the binary ------------------------------------------------------------------
# PT_INTERP (3) names the dynamic loader and DT_NEEDED (1) a shared library:
# a static binary has neither.
elf_deps() {
  python3 - "$1" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF file"
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
found = []
for i in range(phnum):
    p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
    if p_type == 3:
        found.append("interpreter " + data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode())
    if p_type == 2:  # PT_DYNAMIC: look for DT_NEEDED entries
        for off in range(p_offset, p_offset + p_filesz, 16):
            tag, _ = struct.unpack_from("<qQ", data, off)
            if tag == 0:
                break
            if tag == 1:
                found.append("DT_NEEDED")
print(" ".join(found) or "none")
PY
}
deps=$(elf_deps "$BIN")
check "the release binary has no ELF interpreter and needs no shared library (found: $deps)" \
  test "$deps" = none

# ---- name resolution: a DNS server and test hosts/resolv.conf ------------------------
UP_PORT=$(free_port)
printf '127.0.0.1 localhost\n127.0.0.1 upstream-hosts.test\n' >"$WORK/hosts"
printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$DNS_ADDR" >"$WORK/resolv.conf"
: >"$WORK/dns-queries.log"
python3 "$ROOT/tests/e2e/dns_stub.py" "$DNS_ADDR" upstream.test 127.0.0.1 "$WORK/dns-queries.log" \
  >"$WORK/dns.out" 2>&1 &
PIDS+=($!)
wait_for 10 grep -q listening "$WORK/dns.out" || die "the DNS stub did not start: $(cat "$WORK/dns.out")"

# in_ns COMMAND...: runs COMMAND with the test hosts and resolv.conf. Each
# step execs the next, so `in_ns ... &` leaves $! = COMMAND's own PID (the
# cleanup trap stops it).
in_ns() {
  # shellcheck disable=SC2016 # $1, $2, $@ are the inner sh's arguments
  exec unshare -m sh -c 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"' \
    sh "$WORK/hosts" "$WORK/resolv.conf" "$@"
}

# ---- the upstream: smtpbind's own recording server, STARTTLS with a generated CA ------
mkdir -p "$WORK/account" "$WORK/secret" "$WORK/log"
printf 'apikey' >"$WORK/account/username"
printf 'SG.static-build-test-key' >"$WORK/account/password"
cp "$WORK/account/username" "$WORK/account/password" "$WORK/secret/"
"$BIN" capture --listen "127.0.0.1:$UP_PORT" --tls starttls --hostname upstream.test \
  --ca-out "$WORK/ca.pem" --account "tenant=$WORK/account" --log-dir "$WORK/log" \
  >"$WORK/capture.log" 2>&1 &
PIDS+=($!)
wait_for 30 test -s "$WORK/ca.pem" || die "the capture upstream did not start: $(cat "$WORK/capture.log")"
PIN=sha256:$(sha256sum <"$WORK/secret/password" | cut -d' ' -f1)

# two sidecars: one reaches the upstream by a name only DNS knows, one by a
# name only /etc/hosts knows; both verify the certificate for upstream.test
start_sidecar() { # start_sidecar NAME ADDRESS_HOST
  local name=$1 host=$2 port admin
  port=$(free_port)
  admin=$(free_port)
  cat >"$WORK/$name.yaml" <<POLICY
version: 1
tenant: "$name"
listen: "127.0.0.1:$port"
admin: "127.0.0.1:$admin"
upstream:
  address: "$host:$UP_PORT"
  tls: starttls
  ca_file: "$WORK/ca.pem"
  server_name: upstream.test
  connect_timeout: 5s
credential:
  secret_dir: "$WORK/secret"
  pins: ["$PIN"]
client:
  auth: required
  accept:
    - username: apikey
      password: mounted
senders: ["*@static.example"]
POLICY
  in_ns "$BIN" run --policy "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PORT_$name=$port ADMIN_$name=$admin"
}
start_sidecar dns upstream.test
start_sidecar hosts upstream-hosts.test

send() { # send PORT RCPT: one message with AUTH PLAIN; prints the reply to end of data
  python3 - "$1" "$2" <<'PY'
import smtplib, sys
port, rcpt = int(sys.argv[1]), sys.argv[2]
with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
    s.ehlo("static-build")
    s.login("apikey", "SG.static-build-test-key")
    code, text = s.data("From: app@static.example\r\nSubject: static\r\n\r\nhello\r\n") \
        if s.mail("app@static.example")[0] == 250 and s.rcpt(rcpt)[0] == 250 else (0, b"refused")
    print(code, text.decode(errors="replace"))
PY
}

for name in dns hosts; do
  port_var=PORT_$name admin_var=ADMIN_$name
  if wait_for 30 curl -fsS -m 2 "http://127.0.0.1:${!admin_var}/readyz"; then
    pass "$name: the static build starts and is ready"
  else
    fail "$name: not ready"; sed 's/^/    /' "$WORK/$name.log"
    continue
  fi
  reply=$(send "${!port_var}" "to-$name@rcpt.example" 2>&1)
  check "$name: a message through the sidecar is accepted by the upstream ($reply)" \
    grep -q '^250 ' <<<"$reply"
  check "$name: the upstream recorded it under the mounted credential's account" \
    grep -q "to-$name@rcpt.example" "$WORK/log/tenant.jsonl"
done
check "the DNS sidecar's name was resolved by the DNS server ($(tr '\n' ' ' <"$WORK/dns-queries.log"))" \
  grep -q '^upstream\.test 1$' "$WORK/dns-queries.log"
check "the hosts sidecar's name came from /etc/hosts (never asked over DNS)" \
  test -z "$(grep upstream-hosts "$WORK/dns-queries.log")"
no_secret() { # both sidecars wrote output, and no trace of the key in it
  test -s "$WORK/dns.log" && test -s "$WORK/hosts.log" &&
    ! grep -q -e 'static-build-test-key' -e "$(printf '\0apikey\0SG.static-build-test-key' | base64)" \
      "$WORK/dns.log" "$WORK/hosts.log"
}
check "no secret in the sidecars' output" no_secret

check "every process the test started has stopped (nothing left running in $WORK)" stop_all

say "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
