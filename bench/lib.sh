# shellcheck shell=bash
# Shared by the bench/ scripts (sourced; they set ROOT first): installing
# the tools a benchmark needs, the binary under test, and a work directory
# whose processes (PIDS) are stopped when the script exits.

bench_need() { # NAME PACKAGE...: install the missing Debian packages (root only)
  local name=$1
  shift
  [ $# -gt 0 ] || return 0
  [ "$(id -u)" -eq 0 ] || { echo "$name: missing $*: install them or run as root" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  # postfix: "No configuration" installs the programs and starts nothing
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

bench_binary() { # SMTPBIND_BIN: the build that ships (release, static) unless given
  if [ -z "${SMTPBIND_BIN:-}" ]; then
    SMTPBIND_BIN=$("$ROOT/scripts/build-release.sh")
  fi
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

bench_workdir() { # NAME: WORK (a fresh directory) and PIDS (stopped by bench_stop_all)
  WORK=$(mktemp -d "/tmp/smtpbind-$1.XXXXXX")
  chmod 755 "$WORK"
  PIDS=()
}

bench_stop_all() { # every process in PIDS, then the work directory (KEEP=1 keeps it)
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_haproxy() { # LISTEN-PORT BACKEND-PORT [RUNNER...]: haproxy in plain TCP mode (a
  # proxy that does no work) in the background; sets HAP_PID, adds it to PIDS
  local listen=$1 backend=$2
  shift 2
  cat > "$WORK/haproxy.cfg" <<CONF
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen smtp
    bind 127.0.0.1:$listen
    server sink 127.0.0.1:$backend
CONF
  "$@" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
  HAP_PID=$!
  PIDS+=("$HAP_PID")
}

bench_wait_220() { # PORT: until something answers 220 on 127.0.0.1:PORT (10 s at most)
  for _ in $(seq 1 100); do
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 3 <&3" 2>/dev/null | grep -q 220; then return 0; fi
    sleep 0.1
  done
  echo "bench: nothing answers 220 on 127.0.0.1:$1" >&2
  return 1
}

bench_sink_policy() { # DIR PORT ADMIN SINK-PORT PIN: DIR/policy.yaml, smtpbind in front of
  # smtp-sink -a as profile.sh and per-core.sh run it (tls: none + insecure,
  # no upstream AUTH, no client AUTH, header_from enforced); the secret is $WORK/secret
  mkdir -p "$1"
  cat > "$1/policy.yaml" <<CONF
version: 1
tenant: bench
listen: 127.0.0.1:$2
admin: 127.0.0.1:$3
upstream:
  address: 127.0.0.1:$4
  tls: none
  insecure: true
credential:
  secret_dir: $WORK/secret
  mechanism: none
  pins: [ "$5" ]
client:
  auth: none
senders: [ "*@bench.example" ]
header_from: enforce
CONF
}
