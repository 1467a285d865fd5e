#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests
# need (idempotently), then runs the Rust test suite and the deployment checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v swaks >/dev/null || need+=(swaks)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Everything the test run prints is kept and scanned for the test secrets.
out=target/tmp
rm -rf "$out/sidecar-output" "$out/test-secrets"
mkdir -p "$out"
cargo test --locked "$@" 2>&1 | tee "$out/cargo-test.log"
python3 tests/scan_secrets.py "$out/cargo-test.log" "$out/sidecar-output"

# Deployment checks (issue 4) when present.
if [ -x tests/helm/run.sh ]; then tests/helm/run.sh; fi
if [ -x tests/e2e/pod-sim.sh ] && [ "$(id -u)" -eq 0 ]; then tests/e2e/pod-sim.sh; fi
# Transparent mode (issue 13): REDIRECT to the sidecar, IPv4 and IPv6, no loop.
if [ "$(id -u)" -eq 0 ]; then bash tests/e2e/transparent-sim.sh; fi
# The shipped build (scripts/build-release.sh: release, statically linked):
# no shared library needed, names resolve through /etc/hosts and DNS. Root
# only (a private mount namespace); builds the release binary (~2 minutes).
if [ "$(id -u)" -eq 0 ]; then bash tests/e2e/static-build.sh; fi

# Real peers (issue 5): Postfix with Cyrus SASL as upstream, nodemailer's
# pooled transport as client. They install Debian/npm packages: root only.
if [ "$(id -u)" -eq 0 ]; then
  SMTPBIND_BIN="$PWD/target/debug/smtpbind" bash tests/interop/postfix.sh
  SMTPBIND_BIN="$PWD/target/debug/smtpbind" bash tests/interop/nodemailer.sh
fi
