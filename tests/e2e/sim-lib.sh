# shellcheck shell=bash
# Shared by the network-namespace simulations (pod-sim.sh, transparent-sim.sh;
# sourced after they set BIN, PROBE and die): the tools they need, a work
# directory holding the binary and the probe where unprivileged UIDs can run
# them, and running commands inside a namespace, as root or as a UID.

sim_install() { # PACKAGE...: apt-get install the missing ones (root)
  [ $# -gt 0 ] || return 0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >/dev/null \
    || die "could not install $*"
}

sim_workdir() { # NAME: WORK with the binary (SB) and the probe; PY a python3 any UID can run
  WORK=$(mktemp -d "/tmp/smtpbind-$1.XXXXXX") || die "mktemp failed"
  chmod 0755 "$WORK"
  install -m 0755 "$BIN" "$WORK/smtpbind"
  install -m 0644 "$PROBE" "$WORK/smtp_probe.py"
  # shellcheck disable=SC2034 # used by the sourcing script
  SB=$WORK/smtpbind
  # shellcheck disable=SC2034 # used by the sourcing script
  PY=/usr/bin/python3
}

# nsx NS COMMAND...: run in a namespace
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# asuid UID NS COMMAND...: run in a namespace as an unprivileged UID with no capabilities
asuid() {
  local uid=$1 ns=$2
  shift 2
  ip netns exec "$ns" setpriv --reuid "$uid" --regid "$uid" --clear-groups \
    --inh-caps=-all --bounding-set=-all --no-new-privs "$@"
}
