#!/usr/bin/env bash
# tests/kind/run.sh — the two-tenant deployment on a real cluster (kind).
#
# Needs Docker, kind >= 0.24 (its kindnet enforces NetworkPolicy), kubectl
# and helm (v3.8+ or v4), and network access to pull the kind node image and
# python:3.12-alpine (the tenants' stand-in mailer and the capture inspector).
#
#  1. builds the images from the repository's Dockerfile (smtpbind:kind and
#     smtpbind-egress-lockdown:kind) and loads them into a new kind cluster;
#  2. deploys the recording upstream (`smtpbind capture`, capture.yaml) and
#     the two tenants' Secrets (tenant-secrets.yaml);
#  3. stores the capture's generated CA as the Secret smtp-capture-ca and
#     installs the chart with values.yaml (two tenants, egress lock-down and
#     NetworkPolicy on);
#  4. sends from each tenant's mailer container through its sidecar and checks
#     the capture's per-account log; checks that the mailer's direct
#     connection to the upstream is refused and that the other tenant's key
#     gets 535;
#  5. installs the admission webhook (a second release, webhook/values.yaml),
#     labels an application namespace (webhook/namespace.yaml) holding tenant
#     acme's Secret and policy, installs a mailer from another chart
#     (mailer-chart, annotated smtpbind.dev/inject) and checks its pod was
#     injected (lock-down, then sidecar pinned to acme's upstream), its mail
#     arrives under account acme and its direct connection is refused; that
#     /mutate hardens a container with no securityContext (rule 5) and exec
#     into the sidecar is refused (rule 6); that a policy edit redirecting the
#     key makes the sidecar not ready with 421, and putting it back recovers
#     it (rule 7); then that a pod mounting another tenant's Secret, and a
#     mailer-labelled pod without the sidecar, are refused (kubectl
#     --dry-run=server: the webhook has no side effects);
#  6. deletes the cluster (trap), also when a step fails.
#
# Env: KIND_CLUSTER_NAME (default smtpbind-e2e), KIND_NODE_IMAGE (optional,
# e.g. kindest/node:v1.29.x for the oldest supported version),
# KEEP_CLUSTER=1 to keep the cluster for a look.
# Prints "N passed, N failed"; exits non-zero if anything failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLUSTER=${KIND_CLUSTER_NAME:-smtpbind-e2e}
CONTEXT=kind-$CLUSTER
NS=smtpbind-e2e
RELEASE=e2e
MAILER_IMAGE=python:3.12-alpine
UPSTREAM_HOST=smtp-capture.$NS.svc.cluster.local
UPSTREAM_PORT=2525
PROBE=$ROOT/tests/e2e/smtp_probe.py
PY_LOCAL=${PYTHON:-python3}

PASS=0
FAIL=0
WORK=""
CREATED=0

say() { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
die() {
  say "kind: $*" >&2
  say "$PASS passed, $((FAIL + 1)) failed"
  exit 1
}
pass() { PASS=$((PASS + 1)); say "ok   - $*"; }
fail() { FAIL=$((FAIL + 1)); say "FAIL - $*"; }
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

kctl() { kubectl --context "$CONTEXT" "$@"; }

diagnostics() {
  say "---- diagnostics"
  kctl -n "$NS" get pods -o wide || true
  for t in acme globex; do
    kctl -n "$NS" logs "deploy/$RELEASE-smtpbind-$t" -c smtpbind-egress-lockdown --tail=20 || true
    kctl -n "$NS" logs "deploy/$RELEASE-smtpbind-$t" -c smtpbind --tail=40 || true
  done
  kctl -n "$NS" logs deploy/smtp-capture -c capture --tail=40 || true
  kctl -n smtpbind-webhook logs deploy/smtpbind-webhook --tail=40 || true
  kctl -n smtpbind-e2e-apps get pods -o wide || true
  say "----"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ "$CREATED" = 1 ]; then diagnostics; fi
  if [ "$CREATED" = 1 ]; then
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
      say "kind: cluster $CLUSTER kept (kind delete cluster --name $CLUSTER)"
    else
      kind delete cluster --name "$CLUSTER" || true
    fi
  fi
  [ -n "$WORK" ] && rm -rf "$WORK"
  exit "$rc"
}

