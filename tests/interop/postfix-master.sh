# shellcheck shell=bash
# Sourced by tests/interop/postfix.sh and bench/wan.sh: the master.cf of a
# throw-away Postfix instance (chrooted nowhere, unprivileged where it can).

postfix_master_cf() { # PORT [EXTRA-LINE...]: master.cf on stdout; smtpd on 127.0.0.1:PORT
  local port=$1
  shift
  cat <<CONF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
CONF
  [ $# -eq 0 ] || printf '%s\n' "$@"
  cat <<CONF
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF
}
