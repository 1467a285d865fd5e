#!/usr/bin/env bash
# Chart checks: render with the real Helm library (helm-python-sdk: Helm v4 as a
# native library, no helm binary), lint, kubernetes-validate --strict against
# Kubernetes 1.29 and 1.31, pod shape, tenant isolation, `smtpbind check` on
# every rendered policy, the kind harness's manifests, shellcheck; the admission
# webhook in the chart, its golden patches applied (jsonpatch) and validated.
#
# Also: the alerts under promtool, the runbook, the dashboard, the release
# (versions, licence, changelog, SBOM).
#
# Installs what it needs (idempotent): PyPI helm-python-sdk, kubernetes-validate,
# pytest, PyYAML, jsonpatch; Debian shellcheck, openssl and prometheus (promtool).
#
#   tests/helm/run.sh [pytest args...]
# Env: PYTHON (default python3), SMTPBIND_BIN (default <repo>/target/debug/smtpbind;
# the `smtpbind check` tests are skipped, and say so, when it is not built).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
PYTHON=${PYTHON:-python3}

pip_pkgs=()
"$PYTHON" -c 'import helm_python' 2>/dev/null || pip_pkgs+=("helm-python-sdk==0.2.2")
"$PYTHON" -c 'import kubernetes_validate' 2>/dev/null || pip_pkgs+=("kubernetes-validate==1.37.0")
"$PYTHON" -c 'import pytest' 2>/dev/null || pip_pkgs+=("pytest>=7")
"$PYTHON" -c 'import yaml' 2>/dev/null || pip_pkgs+=("PyYAML>=6")
"$PYTHON" -c 'import jsonpatch' 2>/dev/null || pip_pkgs+=("jsonpatch==1.33")
if [ ${#pip_pkgs[@]} -gt 0 ]; then
  echo "tests/helm: pip install ${pip_pkgs[*]}"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "${pip_pkgs[@]}"
fi
# the kubernetes-validate CLI must be the one of this Python
PATH="$("$PYTHON" -c 'import sys, sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

apt_pkgs=()
command -v shellcheck >/dev/null || apt_pkgs+=(shellcheck)
command -v openssl >/dev/null || apt_pkgs+=(openssl)
# promtool (alert rule unit tests) ships in Debian's prometheus package
command -v promtool >/dev/null || apt_pkgs+=(prometheus)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "tests/helm: apt-get install ${apt_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

export SMTPBIND_BIN=${SMTPBIND_BIN:-$ROOT/target/debug/smtpbind}
cd "$ROOT"
exec "$PYTHON" -m pytest -q -p no:cacheprovider tests/helm/test_chart.py tests/helm/test_webhook_chart.py tests/helm/test_rule7_chart.py \
  tests/helm/test_monitoring.py tests/helm/test_release.py tests/helm/test_gitops.py \
  tests/helm/test_tenants.py "$@"
