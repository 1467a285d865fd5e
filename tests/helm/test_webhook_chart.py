"""The admission webhook in the chart (webhook.enabled) and its one source of
truth with the named templates. Run through tests/helm/run.sh.

- the chart renders the webhook (Deployment of 2, PDB, Service, the two
  webhook configurations, the certificate by cert-manager or a CA generated
  at render) and every object validates --strict against 1.29 and 1.31;
- src/webhook/injected.json is what the chart's named templates render today;
- the sidecar the webhook injects (tests/webhook/golden, written by the real
  webhook) is the one the chart renders;
- every golden patch applies with Python's jsonpatch and the patched pod
  validates --strict against 1.29 and 1.31;
- the rendered webhook configuration passes `smtpbind check`;
- the admin-port ingress option of the NetworkPolicy.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import jsonpatch
import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_injected  # noqa: E402
from test_chart import (CHART, HERE, K8S_VERSIONS, ROOT, make_ca, of_kind, objects_of,  # noqa: E402
                        render_chart, require_bin)

GOLDEN = ROOT / "tests" / "webhook" / "golden"
VALUES = yaml.safe_load((HERE / "webhook-values.yaml").read_text())
NAMESPACE = "smtpbind-system"


def render(values: dict[str, Any] | None = None, version: str | None = None) -> list[dict[str, Any]]:
    return objects_of(render_chart(CHART, copy.deepcopy(values or VALUES), "smtpbind", NAMESPACE,
                                   kube_version=f"v{version}" if version else None))


def one(objs: list[dict[str, Any]], kind: str, component: str = "webhook") -> dict[str, Any]:
    found = [o for o in of_kind(objs, kind)
             if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"{len(found)} {kind} of component {component}"
    return found[0]


def check_cert_manager(obj: dict[str, Any]) -> list[str]:
    """kubernetes-validate has no cert-manager schemas: the fields the webhook relies on."""
    if obj["kind"] == "Issuer":
        return [] if obj["spec"] == {"selfSigned": {}} else ["Issuer: expected selfSigned"]
    spec = obj["spec"]
    errors = []
    if set(spec) - {"secretName", "duration", "renewBefore", "dnsNames", "issuerRef", "privateKey"}:
        errors.append(f"Certificate: unknown spec fields {set(spec)}")
    if not spec.get("dnsNames") or not spec.get("secretName"):
        errors.append("Certificate: needs dnsNames and secretName")
    return errors


def validate_strict(objs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for obj in objs:
        if obj["apiVersion"].startswith("cert-manager.io/"):
            errors += check_cert_manager(obj)
            continue
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata'].get('name')}: "
                          f"{'.'.join(str(p) for p in exc.path)}: {exc.message}")
    return errors


# ---- the chart renders the webhook -----------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("cert_manager", [True, False])
def test_webhook_objects_validate_strict(version: str, cert_manager: bool) -> None:
    values = copy.deepcopy(VALUES)
    values["webhook"]["certManager"]["enabled"] = cert_manager
    objs = render(values, version)
    assert validate_strict(objs, version) == []
    report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{version}", namespace=NAMESPACE) \
        if "namespace" in helm_python.lint.__code__.co_varnames else \
        helm_python.lint(CHART, values, strict=True, kube_version=f"v{version}")
    assert report["errors"] == [], json.dumps(report, indent=2)


def test_webhook_deployment_pdb_service() -> None:
    objs = render()
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["args"][:3] == ["webhook", "--config", "/etc/smtpbind/webhook/config.yaml"]
    assert c["image"] == "registry.example/smtpbind:0.1.0"
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["metadata"]["labels"]["smtpbind.dev/webhook"] == "smtpbind-webhook"
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    svc = one(objs, "Service")
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]


def webhooks(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (m,) = one(objs, "MutatingWebhookConfiguration")["webhooks"]
    (v,) = one(objs, "ValidatingWebhookConfiguration")["webhooks"]
    return m, v


def test_webhook_configurations() -> None:
    m, v = webhooks(render())
    for w, path in ((m, "/mutate"), (v, "/validate")):
        assert w["sideEffects"] == "None"
        assert w["admissionReviewVersions"] == ["v1"]
        assert 1 <= w["timeoutSeconds"] <= 30
        assert w["clientConfig"]["service"] == {"name": "smtpbind-webhook", "namespace": NAMESPACE,
                                                "path": path, "port": 443}
        exprs = w["namespaceSelector"]["matchExpressions"]
        # kube-system and the webhook's own namespace never match, by a name no tenant can set
        assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["kube-system", NAMESPACE]} in exprs
        assert {"key": "kubernetes.io/metadata.name", "operator": "In",
                "values": ["shared", "shop-acme", "shop-beta"]} in exprs
        assert all(e["key"] == "kubernetes.io/metadata.name" for e in exprs)
    assert m["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"], "scope": "Namespaced"}]
    assert m["reinvocationPolicy"] == "Never"
    assert m["objectSelector"] == {"matchExpressions": [{"key": "smtpbind.dev/webhook", "operator": "DoesNotExist"}]}
    assert v["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert "pods/ephemeralcontainers" in v["rules"][0]["resources"]
    assert "objectSelector" not in v  # a label any tenant could set must not skip validation
    assert (m["failurePolicy"], v["failurePolicy"]) == ("Ignore", "Fail")
    values = copy.deepcopy(VALUES)
    values["webhook"]["failurePolicy"] = {"mutate": "Fail", "validate": "Ignore"}
    m, v = webhooks(render(values))
    assert (m["failurePolicy"], v["failurePolicy"]) == ("Fail", "Ignore")


def test_cert_manager_certificate() -> None:
    objs = render()
    (cert,) = of_kind(objs, "Certificate")
    assert cert["spec"]["secretName"] == "smtpbind-webhook-tls"
    assert f"smtpbind-webhook.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    (issuer,) = of_kind(objs, "Issuer")
    assert cert["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        obj = one(objs, kind)
        assert obj["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/smtpbind-webhook"
        assert "caBundle" not in obj["webhooks"][0]["clientConfig"]
    assert of_kind(objs, "Secret") == []


def test_generated_ca_signs_the_serving_certificate(tmp_path: Path) -> None:
    values = copy.deepcopy(VALUES)
    values["webhook"]["certManager"]["enabled"] = False
    objs = render(values)
    (secret,) = of_kind(objs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    m, v = webhooks(objs)
    assert m["clientConfig"]["caBundle"] == v["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(m["clientConfig"]["caBundle"]))
    (tmp_path / "tls.crt").write_bytes(data["tls.crt"])
    out = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), "-verify_hostname",
                          f"smtpbind-webhook.{NAMESPACE}.svc", str(tmp_path / "tls.crt")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert b"PRIVATE KEY" in data["tls.key"]
    # the webhook serves the rendered pair, and a client with the caBundle trusts it under the Service's name
    binary = require_bin()
    (tmp_path / "tls").mkdir()
    for key in ("tls.crt", "tls.key"):
        (tmp_path / "tls" / key).write_bytes(data[key])
    (tmp_path / "config.yaml").write_text(one(objs, "ConfigMap")["data"]["config.yaml"])
    proc = subprocess.Popen([str(binary), "webhook", "--config", str(tmp_path / "config.yaml"), "--listen",
                             "127.0.0.1:0", "--tls-dir", str(tmp_path / "tls")], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        port = json.loads(line)["webhook"].rsplit(":", 1)[1]
        host = f"smtpbind-webhook.{NAMESPACE}.svc"
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(tmp_path / "ca.crt"),
                              "--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/readyz"],
                             capture_output=True, text=True)
        assert out.stdout == "ready\n", out.stdout + out.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_webhook_requires_tenants_and_never_its_own_namespace() -> None:
    values = copy.deepcopy(VALUES)
    values["webhook"]["tenants"] = []
    with pytest.raises(helm_python.HelmError, match="needs webhook.tenants"):
        render(values)
    values = copy.deepcopy(VALUES)
    values["webhook"]["tenants"][0]["namespaces"].append(NAMESPACE)
    with pytest.raises(helm_python.HelmError, match="release namespace"):
        render(values)
    for bad in ({"failurePolicy": {"mutate": "Fail", "validate": "Maybe"}}, {"timeoutSeconds": 31},
                {"tenantz": []}):
        values = copy.deepcopy(VALUES)
        values["webhook"].update(bad)
        with pytest.raises(helm_python.HelmValuesError):
            render(values)
    values = copy.deepcopy(VALUES)
    values["webhook"]["tenants"][0]["namespaces"] = ["kube-system"]
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def test_rendered_webhook_config_passes_smtpbind_check(tmp_path: Path) -> None:
    binary = require_bin()
    cm = one(render(), "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    out = subprocess.run([str(binary), "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "webhook configuration, tenants acme, beta" in out.stdout
    # the golden tests' configuration is the one the chart renders from webhook-values.yaml
    golden = yaml.safe_load((ROOT / "tests" / "webhook" / "config.yaml").read_text())
    assert yaml.safe_load(cm["data"]["config.yaml"]) == {**golden, "sidecar": {
        **golden["sidecar"], "image_pull_policy": "IfNotPresent"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(cm["data"]["config.yaml"].replace("credential_secret:", "credential_secrt:", 1))
    out = subprocess.run([str(binary), "check", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{bad}:" in out.stderr and "tenants[0].credential_secrt: unknown field" in out.stderr


# ---- one source of truth ----------------------------------------------------------------------

def test_injected_json_is_what_the_chart_renders() -> None:
    current = (ROOT / "src" / "webhook" / "injected.json").read_text()
    assert current == gen_injected.text(), "run: python3 tests/helm/gen_injected.py"


def golden(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    request = json.loads((GOLDEN / f"{name}.request.json").read_text())
    response = json.loads((GOLDEN / f"{name}.response.json").read_text())
    return request, response


def patched_pods() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(GOLDEN.glob("mutate-*.response.json")):
        name = path.name.removesuffix(".response.json")
        response = json.loads(path.read_text())
        patch = response.get("review", {}).get("response", {}).get("patch")
        if patch is None:
            continue
        request, _ = golden(name)
        pod = jsonpatch.JsonPatch(patch).apply(request["request"]["object"])
        out.append((name, pod))
    assert len(out) >= 3
    return out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_patched_pods_validate_strict(version: str) -> None:
    for name, pod in patched_pods():
        try:
            kubernetes_validate.validate(pod, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")


def test_webhook_injects_the_sidecar_the_chart_renders() -> None:
    """The chart's tenant pod (webhook-values.yaml, same images and Secret as
    tests/webhook/config.yaml) and the pod the webhook patched carry the same
    lock-down, sidecar and volumes; only the policy ConfigMap's name differs
    (the chart names its own)."""
    deploy = next(d for d in of_kind(render(), "Deployment")
                  if d["metadata"]["labels"].get("app.kubernetes.io/component") == "tenant")
    chart_spec = deploy["spec"]["template"]["spec"]
    _, pod = next(p for p in patched_pods() if p[0] == "mutate-inject")
    assert pod["spec"]["initContainers"][:2] == chart_spec["initContainers"]
    chart_volumes = {v["name"]: v for v in chart_spec["volumes"]}
    for v in pod["spec"]["volumes"]:
        if v["name"].startswith("smtpbind-"):
            want = copy.deepcopy(chart_volumes[v["name"]])
            if "configMap" in want:
                want["configMap"]["name"] = "acme-smtpbind"
            assert v == want
    mailer = next(c for c in chart_spec["containers"] if c["name"] == "mailer")
    injected_env = [e for e in pod["spec"]["containers"][0]["env"] if e["name"].startswith("SMTP_")]
    assert injected_env == [e for e in mailer["env"] if e["name"].startswith("SMTP_")]


# ---- the admin port ---------------------------------------------------------------------------

def test_admin_port_ingress() -> None:
    objs = render()
    (np,) = of_kind(objs, "NetworkPolicy")
    spec = np["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    admin, extra = spec["ingress"]
    assert admin["ports"] == [{"protocol": "TCP", "port": 9525}]
    assert admin["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
                             {"ipBlock": {"cidr": "10.0.0.0/16"}}]
    assert extra == {"ports": [{"protocol": "TCP", "port": 8080}]}
    values = copy.deepcopy(VALUES)
    values["networkPolicy"]["adminIngress"] = {"enabled": True, "fromNamespaces": [], "fromCIDRs": []}
    (np,) = of_kind(render(values), "NetworkPolicy")
    assert np["spec"]["ingress"][0]["from"] == []
    values["networkPolicy"]["adminIngress"]["enabled"] = False
    (np,) = of_kind(render(values), "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Egress"] and "ingress" not in np["spec"]
    for bad in ({"fromCIDRs": ["10.0.0.0"]}, {"fromNamespaces": ["Monitoring"]}, {"from": []}):
        values = copy.deepcopy(VALUES)
        values["networkPolicy"]["adminIngress"].update(bad)
        with pytest.raises(helm_python.HelmValuesError):
            render(values)


# ---- the kind harness's webhook step (tests/kind/run.sh; no cluster here) ---------------------

KIND = ROOT / "tests" / "kind"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kind_webhook_manifests_validate_strict(version: str) -> None:
    values = yaml.safe_load((KIND / "webhook" / "values.yaml").read_text())
    objs = objects_of(render_chart(CHART, values, "smtpbind", "smtpbind-webhook",  # as tests/kind/run.sh
                                   kube_version=f"v{version}"))
    kinds = sorted(o["kind"] for o in objs)
    # no chart-managed tenant: the webhook's config and its two tenants' policies
    assert kinds == ["ConfigMap", "ConfigMap", "ConfigMap", "Deployment", "MutatingWebhookConfiguration",
                     "PodDisruptionBudget", "Secret", "Service", "ValidatingWebhookConfiguration"], kinds
    m, _ = webhooks(objs)
    # the names tests/kind/run.sh waits for and reads logs of
    assert one(objs, "Deployment")["metadata"]["name"] == "smtpbind-webhook"
    assert m["namespaceSelector"]["matchLabels"] == {"smtpbind.dev/guarded": "true"}
    namespace = yaml.safe_load((KIND / "webhook" / "namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["smtpbind.dev/guarded"] == "true"
    assert namespace["metadata"]["name"] in m["namespaceSelector"]["matchExpressions"][1]["values"]
    mailer = objects_of(render_chart(KIND / "mailer-chart", {"podAnnotations": {"smtpbind.dev/inject": "true"}},
                                     "legacy-mailer", namespace["metadata"]["name"], kube_version=f"v{version}"))
    (deploy,) = mailer
    assert deploy["spec"]["template"]["metadata"]["annotations"] == {"smtpbind.dev/inject": "true"}
    assert validate_strict(objs + mailer + [namespace], version) == []
    # the chart renders acme's policy where the injected sidecar mounts it, as
    # webhook/acme-policy.yaml (run.sh's base for the tenant's rule-7 edit) says
    (cm,) = [o for o in of_kind(objs, "ConfigMap") if o["metadata"].get("namespace") == namespace["metadata"]["name"]]
    assert cm["metadata"]["name"] == "acme-smtpbind"
    rendered_policy = yaml.safe_load(cm["data"]["policy.yaml"])
    base = yaml.safe_load((KIND / "webhook" / "acme-policy.yaml").read_text())
    for key in ("tenant", "senders"):
        assert rendered_policy[key] == base[key], key
    for section, key in (("upstream", "address"), ("upstream", "tls"), ("upstream", "ca_file"),
                         ("credential", "secret_dir"), ("credential", "pins"), ("client", "auth")):
        assert rendered_policy[section][key] == base[section][key], (section, key)


def test_kind_webhook_policy_passes_smtpbind_check(tmp_path: Path) -> None:
    binary = require_bin()
    # the CA the harness puts next to the policy: a stand-in here
    make_ca(tmp_path / "ca.pem")
    text = (KIND / "webhook" / "acme-policy.yaml").read_text()
    # rule 7: the CA comes with the credential Secret (ca.crt), never from the tenant's ConfigMap
    assert "ca_file: /var/run/secrets/smtpbind/ca.crt" in text
    (tmp_path / "policy.yaml").write_text(text.replace("/var/run/secrets/smtpbind/ca.crt", str(tmp_path / "ca.pem")))
    out = subprocess.run([str(binary), "check", str(tmp_path / "policy.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # the pin is the kind harness's acme Secret's password
    secrets = [d for d in yaml.safe_load_all((KIND / "tenant-secrets.yaml").read_text()) if d]
    password = next(s for s in secrets if s["metadata"]["name"] == "acme-smtp")["stringData"]["password"]
    policy = yaml.safe_load((KIND / "webhook" / "acme-policy.yaml").read_text())
    assert policy["credential"]["pins"] == ["sha256:" + hashlib.sha256(password.encode()).hexdigest()]
