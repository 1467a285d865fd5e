#!/usr/bin/env bash
# The admission webhook's cost: /mutate latency (p50/p99) for a typical pod
# (tests/webhook/golden/mutate-inject.request.json) and /validate latency for
# the injected pod (validate-injected-pod.request.json: every rule runs) over
# one keep-alive HTTPS connection, and the webhook's RSS. Uses the shipped build
# (scripts/build-release.sh) unless SMTPBIND_BIN is set; N requests (default 5000).
#
#   bash bench/webhook.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SMTPBIND_BIN:-$(bash scripts/build-release.sh)}
N=${N:-5000}
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' > "$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null
mkdir "$work/tls" && cp "$work/tls.crt" "$work/tls.key" "$work/tls/"

"$BIN" webhook --config tests/webhook/config.yaml --listen 127.0.0.1:0 --lame-duck 100ms --tls-dir "$work/tls" > "$work/log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*"event":"listening","webhook":"127.0.0.1:\([0-9]*\)".*/\1/p' "$work/log")
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { cat "$work/log"; exit 1; }
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)"
echo "binary: $BIN"
python3 bench/webhook.py "$work/ca.pem" "$port" "$pid" tests/webhook/golden/mutate-inject.request.json "$N" \
  tests/webhook/golden/validate-injected-pod.request.json
