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
#   SMTPBIND_REDIRECT         1: transparent mode (below); default 0
#   SMTPBIND_REDIRECT_PORT    smtpbind's plain listener (STARTTLS), default 2525
#   SMTPBIND_REDIRECT_TLS_PORT  smtpbind's implicit-TLS listener, default 4650
#
# Transparent mode (SMTPBIND_REDIRECT=1): a connection from any UID but
# SMTPBIND_UID to one of SMTPBIND_LOCKDOWN_PORTS outside the pod is
# redirected (nat OUTPUT REDIRECT) to smtpbind instead of refused: port 465
# to SMTPBIND_REDIRECT_TLS_PORT, the others to SMTPBIND_REDIRECT_PORT, on
# 127.0.0.1 and, for IPv6, on [::1] (smtpbind listens on both when the
# policy has client.tls). smtpbind's own connections are not redirected (no
# loop). A redirected connection passes the reject rule (conntrack DNAT).
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
nat_chain="SMTPBIND-REDIRECT"
redirect="${SMTPBIND_REDIRECT:-0}"
to_plain="${SMTPBIND_REDIRECT_PORT:-2525}"
to_tls="${SMTPBIND_REDIRECT_TLS_PORT:-4650}"

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
# shellcheck disable=SC2086 # split on commas on purpose
for p in $(IFS=,; echo $ports); do
  # at most 5 digits before comparing: a longer number would overflow the shell's test
  if [ "${#p}" -gt 5 ] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then
    die "SMTPBIND_LOCKDOWN_PORTS: $p is not a port (1-65535)"
  fi
done
case "$redirect" in
  0|1) ;;
  *) die "SMTPBIND_REDIRECT must be 0 or 1, got '$redirect'" ;;
esac
for p in "$to_plain" "$to_tls"; do
  case "$p" in
    ''|*[!0-9]*) die "SMTPBIND_REDIRECT_PORT and SMTPBIND_REDIRECT_TLS_PORT must be port numbers, got '$p'" ;;
  esac
  if [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "redirect port out of range: $p"; fi
done
# The redirected ports: 465 (SMTPS) to the implicit-TLS listener, the rest to the plain one.
plain_ports=""
tls_redirect=0
# shellcheck disable=SC2086 # split on commas on purpose
for p in $(IFS=,; echo $ports); do
  if [ "$p" = 465 ]; then tls_redirect=1; else plain_ports="${plain_ports:+$plain_ports,}$p"; fi
done
case "$ipt4" in
  iptables) ipt6=ip6tables ;;
  iptables-nft) ipt6=ip6tables-nft ;;
  iptables-legacy) ipt6=ip6tables-legacy ;;
  *) die "SMTPBIND_IPTABLES must be iptables, iptables-nft or iptables-legacy, got '$ipt4'" ;;
esac

# fresh_chain IPT TABLE CHAIN: the chain exists and is empty.
fresh_chain() {
  if "$1" -w -t "$2" -n -L "$3" >/dev/null 2>&1; then
    "$1" -w -t "$2" -F "$3"
  else
    "$1" -w -t "$2" -N "$3"
  fi
}

# drop_jumps IPT TABLE CHAIN: removes the OUTPUT jumps to CHAIN an earlier run installed.
drop_jumps() {
  "$1" -w -t "$2" -S OUTPUT >/dev/null || return 1
  "$1" -w -t "$2" -S OUTPUT | grep -e "-j $3\$" | sed 's/^-A /-D /' | while read -r rule; do
    # shellcheck disable=SC2086 # the rule is iptables' own output: split into words on purpose
    (set -f; "$1" -w -t "$2" $rule) || exit 1
  done
}

