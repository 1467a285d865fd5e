# Shared helpers for the interop scripts (sourced, not run).
# Counters, the smtpbind binary, kubelet-style Secrets, and starting the
# sidecar on port 0 with its address read from the "listening" event.

INTEROP_PASSED=0
INTEROP_FAILED=0

pass() { INTEROP_PASSED=$((INTEROP_PASSED + 1)); echo "ok   - $*"; }
fail() { INTEROP_FAILED=$((INTEROP_FAILED + 1)); echo "FAIL - $*"; }
check() { # check "description" command...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
summary() {
  echo "$INTEROP_PASSED passed, $INTEROP_FAILED failed"
  [ "$INTEROP_FAILED" -eq 0 ] && [ "$INTEROP_PASSED" -gt 0 ]
}

# apt-get install only what is missing (idempotent, non-interactive).
apt_ensure() { # apt_ensure package...
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root or install them)" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The smtpbind binary: $SMTPBIND_BIN, else a (cheap, incremental) debug build.
smtpbind_bin() {
  if [ -n "${SMTPBIND_BIN:-}" ]; then echo "$SMTPBIND_BIN"; return; fi
  local root; root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  (cd "$root" && cargo build --locked --quiet --bin smtpbind >&2) || return 1
  echo "$root/target/debug/smtpbind"
}

# write_secret DIR USERNAME PASSWORD: the layout the kubelet mounts.
write_secret() {
  local dir=$1 ts="..2026_01_01_00_00_00.000000001"
  mkdir -p "$dir/$ts"
  printf '%s' "$2" > "$dir/$ts/username"
  printf '%s' "$3" > "$dir/$ts/password"
  ln -sfn "$ts" "$dir/..data"
  ln -sfn ..data/username "$dir/username"
  ln -sfn ..data/password "$dir/password"
}

# wait_smtp HOST PORT [SECONDS]: until something answers 220 there.
wait_smtp() {
  local host=$1 port=$2 deadline=$((SECONDS + ${3:-20}))
  while [ $SECONDS -lt $deadline ]; do
    if timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port && head -c 3 <&3" 2>/dev/null | grep -q 220; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# start_smtpbind BIN POLICY LOGFILE: sets SMTPBIND_PID and SMTPBIND_ADDR (host:port).
start_smtpbind() {
  local bin=$1 policy=$2 log=$3 deadline=$((SECONDS + 20))
  "$bin" run --policy "$policy" --listen 127.0.0.1:0 --admin 127.0.0.1:0 >"$log" 2>&1 &
  SMTPBIND_PID=$!
  SMTPBIND_ADDR=
  while [ $SECONDS -lt $deadline ]; do
    SMTPBIND_ADDR=$(grep -m1 '"event":"listening"' "$log" 2>/dev/null |
      sed -n 's/.*"addr":"\([^"]*\)".*/\1/p')
    [ -n "$SMTPBIND_ADDR" ] && return 0
    kill -0 "$SMTPBIND_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "smtpbind did not start:" >&2
  cat "$log" >&2
  return 1
}