# ---- prerequisites -------------------------------------------------------------------
for tool in docker kind kubectl helm "$PY_LOCAL"; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
kind_version=$(kind version | sed -n 's/^kind v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
read -r kind_major kind_minor <<<"${kind_version:-0 0}"
if [ "$kind_major" -eq 0 ] && [ "$kind_minor" -lt 24 ]; then
  die "kind >= 0.24 is needed (NetworkPolicy enforcement); found: $(kind version)"
fi
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  die "a kind cluster named $CLUSTER already exists: delete it or set KIND_CLUSTER_NAME"
fi

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK=$(mktemp -d)

# ---- images + cluster ------------------------------------------------------------------
step "build the images"
docker build -t smtpbind:kind "$ROOT"
docker build --target egress-lockdown -t smtpbind-egress-lockdown:kind "$ROOT"
docker pull "$MAILER_IMAGE"

step "create the cluster $CLUSTER"
CREATED=1
kind create cluster --name "$CLUSTER" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
kind load docker-image --name "$CLUSTER" smtpbind:kind smtpbind-egress-lockdown:kind "$MAILER_IMAGE"

# ---- the upstream and the tenants' Secrets ------------------------------------------------
step "deploy the capture upstream"
kctl apply -f "$HERE/namespace.yaml"
kctl apply -f "$HERE/tenant-secrets.yaml" -f "$HERE/capture.yaml"
kctl -n "$NS" rollout status deploy/smtp-capture --timeout=180s

for _ in $(seq 60); do
  if kctl -n "$NS" exec deploy/smtp-capture -c inspector -- cat /shared/ca.pem >"$WORK/ca.pem" 2>/dev/null \
    && grep -q "BEGIN CERTIFICATE" "$WORK/ca.pem"; then
    break
  fi
  sleep 2
done
grep -q "BEGIN CERTIFICATE" "$WORK/ca.pem" || die "the capture upstream wrote no CA to /shared/ca.pem"
kctl -n "$NS" create secret generic smtp-capture-ca --from-file=ca.crt="$WORK/ca.pem" \
  --dry-run=client -o yaml | kctl apply -f -

# ---- the chart ----------------------------------------------------------------------------
step "install the chart (two tenants)"
helm --kube-context "$CONTEXT" upgrade --install "$RELEASE" "$ROOT/helm/smtpbind" \
  --namespace "$NS" -f "$HERE/values.yaml" --wait --timeout 5m
for t in acme globex; do
  check "$t: the tenant's pod is ready (lock-down ran, smtpbind passed its startup and readiness probes)" \
    kctl -n "$NS" rollout status "deploy/$RELEASE-smtpbind-$t" --timeout=180s
done

# ---- assertions ---------------------------------------------------------------------------
step "send mail"
password_of() { kctl -n "$NS" get secret "$1-smtp" -o jsonpath='{.data.password}' | base64 -d; }
# probe_in TENANT ARGS...: tests/e2e/smtp_probe.py in the tenant's mailer container (UID 1000)
probe_in() {
  local t=$1
  shift
  kctl -n "$NS" exec -i "deploy/$RELEASE-smtpbind-$t" -c mailer -- python3 - "$@" <"$PROBE"
}
# capture_log ACCOUNT RCPT MAIL_FROM: "hit" when the capture logged this message under ACCOUNT
capture_log() {
  kctl -n "$NS" exec -i deploy/smtp-capture -c inspector -- python3 - "$@" <<'EOF'
import json, sys
account, rcpt, mail_from = sys.argv[1:4]
try:
    lines = [json.loads(l) for l in open(f"/shared/{account}.jsonl") if l.strip()]
except FileNotFoundError:
    lines = []
hits = [l for l in lines if rcpt in l.get("rcpt_to", [])]
ok = len(hits) == 1 and hits[0].get("account") == account and hits[0].get("username") == "apikey" \
    and hits[0].get("mail_from") == mail_from and hits[0].get("tls") is True
print("hit" if ok else ("absent" if not hits else "wrong"))
EOF
}
code_of() { sed -n 's/.*"code": \([0-9]*\).*/\1/p' <<<"$1"; }

declare -A KEY
KEY[acme]=$(password_of acme)
KEY[globex]=$(password_of globex)
for t in acme globex; do
  other=acme
  [ "$t" = acme ] && other=globex
  rcpt="kind-$t-$RANDOM$RANDOM@inbox.example"
  r=$(probe_in "$t" send --host 127.0.0.1 --port 2525 --user apikey --password "${KEY[$t]}" \
    --mail-from "billing@$t.example" --rcpt-to "$rcpt" --subject "kind $t" || true)
  check "$t: the mailer's message gets 250 through the sidecar ($r)" test "$(code_of "$r")" = 250
  check "$t: the capture logged it under account $t" test "$(capture_log "$t" "$rcpt" "billing@$t.example")" = hit
  check "$t: the capture did not log it under account $other" \
    test "$(capture_log "$other" "$rcpt" "billing@$t.example")" = absent

  r=$(probe_in "$t" connect --host "$UPSTREAM_HOST" --port "$UPSTREAM_PORT" --timeout 5 || true)
  check "$t: the mailer's direct connection to $UPSTREAM_HOST:$UPSTREAM_PORT is refused ($r)" \
    grep -q '"error": "refused"' <<<"$r"

  r=$(probe_in "$t" send --host 127.0.0.1 --port 2525 --user apikey --password "${KEY[$other]}" \
    --mail-from "billing@$t.example" --rcpt-to "cross-$t@inbox.example" || true)
  check "$t: $other's key presented to $t's sidecar gets 535 ($r)" test "$(code_of "$r")" = 535

  metrics=$(kctl get --raw "/api/v1/namespaces/$NS/services/$RELEASE-smtpbind-$t-metrics:metrics/proxy/metrics" || true)
  check "$t: the metrics Service serves smtpbind metrics for tenant $t" \
    grep -q "^smtpbind_.*tenant=\"$t\"" <<<"$metrics"
done

# ---- the admission webhook ------------------------------------------------------------------
step "install the admission webhook and label an application namespace"
APPS=smtpbind-e2e-apps
kctl apply -f "$HERE/webhook/namespace.yaml"
# tenant acme's Secret (with the capture's CA as ca.crt: the platform writes both) and
# policy in the application namespace
kctl -n "$NS" get secret acme-smtp -o jsonpath='{.data.password}' | base64 -d >"$WORK/acme-password"
kctl -n "$APPS" create secret generic acme-smtp --type=kubernetes.io/basic-auth \
  --from-literal=username=apikey --from-file=password="$WORK/acme-password" --from-file=ca.crt="$WORK/ca.pem" \
  --dry-run=client -o yaml | kctl apply -f -
rm -f "$WORK/acme-password"
# (the policy ConfigMap acme-smtpbind is the chart's: webhook tenants' policies are rendered)
# release "smtpbind": its objects are named smtpbind-webhook
helm --kube-context "$CONTEXT" upgrade --install smtpbind "$ROOT/helm/smtpbind" \
  --namespace smtpbind-webhook --create-namespace -f "$HERE/webhook/values.yaml" --wait --timeout 5m
check "webhook: both replicas are ready" \
  kctl -n smtpbind-webhook rollout status deploy/smtpbind-webhook --timeout=180s

step "a mailer from another chart, annotated smtpbind.dev/inject"
helm --kube-context "$CONTEXT" upgrade --install legacy-mailer "$HERE/mailer-chart" --namespace "$APPS" \
  --set-string 'podAnnotations.smtpbind\.dev/inject=true' --set-string 'podLabels.smtpbind\.dev/mailer=true' \
  --wait --timeout 5m
check "webhook: the mailer's pod is ready (lock-down ran, the injected sidecar passed its probes)" \
  kctl -n "$APPS" rollout status deploy/legacy-mailer --timeout=180s
pod=$(kctl -n "$APPS" get pods -l app.kubernetes.io/name=legacy-mailer -o jsonpath='{.items[0].metadata.name}')
inits=$(kctl -n "$APPS" get pod "$pod" -o jsonpath='{range .spec.initContainers[*]}{.name} {end}')
check "webhook: the pod was injected: lock-down first, then the sidecar ($inits)" \
  test "$inits" = "smtpbind-egress-lockdown smtpbind "
check "webhook: the pod is annotated smtpbind.dev/status=injected" \
  test "$(kctl -n "$APPS" get pod "$pod" -o jsonpath='{.metadata.annotations.smtpbind\.dev/status}')" = injected
rcpt="kind-injected-$RANDOM$RANDOM@inbox.example"
# shellcheck disable=SC2016 # expanded by the container's shell: the environment the webhook gave it
r=$(kctl -n "$APPS" exec -i deploy/legacy-mailer -c mailer -- \
  sh -c 'python3 - send --host "$SMTP_HOST" --port "$SMTP_PORT" --mail-from "$0" --rcpt-to "$1" --subject "kind webhook"' \
  "orders@acme.example" "$rcpt" <"$PROBE" || true)
check "webhook: the mailer sends to \$SMTP_HOST:\$SMTP_PORT and gets 250 ($r)" test "$(code_of "$r")" = 250
check "webhook: the capture logged it under account acme" test "$(capture_log acme "$rcpt" "orders@acme.example")" = hit
r=$(kctl -n "$APPS" exec -i deploy/legacy-mailer -c mailer -- \
  python3 - connect --host "$UPSTREAM_HOST" --port "$UPSTREAM_PORT" --timeout 5 <"$PROBE" || true)
check "webhook: the injected lock-down refuses the mailer's direct connection ($r)" grep -q '"error": "refused"' <<<"$r"
pin=$(kctl -n "$APPS" get pod "$pod" -o jsonpath='{.spec.initContainers[1].env[?(@.name=="SMTPBIND_UPSTREAM_PIN")].value}')
check "webhook: the injected sidecar is pinned to acme's upstream ($pin)" test "$pin" = "$UPSTREAM_HOST:$UPSTREAM_PORT"
ports=$(kctl -n "$APPS" get pod "$pod" -o jsonpath='{.spec.initContainers[0].env[?(@.name=="SMTPBIND_LOCKDOWN_PORTS")].value}')
check "webhook: the injected lock-down covers acme's ports ($ports)" test "$ports" = "25,465,587,2525"

step "rule 6: no exec into the sidecar; rule 5: /mutate hardens a container that sets nothing"
out=$(kctl -n "$APPS" exec "$pod" -c smtpbind -- true 2>&1 || true)
check "webhook: exec into the sidecar is refused, rule 6 ($out)" grep -q "smtpbind rule 6" <<<"$out"
out=$(kctl -n "$APPS" run bare-app --image="$MAILER_IMAGE" --annotations=smtpbind.dev/inject=true \
  --dry-run=server -o jsonpath='{.spec.containers[0].securityContext}' -- sleep 60 2>&1 || true)
check "webhook: /mutate drops NET_RAW, SETUID, SETGID and disallows escalation in a container that set none ($out)" \
  "$PY_LOCAL" -c 'import json, sys; sc = json.loads(sys.argv[1]); d = set(sc["capabilities"]["drop"]); sys.exit(0 if {"NET_RAW", "SETUID", "SETGID"} <= d and sc["allowPrivilegeEscalation"] is False else 1)' "$out"

step "rule 7: the tenant edits its policy to send the key elsewhere"
# readyz_in_pod: the injected sidecar's /readyz seen from the mailer (same pod, loopback)
readyz_in_pod() {
  kctl -n "$APPS" exec -i deploy/legacy-mailer -c mailer -- python3 -c '
import urllib.error, urllib.request
try:
    r = urllib.request.urlopen("http://127.0.0.1:9525/readyz", timeout=3); print(r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())' 2>&1 || true
}
sed "s/^  address: .*/  address: $UPSTREAM_HOST:2526/" "$HERE/webhook/acme-policy.yaml" >"$WORK/acme-policy-redirected.yaml"
kctl -n "$APPS" create configmap acme-smtpbind --from-file=policy.yaml="$WORK/acme-policy-redirected.yaml" \
  --dry-run=client -o yaml | kctl apply -f -
# the kubelet updates a ConfigMap volume within its sync period (about a minute)
for _ in $(seq 90); do grep -q "^503 .*upstream pin" <<<"$(readyz_in_pod)" && break; sleep 2; done
r=$(readyz_in_pod)
check "rule 7: the sidecar is not ready while its policy names another upstream ($r)" grep -q "^503 .*upstream.address" <<<"$r"
# shellcheck disable=SC2016 # expanded by the container's shell
r=$(kctl -n "$APPS" exec -i deploy/legacy-mailer -c mailer -- \
  sh -c 'python3 - send --host "$SMTP_HOST" --port "$SMTP_PORT" --mail-from "$0" --rcpt-to "$1"' \
  "orders@acme.example" "redirected-$RANDOM@inbox.example" <"$PROBE" || true)
check "rule 7: meanwhile a new session gets 421 ($r)" test "$(code_of "$r")" = 421
kctl -n "$APPS" create configmap acme-smtpbind --from-file=policy.yaml="$HERE/webhook/acme-policy.yaml" \
  --dry-run=client -o yaml | kctl apply -f -
for _ in $(seq 90); do grep -q "^200" <<<"$(readyz_in_pod)" && break; sleep 2; done
r=$(readyz_in_pod)
check "rule 7: the policy put back, the sidecar is ready again without a restart ($r)" grep -q "^200" <<<"$r"

step "a pod mounting another tenant's Secret is refused"
cat >"$WORK/stolen.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: stolen-credential
  namespace: $APPS
spec:
  containers:
    - name: mailer
      image: $MAILER_IMAGE
      command: ["sleep", "60"]
      volumeMounts:
        - name: creds
          mountPath: /creds
  volumes:
    - name: creds
      secret:
        secretName: globex-smtp
EOF
out=$(kctl apply --dry-run=server -f "$WORK/stolen.yaml" 2>&1 || true)
check "webhook: refused by /validate, rule 2 ($out)" grep -q "smtpbind rule 2" <<<"$out"
out=$(kctl -n "$APPS" run bare-mailer --image="$MAILER_IMAGE" --labels=smtpbind.dev/mailer=true \
  --dry-run=server -o name -- sleep 60 2>&1 || true)
check "webhook: a mailer-labelled pod without the sidecar is refused, rule 1 ($out)" grep -q "smtpbind rule 1" <<<"$out"

say ""
say "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