# redirect_rules IPT: transparent mode's nat rules (or none, and no trace of an earlier run's).
redirect_rules() {
  ipt="$1"
  drop_jumps "$ipt" nat "$nat_chain" || return 1
  if [ "$redirect" != 1 ]; then
    if "$ipt" -w -t nat -n -L "$nat_chain" >/dev/null 2>&1; then
      "$ipt" -w -t nat -F "$nat_chain" && "$ipt" -w -t nat -X "$nat_chain" || return 1
    fi
    return 0
  fi
  fresh_chain "$ipt" nat "$nat_chain" || return 1
  "$ipt" -w -t nat -A "$nat_chain" -o lo -j RETURN || return 1
  "$ipt" -w -t nat -A "$nat_chain" -m owner --uid-owner "$uid" -j RETURN || return 1
  if [ "$tls_redirect" = 1 ]; then
    "$ipt" -w -t nat -A "$nat_chain" -p tcp --dport 465 -j REDIRECT --to-ports "$to_tls" || return 1
  fi
  if [ -n "$plain_ports" ]; then
    "$ipt" -w -t nat -A "$nat_chain" -p tcp -m multiport --dports "$plain_ports" \
      -j REDIRECT --to-ports "$to_plain" || return 1
  fi
  "$ipt" -w -t nat -I OUTPUT 1 -p tcp -m multiport --dports "$ports" -j "$nat_chain" || return 1
  "$ipt" -w -t nat -C OUTPUT -p tcp -m multiport --dports "$ports" -j "$nat_chain" || return 1
  "$ipt" -w -t nat -C "$nat_chain" -m owner --uid-owner "$uid" -j RETURN || return 1
  [ "$("$ipt" -w -t nat -S OUTPUT | grep -c -e "-j $nat_chain\$")" = 1 ] || return 1
}

apply() {
  ipt="$1"
  # (called as `apply ... || die`, where set -e does not apply: every step checks itself)
  # The chain: loopback is the pod itself; smtpbind's UID goes out; the rest is refused.
  fresh_chain "$ipt" filter "$chain" || return 1
  "$ipt" -w -A "$chain" -o lo -j RETURN || return 1
  if [ "$redirect" = 1 ]; then
    # a connection the nat rules redirected to smtpbind is the pod talking to itself
    "$ipt" -w -A "$chain" -m conntrack --ctstate DNAT -j RETURN || return 1
  fi
  "$ipt" -w -A "$chain" -m owner --uid-owner "$uid" -j RETURN || return 1
  "$ipt" -w -A "$chain" -p tcp -j REJECT --reject-with tcp-reset || return 1
  # Drop the jumps an earlier run installed (perhaps for other ports) ...
  drop_jumps "$ipt" filter "$chain" || return 1
  # ... then every new TCP connection to an SMTP port passes the chain, before anything else in OUTPUT.
  "$ipt" -w -I OUTPUT 1 -p tcp -m multiport --dports "$ports" -j "$chain" || return 1
  # Verify what the kernel now holds.
  "$ipt" -w -C OUTPUT -p tcp -m multiport --dports "$ports" -j "$chain" || return 1
  "$ipt" -w -C "$chain" -m owner --uid-owner "$uid" -j RETURN || return 1
  "$ipt" -w -C "$chain" -p tcp -j REJECT --reject-with tcp-reset || return 1
  [ "$("$ipt" -w -S OUTPUT | grep -c -e "-j $chain\$")" = 1 ] || return 1
  redirect_rules "$ipt" || return 1
}

apply "$ipt4" || die "could not install the IPv4 rules with $ipt4"
log ipv4 "only uid $uid may connect to tcp ports $ports outside the pod"
[ "$redirect" = 1 ] && log redirect "tcp ports $ports of other uids go to smtpbind (465 to $to_tls, the rest to $to_plain)"

if [ -e /proc/net/if_inet6 ]; then
  apply "$ipt6" || die "IPv6 is enabled but the IPv6 rules could not be installed with $ipt6"
  log ipv6 "only uid $uid may connect to tcp ports $ports outside the pod"
else
  log ipv6 "disabled in this network namespace; nothing to do"
fi
