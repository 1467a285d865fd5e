#!/bin/sh
# smtpbind egress lock-down.
#
# Run once in a pod's network namespace (by the chart's init container, which
# has NET_ADMIN and nothing else; by tests/e2e/pod-sim.sh in each simulated pod).
# It installs netfilter rules so that, of all the processes in the pod, only
# those running as SMTPBIND_UID may open a TCP connection to one of
# SMTPBIND_LOCKDOWN_PORTS outside the pod. Any other process gets a TCP reset,
# i.e. "connection refused". Loopback is not touched: the mailer still reaches
# smtpbind on 127.0.0.1:2525.
#
#   SMTPBIND_UID              UID allowed through (default 65532, smtpbind's)
#   SMTPBIND_LOCKDOWN_PORTS   comma-separated destination ports
#                             (default 25,465,587,2525; at most 15)
#   SMTPBIND_IPTABLES         iptables | iptables-nft | iptables-legacy
#                             (default iptables; ip6tables* is derived)
#
# Idempotent: a second run replaces the rules instead of adding more.
# Fails closed: if IPv6 is enabled in the namespace, the IPv6 rules must be
# installed too, or the script exits non-zero and the pod does not start.
#
# Limits (docs/kubernetes.md): a process that runs as SMTPBIND_UID, or can
# become it (CAP_SETUID), is let through; a process with NET_ADMIN can remove
# the rules; one with NET_RAW can send packets that netfilter's owner match
# does not see. The mailer must have none of these.
set -eu

uid="${SMTPBIND_UID:-65532}"
ports="${SMTPBIND_LOCKDOWN_PORTS:-25,465,587,2525}"
ipt4="${SMTPBIND_IPTABLES:-iptables}"
chain="SMTPBIND-EGRESS"

log() { printf '{"event":"egress_lockdown","%s":"%s"}\n' "$1" "$2"; }
die() { log error "$1" >&2; exit 1; }

case "$uid" in
  ''|*[!0-9]*) die "SMTPBIND_UID must be a number, got '$uid'" ;;
esac
case "$ports" in
  ''|,*|*,|*,,*|*[!0-9,]*) die "SMTPBIND_LOCKDOWN_PORTS must be comma-separated port numbers, got '$ports'" ;;
esac
# shellcheck disable=SC2086 # split on commas on purpose
n=$(IFS=,; set -- $ports; echo $#)
[ "$n" -le 15 ] || die "at most 15 ports (iptables multiport), got $n"
case "$ipt4" in
  iptables) ipt6=ip6tables ;;
  iptables-nft) ipt6=ip6tables-nft ;;
  iptables-legacy) ipt6=ip6tables-legacy ;;
  *) die "SMTPBIND_IPTABLES must be iptables, iptables-nft or iptables-legacy, got '$ipt4'" ;;
esac

apply() {
  ipt="$1"
  # (called as `apply ... || die`, where set -e does not apply: every step checks itself)
  # The chain: loopback is the pod itself; smtpbind's UID goes out; the rest is refused.
  if "$ipt" -w -n -L "$chain" >/dev/null 2>&1; then
    "$ipt" -w -F "$chain" || return 1
  else
    "$ipt" -w -N "$chain" || return 1
  fi
  "$ipt" -w -A "$chain" -o lo -j RETURN || return 1
  "$ipt" -w -A "$chain" -m owner --uid-owner "$uid" -j RETURN || return 1
  "$ipt" -w -A "$chain" -p tcp -j REJECT --reject-with tcp-reset || return 1
  # Drop the jumps an earlier run installed (perhaps for other ports) ...
  "$ipt" -w -S OUTPUT >/dev/null || return 1
  "$ipt" -w -S OUTPUT | grep -e "-j $chain\$" | sed 's/^-A /-D /' | while read -r rule; do
    # shellcheck disable=SC2086 # the rule is iptables' own output: split into words on purpose
    (set -f; "$ipt" -w $rule) || exit 1
  done || return 1
  # ... then every new TCP connection to an SMTP port passes the chain, before anything else in OUTPUT.
  "$ipt" -w -I OUTPUT 1 -p tcp -m multiport --dports "$ports" -j "$chain" || return 1
  # Verify what the kernel now holds.
  "$ipt" -w -C OUTPUT -p tcp -m multiport --dports "$ports" -j "$chain" || return 1
  "$ipt" -w -C "$chain" -m owner --uid-owner "$uid" -j RETURN || return 1
  "$ipt" -w -C "$chain" -p tcp -j REJECT --reject-with tcp-reset || return 1
  [ "$("$ipt" -w -S OUTPUT | grep -c -e "-j $chain\$")" = 1 ] || return 1
}

apply "$ipt4" || die "could not install the IPv4 rules with $ipt4"
log ipv4 "only uid $uid may connect to tcp ports $ports outside the pod"

if [ -e /proc/net/if_inet6 ]; then
  apply "$ipt6" || die "IPv6 is enabled but the IPv6 rules could not be installed with $ipt6"
  log ipv6 "only uid $uid may connect to tcp ports $ports outside the pod"
else
  log ipv6 "disabled in this network namespace; nothing to do"
fi
