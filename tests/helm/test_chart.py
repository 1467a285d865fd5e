"""The smtpbind Helm chart, rendered with the real Helm library (helm-python-sdk,
Helm v4 as a native library) and checked as Kubernetes would see it.

Run through tests/helm/run.sh, which installs what this needs.

- every value set below renders, lints without errors (Kubernetes 1.29 and 1.31)
  and every rendered object validates with kubernetes-validate --strict
  against Kubernetes 1.29 and 1.31;
- the pod shape: native sidecar, probes, hardened securityContext, the mailer's
  environment, per-tenant Secret/ConfigMap mounts, grace period > drain;
- tenant isolation: nothing of one tenant in another tenant's objects;
- the values schema is strict at every object level, and the chart refuses
  unsafe combinations;
- every rendered policy passes `smtpbind check`;
- the embedding example (tests/helm/embed-example) renders from a parent chart;
- the kind harness's manifests (tests/kind) validate and agree with each other;
- the shell scripts pass bash -n / sh -n and shellcheck.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART = ROOT / "helm" / "smtpbind"
KIND = ROOT / "tests" / "kind"
EMBED = HERE / "embed-example"
K8S_VERSIONS = ["1.29.0", "1.31.0"]

UID = 65532
SMTP_PORT = 2525
ADMIN_PORT = 9525
POLICY_DIR = "/etc/smtpbind/policy"
SECRET_DIR = "/var/run/secrets/smtpbind"
CA_DIR = "/etc/smtpbind/upstream-ca"
TENANT_LABEL = "smtpbind/tenant"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def smtpbind_bin() -> Path:
    env = os.environ.get("SMTPBIND_BIN")
    if env:
        return Path(env)
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
        return Path(top) / "target" / "debug" / "smtpbind"
    except (OSError, subprocess.CalledProcessError):
        return ROOT / "target" / "debug" / "smtpbind"


# ---- the value sets -----------------------------------------------------------------

def _native_off() -> dict[str, Any]:
    values = load_yaml(HERE / "two-tenants.yaml")
    values["nativeSidecar"] = False
    values["egressLockdown"]["enabled"] = False
    values["metrics"] = {"service": {"enabled": False}, "podMonitor": {"enabled": False}}
    values["networkPolicy"] = {"enabled": False}
    return values


CASES: dict[str, dict[str, Any] | None] = {
    "default": None,
    "two-tenants": load_yaml(HERE / "two-tenants.yaml"),
    "two-tenants-native-off": _native_off(),
    "kind": load_yaml(KIND / "values.yaml"),
    "identities": load_yaml(HERE / "identities.yaml"),
    "client-tls": load_yaml(HERE / "client-tls.yaml"),
}
RELEASE = {"default": "smtpbind", "two-tenants": "mail", "two-tenants-native-off": "mail", "kind": "e2e",
           "identities": "mail", "client-tls": "mail"}
NAMESPACE = {"kind": "smtpbind-e2e"}


def render_chart(chart: Path, values: dict[str, Any] | None, name: str = "rel",
                 namespace: str = "default", kube_version: str | None = None) -> dict[str, str]:
    with helm_python.Chart.load(chart) as loaded:
        if kube_version is None:
            return loaded.render(values=values, name=name, namespace=namespace)
        # helm-python-sdk 0.2.2's Chart.render() does not pass the native library's
        # `kube_version` render option (.Capabilities.KubeVersion) through; call it directly.
        from helm_python import _native
        opts = {"name": name, "namespace": namespace, "kube_version": kube_version}
        return json.loads(_native.call_string(
            "helm_render", loaded._raw(), None if values is None else json.dumps(values), json.dumps(opts)))


def objects_of(rendered: dict[str, str]) -> list[dict[str, Any]]:
    objs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objs.append(doc)
    return objs


_RENDER_CACHE: dict[str, list[dict[str, Any]]] = {}


def rendered(case: str) -> list[dict[str, Any]]:
    if case not in _RENDER_CACHE:
        _RENDER_CACHE[case] = objects_of(
            render_chart(CHART, copy.deepcopy(CASES[case]), RELEASE[case], NAMESPACE.get(case, "default"))
        )
    return _RENDER_CACHE[case]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def tenants_of(case: str) -> list[dict[str, Any]]:
    values = CASES[case]
    if values is None:
        with helm_python.Chart.load(CHART) as loaded:
            return loaded.values["tenants"]
    return values["tenants"]


def merged_values(case: str) -> dict[str, Any]:
    with helm_python.Chart.load(CHART) as loaded:
        return loaded.merge_values(copy.deepcopy(CASES[case]))


def pod_spec(deploy: dict[str, Any]) -> dict[str, Any]:
    return deploy["spec"]["template"]["spec"]


def container(spec: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    for where in ("initContainers", "containers"):
        for c in spec.get(where) or []:
            if c["name"] == name:
                return where, c
    raise AssertionError(f"no container {name!r} in pod spec")


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def policy_of(objs: list[dict[str, Any]], tenant: str) -> tuple[dict[str, Any], str]:
    cms = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["labels"].get(TENANT_LABEL) == tenant]
    assert len(cms) == 1, f"expected one policy ConfigMap for {tenant}, got {len(cms)}"
    text = cms[0]["data"]["policy.yaml"]
    return yaml.safe_load(text), text


def duration_seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    assert m, f"bad duration {text!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


# ---- render + lint ----------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_renders(case: str) -> None:
    objs = rendered(case)
    deployments = of_kind(objs, "Deployment")
    assert len(deployments) == len(tenants_of(case)) >= 1
    assert len(of_kind(objs, "ConfigMap")) == len(tenants_of(case))


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_lint_has_no_errors(case: str, version: str) -> None:
    report = helm_python.lint(CHART, copy.deepcopy(CASES[case]), strict=True, kube_version=f"v{version}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], json.dumps(report, indent=2)
    assert report["total_charts_linted"] == 1


def test_chart_metadata_matches_images() -> None:
    meta = load_yaml(CHART / "Chart.yaml")
    values = load_yaml(CHART / "values.yaml")
    assert meta["apiVersion"] == "v2"
    assert values["image"]["tag"] == meta["appVersion"]
    assert values["egressLockdown"]["image"]["tag"] == meta["appVersion"]
    assert values["nativeSidecar"] is True
    assert values["egressLockdown"]["enabled"] is False
    assert values["metrics"]["podMonitor"]["enabled"] is False
    assert values["networkPolicy"]["enabled"] is False


# ---- kubernetes-validate --strict -------------------------------------------------------------

def validate_objects(objs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata'].get('name')}"
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            errors += check_podmonitor(obj)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message}")
    return errors


def check_podmonitor(obj: dict[str, Any]) -> list[str]:
    """kubernetes-validate has no schema for prometheus-operator CRDs: check the
    fields the operator needs, and nothing unknown, by hand."""
    errors = []
    if obj["kind"] != "PodMonitor":
        errors.append(f"unexpected kind {obj['kind']}")
    spec = obj.get("spec", {})
    if set(obj) - {"apiVersion", "kind", "metadata", "spec"}:
        errors.append("PodMonitor: unknown top-level fields")
    if set(spec) - {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}:
        errors.append(f"PodMonitor: unknown spec fields {set(spec)}")
    if not (spec.get("selector", {}).get("matchLabels") or spec.get("selector", {}).get("matchExpressions")):
        errors.append("PodMonitor: no selector")
    for ep in spec.get("podMetricsEndpoints", []):
        if set(ep) - {"port", "path", "interval", "scrapeTimeout"}:
            errors.append(f"PodMonitor: unknown endpoint fields {set(ep)}")
        if ep.get("port") != "metrics" or ep.get("path") != "/metrics":
            errors.append("PodMonitor: endpoint must scrape port `metrics` at /metrics")
    if not spec.get("podMetricsEndpoints"):
        errors.append("PodMonitor: no podMetricsEndpoints")
    return errors


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_manifests_validate_strict(case: str, version: str) -> None:
    # rendered for that version (.Capabilities.KubeVersion), validated against it
    objs = objects_of(render_chart(CHART, copy.deepcopy(CASES[case]), RELEASE[case], NAMESPACE.get(case, "default"),
                                   kube_version=f"v{version}"))
    assert objs == rendered(case)  # nothing in the chart depends on the version from 1.29 on
    errors = validate_objects(objs, version)
    assert errors == [], "\n".join(errors)


def test_native_sidecar_needs_1_29() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="nativeSidecar needs Kubernetes 1.29"):
        render_chart(CHART, None, kube_version="v1.28.0")
    objs = objects_of(render_chart(CHART, {"nativeSidecar": False}, kube_version="v1.28.0"))
    where, _ = container(pod_spec(of_kind(objs, "Deployment")[0]), "smtpbind")
    assert where == "containers"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_validate_cli_strict(tmp_path: Path, version: str) -> None:
    """The CLI as a user would run it, on every file a case renders and every kind manifest."""
    files = []
    for case in CASES:
        out = tmp_path / f"{case}.yaml"
        out.write_text(yaml.safe_dump_all(rendered(case), sort_keys=False))
        files.append(str(out))
    files += [str(p) for p in sorted(KIND.glob("*.yaml")) if p.name != "values.yaml"]
    cli = shutil.which("kubernetes-validate") or "kubernetes-validate"
    proc = subprocess.run(
        [cli, "--strict", "--kubernetes-version", version, *files], capture_output=True, text=True
    )
    lines = proc.stdout.splitlines()
    bad = [l for l in lines if l.startswith(("ERROR", "FATAL"))]
    warn = [l for l in lines if l.startswith("WARN") and "PodMonitor" not in l]
    assert proc.returncode == 0 and not bad and not warn, proc.stdout + proc.stderr
    assert sum(l.startswith("INFO") for l in lines) >= 10


# ---- pod shape ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_sidecar_placement(case: str) -> None:
    native = merged_values(case)["nativeSidecar"]
    for deploy in of_kind(rendered(case), "Deployment"):
        spec = pod_spec(deploy)
        where, sb = container(spec, "smtpbind")
        if native:
            assert where == "initContainers" and sb.get("restartPolicy") == "Always"
            assert [c["name"] for c in spec["containers"]] == ["mailer"]
            # the lock-down (when on) runs first, before smtpbind and the mailer
            assert spec["initContainers"][-1]["name"] == "smtpbind"
        else:
            assert where == "containers" and "restartPolicy" not in sb
            assert all(c["name"] != "smtpbind" for c in spec.get("initContainers") or [])
        assert sb["args"] == ["run", "--policy", f"{POLICY_DIR}/policy.yaml"]


@pytest.mark.parametrize("case", CASES)
def test_probes(case: str) -> None:
    for deploy in of_kind(rendered(case), "Deployment"):
        _, sb = container(pod_spec(deploy), "smtpbind")
        ports = {p["name"]: p["containerPort"] for p in sb["ports"]}
        assert ports == {"metrics": ADMIN_PORT}
        for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = sb[probe]["httpGet"]
            assert get["path"] == path, probe
            assert ports.get(get["port"], get["port"]) == ADMIN_PORT, probe


HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": UID,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}


@pytest.mark.parametrize("case", CASES)
def test_hardened_security_context(case: str) -> None:
    for deploy in of_kind(rendered(case), "Deployment"):
        _, sb = container(pod_spec(deploy), "smtpbind")
        sc = sb["securityContext"]
        for key, want in HARDENED.items():
            assert sc.get(key) == want, key
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc.get("privileged") in (None, False)
        res = sb["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
        assert res["limits"]["memory"] in ("48Mi", "64Mi", "128Mi", "256Mi")


@pytest.mark.parametrize("case", CASES)
def test_only_the_lockdown_container_gets_net_admin(case: str) -> None:
    lockdown = merged_values(case)["egressLockdown"]["enabled"]
    for deploy in of_kind(rendered(case), "Deployment"):
        spec = pod_spec(deploy)
        for c in all_containers(spec):
            added = ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
            if c["name"] == "smtpbind-egress-lockdown":
                assert lockdown
                assert added == ["NET_ADMIN"]
                sc = c["securityContext"]
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert sc["allowPrivilegeEscalation"] is False and sc.get("privileged") is False
                assert sc["readOnlyRootFilesystem"] is True
            else:
                assert added == [], f"{c['name']} adds {added}"
        names = [c["name"] for c in spec.get("initContainers") or []]
        assert ("smtpbind-egress-lockdown" in names) == lockdown
        if lockdown:
            assert names[0] == "smtpbind-egress-lockdown"  # before smtpbind and the mailer
            mailer = container(spec, "mailer")[1]["securityContext"]
            assert mailer["allowPrivilegeEscalation"] is False
            assert {"NET_ADMIN", "NET_RAW", "SETUID", "SETGID"} <= set(mailer["capabilities"]["drop"])
            assert mailer.get("runAsUser") != UID


@pytest.mark.parametrize("case", [c for c in CASES if c != "two-tenants-native-off"])
def test_lockdown_ports_include_the_upstream_port(case: str) -> None:
    objs = rendered(case)
    for deploy in of_kind(objs, "Deployment"):
        spec = pod_spec(deploy)
        names = [c["name"] for c in spec.get("initContainers") or []]
        if "smtpbind-egress-lockdown" not in names:
            continue
        tenant = deploy["metadata"]["labels"][TENANT_LABEL]
        policy, _ = policy_of(objs, tenant)
        up_port = policy["upstream"]["address"].rsplit(":", 1)[1]
        _, lock = container(spec, "smtpbind-egress-lockdown")
        env = {e["name"]: e["value"] for e in lock["env"]}
        assert env["SMTPBIND_UID"] == str(UID)
        ports = env["SMTPBIND_LOCKDOWN_PORTS"].split(",")
        assert {"25", "465", "587", "2525", up_port} <= set(ports)
        assert len(ports) == len(set(ports)) <= 15
        assert lock["command"] == ["/usr/local/bin/smtpbind-egress-lockdown"]


@pytest.mark.parametrize("case", CASES)
def test_mailer_env_and_no_credential(case: str) -> None:
    objs = rendered(case)
    secrets = {t["credentialSecret"] for t in tenants_of(case)}
    for deploy in of_kind(objs, "Deployment"):
        spec = pod_spec(deploy)
        _, mailer = container(spec, "mailer")
        env = {e["name"]: e.get("value") for e in mailer["env"]}
        assert env["SMTP_HOST"] == "127.0.0.1" and env["SMTP_PORT"] == str(SMTP_PORT)
        # the mailer mounts nothing but, with clientTls.caConfigMap, the public pod-local CA
        mounts = [m["name"] for m in mailer.get("volumeMounts") or []]
        assert mounts in ([], ["smtpbind-client-ca"]) and "envFrom" not in mailer
        for e in mailer["env"]:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
            assert ref.get("name") not in secrets
        assert spec["automountServiceAccountToken"] is False
        policy, _ = policy_of(objs, deploy["metadata"]["labels"][TENANT_LABEL])
        assert policy["listen"] == f"127.0.0.1:{SMTP_PORT}"


@pytest.mark.parametrize("case", CASES)
def test_smtpbind_mounts_its_own_secret_and_policy(case: str) -> None:
    objs = rendered(case)
    tenants = {t["name"]: t for t in tenants_of(case)}
    for deploy in of_kind(objs, "Deployment"):
        tenant = deploy["metadata"]["labels"][TENANT_LABEL]
        spec = pod_spec(deploy)
        volumes = {v["name"]: v for v in spec["volumes"]}
        policy, _ = policy_of(objs, tenant)
        cm_name = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["labels"][TENANT_LABEL] == tenant][0][
            "metadata"]["name"]

        # exactly one Secret volume holds a credential, and it is this tenant's
        secret_vols = [v for v in volumes.values() if "secret" in v]
        cred = [v for v in secret_vols if v["secret"]["secretName"] in {t["credentialSecret"] for t in tenants.values()}]
        assert [v["secret"]["secretName"] for v in cred] == [tenants[tenant]["credentialSecret"]]
        assert "items" not in cred[0]["secret"]  # the whole Secret: username and password
        cms = [v for v in volumes.values() if "configMap" in v and v["name"] != "smtpbind-client-ca"]
        assert [v["configMap"]["name"] for v in cms] == [cm_name]

        _, sb = container(spec, "smtpbind")
        mounts = {m["name"]: m for m in sb["volumeMounts"]}
        for m in sb["volumeMounts"]:
            assert "subPath" not in m and "subPathExpr" not in m, m
            assert m["readOnly"] is True, m
        assert mounts[cred[0]["name"]]["mountPath"] == SECRET_DIR == policy["credential"]["secret_dir"]
        assert mounts[cms[0]["name"]]["mountPath"] == POLICY_DIR
        if "ca_file" in policy["upstream"]:
            ca = [m for m in sb["volumeMounts"] if policy["upstream"]["ca_file"].startswith(m["mountPath"] + "/")]
            assert len(ca) == 1 and "secret" in volumes[ca[0]["name"]]

        # no other container mounts the credential or the policy
        for c in all_containers(spec):
            if c["name"] == "smtpbind":
                continue
            names = {m["name"] for m in c.get("volumeMounts") or []}
            assert cred[0]["name"] not in names and cms[0]["name"] not in names, c["name"]


def test_client_tls_pair_only_in_smtpbind_and_the_ca_in_the_mailer() -> None:
    objs = rendered("client-tls")
    (deploy,) = of_kind(objs, "Deployment")
    spec = pod_spec(deploy)
    volumes = {v["name"]: v for v in spec["volumes"]}
    pair = volumes["smtpbind-client-tls"]["secret"]
    assert pair["secretName"] == "acme-smtp-client-tls"
    assert [i["key"] for i in pair["items"]] == ["tls.crt", "tls.key"]
    assert volumes["smtpbind-client-ca"]["configMap"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    policy, _ = policy_of(objs, "acme")
    assert policy["client"]["tls"] == {
        "cert_dir": "/var/run/secrets/smtpbind-client-tls",
        "starttls": "require",
        "implicit_listen": "127.0.0.1:4650",
    }
    _, sb = container(spec, "smtpbind")
    mounts = {m["name"]: m["mountPath"] for m in sb["volumeMounts"]}
    assert mounts["smtpbind-client-tls"] == policy["client"]["tls"]["cert_dir"]
    assert "smtpbind-client-ca" not in mounts
    for c in all_containers(spec):
        names = {m["name"] for m in c.get("volumeMounts") or []}
        if c["name"] != "smtpbind":
            assert "smtpbind-client-tls" not in names, c["name"]
    _, mailer = container(spec, "mailer")
    assert [(m["name"], m["mountPath"], m["readOnly"]) for m in mailer["volumeMounts"]] == [
        ("smtpbind-client-ca", "/etc/smtpbind-ca", True)]
    lockdown = spec["initContainers"][0]
    env = {e["name"]: e.get("value") for e in lockdown["env"]}
    assert env.get("SMTPBIND_REDIRECT") == "1"


@pytest.mark.parametrize("case", CASES)
def test_grace_period_exceeds_drain(case: str) -> None:
    objs = rendered(case)
    for deploy in of_kind(objs, "Deployment"):
        policy, _ = policy_of(objs, deploy["metadata"]["labels"][TENANT_LABEL])
        drain = duration_seconds(policy["shutdown"]["drain"])
        assert pod_spec(deploy)["terminationGracePeriodSeconds"] > drain


def test_drain_is_rendered_from_values() -> None:
    policy, _ = policy_of(rendered("two-tenants"), "acme")
    assert policy["shutdown"]["drain"] == "25s"
    assert pod_spec(of_kind(rendered("two-tenants"), "Deployment")[0])["terminationGracePeriodSeconds"] == 40


# ---- tenant isolation ------------------------------------------------------------------------

@pytest.mark.parametrize("case", [c for c in CASES if len(tenants_of(c)) > 1])
def test_nothing_of_one_tenant_in_another(case: str) -> None:
    objs = rendered(case)
    tenants = tenants_of(case)
    for t in tenants:
        own = [o for o in objs if o["metadata"].get("labels", {}).get(TENANT_LABEL) == t["name"]]
        kinds = sorted(o["kind"] for o in own)
        assert "Deployment" in kinds and "ConfigMap" in kinds
        text = json.dumps(own)
        for other in tenants:
            if other is t:
                continue
            for marker in [other["name"], other["credentialSecret"], *other["pins"], *other["senders"]]:
                assert marker not in text, f"{t['name']}'s objects mention {other['name']}'s {marker!r}"
        # every selector picks this tenant only
        for o in own:
            sel = None
            if o["kind"] == "Deployment":
                sel = o["spec"]["selector"]["matchLabels"]
                assert o["spec"]["template"]["metadata"]["labels"][TENANT_LABEL] == t["name"]
            elif o["kind"] == "Service":
                sel = o["spec"]["selector"]
            elif o["kind"] == "NetworkPolicy":
                sel = o["spec"]["podSelector"]["matchLabels"]
            if sel is not None:
                assert sel[TENANT_LABEL] == t["name"], o["metadata"]["name"]
    # objects without a tenant label belong to no tenant and name none
    for o in objs:
        if TENANT_LABEL not in o["metadata"].get("labels", {}):
            text = json.dumps(o)
            for t in tenants:
                assert t["credentialSecret"] not in text and not any(p in text for p in t["pins"])


def test_policies_carry_their_tenant() -> None:
    objs = rendered("two-tenants")
    acme, _ = policy_of(objs, "acme")
    globex, _ = policy_of(objs, "globex")
    assert acme["tenant"] == "acme" and globex["tenant"] == "globex"
    assert acme["senders"] == ["*@acme.example", "billing@acme-mail.example", "<>"]
    assert globex["upstream"] == {
        "address": "smtp.mailgun.org:465", "tls": "implicit", "ehlo_name": "globex-relay", "connect_timeout": "10s",
    }  # the tenant's `caSecret: ""` overrides the chart-wide CA
    assert globex["credential"]["mechanism"] == "login"
    assert globex["recipients"] == {"max_per_message": 20, "domains": ["globex.example", "partner.example"]}
    assert globex["limits"]["max_message_bytes"] == 10485760
    assert globex["data"] == {"bare_lf": "normalize"}
    assert acme["upstream"]["ca_file"] == f"{CA_DIR}/ca.crt"


def test_network_policy_allows_only_the_upstream_port_and_dns() -> None:
    objs = rendered("two-tenants")
    nps = {o["metadata"]["labels"][TENANT_LABEL]: o for o in of_kind(objs, "NetworkPolicy")}
    assert set(nps) == {"acme", "globex"}
    for tenant, port in (("acme", 587), ("globex", 465)):
        spec = nps[tenant]["spec"]
        assert spec["policyTypes"] == ["Egress"]
        rules = spec["egress"]
        assert rules[0]["ports"] == [{"protocol": "TCP", "port": port}]
        assert {(p["protocol"], p["port"]) for p in rules[1]["ports"]} == {("UDP", 53), ("TCP", 53)}
        assert len(rules) == 2
    kind = of_kind(rendered("kind"), "NetworkPolicy")
    assert all(np["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 2525}] for np in kind)


def test_metrics_service_and_podmonitor() -> None:
    objs = rendered("two-tenants")
    services = of_kind(objs, "Service")
    assert sorted(s["spec"]["selector"][TENANT_LABEL] for s in services) == ["acme", "globex"]
    for s in services:
        assert s["spec"]["ports"] == [{"name": "metrics", "port": ADMIN_PORT, "targetPort": "metrics", "protocol": "TCP"}]
    (pm,) = of_kind(objs, "PodMonitor")
    assert pm["metadata"]["labels"]["release"] == "prometheus"
    # chart-managed and injected sidecars alike (tests/helm/test_monitoring.py)
    assert pm["spec"]["selector"] == {"matchExpressions": [{"key": "smtpbind.dev/tenant", "operator": "Exists"}]}
    for d in of_kind(objs, "Deployment"):
        assert d["spec"]["template"]["metadata"]["labels"]["smtpbind.dev/tenant"] == d["metadata"]["labels"][TENANT_LABEL]
    assert of_kind(rendered("default"), "PodMonitor") == []
    assert of_kind(rendered("default"), "NetworkPolicy") == []


# ---- the values schema and the chart's own refusals ----------------------------------------

def walk_schema(node: Any, path: str = "$") -> list[str]:
    """Object schemas that accept unknown keys."""
    bad = []
    if isinstance(node, dict):
        is_object = node.get("type") == "object" or "properties" in node
        if is_object and path != "$.properties.global":
            ap = node.get("additionalProperties", True)
            if ap is True:
                bad.append(path)
        for key, value in node.items():
            bad += walk_schema(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad += walk_schema(value, f"{path}[{i}]")
    return bad


def test_schema_is_strict_at_every_object_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    # maps (labels, resources) constrain their values instead; only Helm's `global` is open
    assert walk_schema(schema) == []
    with helm_python.Chart.load(CHART) as loaded:
        assert loaded.schema == schema
        loaded.validate_schema(loaded.values)  # the defaults pass


def with_change(case: str, change) -> dict[str, Any]:
    values = copy.deepcopy(CASES[case]) or {}
    change(values)
    return values


BAD_VALUES = {
    "unknown top-level key": lambda v: v.update(replicaCount=2),
    "typo in a tenant": lambda v: v["tenants"][0].update(pin=["sha256:" + "0" * 64]),
    "typo in the mailer": lambda v: v["tenants"][0]["mailer"].update(volumeMounts=[]),
    "typo in upstream": lambda v: v["upstream"].update(adress="x:1"),
    "typo in egressLockdown": lambda v: v["egressLockdown"].update(enable=True),
    "typo in resources": lambda v: v.setdefault("resources", {}).setdefault("limits", {}).update(mem="1Gi"),
    "bad pin": lambda v: v["tenants"][0].update(pins=["sha256:abc"]),
    "no pins": lambda v: v["tenants"][0].update(pins=[]),
    "bad tls": lambda v: v["upstream"].update(tls="maybe"),
    "mailer overrides SMTP_HOST": lambda v: v["tenants"][0]["mailer"].update(env=[{"name": "SMTP_HOST", "value": "x"}]),
    "bad tenant name": lambda v: v["tenants"][0].update(name="Acme_Corp"),
    "bad duration": lambda v: v["upstream"].update(connectTimeout="10"),
}


@pytest.mark.parametrize("what", BAD_VALUES)
def test_schema_refuses(what: str) -> None:
    values = with_change("two-tenants", BAD_VALUES[what])
    with pytest.raises(helm_python.HelmValuesError):
        render_chart(CHART, values)


REFUSED = {
    "grace period not above drain": (lambda v: v.update(drainSeconds=40, terminationGracePeriodSeconds=40),
                                     "terminationGracePeriodSeconds"),
    "duplicate tenant": (lambda v: v["tenants"].append(copy.deepcopy(v["tenants"][0])), "appears twice"),
    "shared credential Secret": (lambda v: v["tenants"][1].update(credentialSecret=v["tenants"][0]["credentialSecret"]),
                                 "same credentialSecret"),
    "mailer reads a credential": (lambda v: v["tenants"][1]["mailer"].update(env=[{
        "name": "KEY", "valueFrom": {"secretKeyRef": {"name": "acme-sendgrid", "key": "password"}}}]),
                                  "only smtpbind may hold"),
    "mailer as smtpbind's UID under lock-down": (
        lambda v: v["tenants"][0]["mailer"]["securityContext"].update(runAsUser=UID), "must not run as UID 65532"),
    "mailer adds NET_RAW under lock-down": (
        lambda v: v["tenants"][0]["mailer"]["securityContext"].update(capabilities={"add": ["NET_RAW"]}),
        "may not add capability NET_RAW"),
    "mailer may escalate under lock-down": (
        lambda v: v["tenants"][0]["mailer"]["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation"),
    "a tenant without a mailer": (lambda v: v["tenants"][1].pop("mailer"), "needs a mailer"),
    "podLabels overriding the tenant label": (lambda v: v["tenants"][1].update(podLabels={TENANT_LABEL: "acme"}),
                                               "podLabels may not set"),
    "transparent without the lock-down": (lambda v: (v["egressLockdown"].update(enabled=False),
                                                     v.update(transparent=True)), "needs egressLockdown.enabled"),
}


def test_transparent_turns_on_the_redirect_in_the_lockdown_container() -> None:
    for transparent in (False, True):
        values = with_change("two-tenants", lambda v: v.update(transparent=transparent))
        objs = objects_of(render_chart(CHART, values, "mail"))
        for deploy in of_kind(objs, "Deployment"):
            _, lock = container(pod_spec(deploy), "smtpbind-egress-lockdown")
            env = {e["name"]: e["value"] for e in lock["env"]}
            assert env.get("SMTPBIND_REDIRECT") == ("1" if transparent else None)


@pytest.mark.parametrize("what", REFUSED)
def test_chart_refuses(what: str) -> None:
    change, message = REFUSED[what]
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render_chart(CHART, with_change("two-tenants", change))


def test_identities_render_into_the_policy() -> None:
    """Contract §9/§10 values (xoauth2 both flows, ses, limits.rate) reach the rendered policy."""
    objs = rendered("identities")
    m365, _ = policy_of(objs, "m365")
    assert m365["credential"]["mechanism"] == "xoauth2"
    assert m365["credential"]["oauth2"] == {
        "flow": "client_credentials",
        "token_url": "https://login.microsoftonline.com/acme.example/oauth2/v2.0/token",
        "scope": "https://outlook.office365.com/.default",
        "user": "billing@m365.example",
        "refresh_before": "300s",
    }
    assert m365["limits"]["rate"] == {"messages_per_second": 0.5, "burst": 5, "max_wait": "5s"}
    google, _ = policy_of(objs, "google")
    assert google["credential"]["oauth2"]["flow"] == "jwt_bearer"
    assert "refresh_before" not in google["credential"]["oauth2"]
    # oauth2.caSecret: the CA file in the policy, the Secret mounted only into smtpbind
    assert google["credential"]["oauth2"]["ca_file"] == "/etc/smtpbind/oauth2-ca/bundle.pem"
    assert "ca_file" not in m365["credential"]["oauth2"]
    for d in of_kind(objs, "Deployment"):
        pod = d["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        is_google = d["metadata"]["name"].endswith("google")
        assert ("smtpbind-oauth2-ca" in vols) == is_google, d["metadata"]["name"]
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
            if c["name"] == "smtpbind" and is_google:
                assert mounts["smtpbind-oauth2-ca"]["mountPath"] == "/etc/smtpbind/oauth2-ca"
            else:
                assert "smtpbind-oauth2-ca" not in mounts, c["name"]
        if is_google:
            assert vols["smtpbind-oauth2-ca"]["secret"]["secretName"] == "google-token-ca"
    ses, _ = policy_of(objs, "ses")
    assert ses["credential"]["ses"] == {"region": "eu-west-1"}
    assert ses["limits"]["rate"] == {"messages_per_second": 7}


@pytest.mark.parametrize("change", [
    lambda t: t.update(mechanism="oauth"),
    lambda t: t["oauth2"].update(flow="password"),
    lambda t: t["oauth2"].update(tokenUrl="http://login.example/token"),
    lambda t: t["oauth2"].update(secret="x"),
    lambda t: t["oauth2"].pop("user"),
    lambda t: t["limits"]["rate"].update(messagesPerSecond=0),
    lambda t: t["limits"]["rate"].update(per="1s"),
])
def test_schema_refuses_bad_identities(change: Any) -> None:
    values = copy.deepcopy(CASES["identities"])
    change(values["tenants"][0])
    with pytest.raises(helm_python.HelmValuesError):
        render_chart(CHART, values)


# ---- smtpbind check on every rendered policy --------------------------------------------------

def make_kubelet_secret(directory: Path, username: str, password: str) -> None:
    """A Secret volume as the kubelet writes it: ..<timestamp>/ + ..data + symlinks."""
    stamp = directory / "..2026_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    (stamp / "username").write_text(username)
    (stamp / "password").write_text(password)
    (directory / "..data").symlink_to(stamp.name)
    for key in ("username", "password"):
        (directory / key).symlink_to(f"..data/{key}")


def make_ca(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(path.with_suffix(".key")), "-out", str(path), "-subj", "/CN=smtpbind test CA", "-days", "2"],
        check=True, capture_output=True,
    )


def all_policies() -> list[tuple[str, str, str]]:
    out = []
    for case in CASES:
        for cm in of_kind(rendered(case), "ConfigMap"):
            out.append((case, cm["metadata"]["name"], cm["data"]["policy.yaml"]))
    for name, text in embedded_policies():
        out.append(("embed-example", name, text))
    return out


def require_bin() -> Path:
    binary = smtpbind_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.skip(f"smtpbind binary not built at {binary} (cargo build, or set SMTPBIND_BIN): "
                    "`smtpbind check` on the rendered policies was NOT run")
    return binary


def test_smtpbind_check_accepts_every_rendered_policy(tmp_path: Path) -> None:
    binary = require_bin()
    ca = tmp_path / "upstream-ca" / "ca.crt"
    make_ca(ca)
    files = []
    for i, (case, name, text) in enumerate(all_policies()):
        # The only file a rendered policy names is the CA bundle mounted from upstream.caSecret:
        # point that one path at a real PEM file; every other byte is what the chart rendered.
        text = text.replace(f'"{CA_DIR}/ca.crt"', json.dumps(str(ca)))
        text = text.replace('"/etc/smtpbind/oauth2-ca/bundle.pem"', json.dumps(str(ca)))
        path = tmp_path / f"{i:02d}-{case}-{name}.yaml"
        path.write_text(text)
        files.append(path)
    assert len(files) >= 7
    proc = subprocess.run([str(binary), "check", *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_smtpbind_check_rejects_a_broken_policy(tmp_path: Path) -> None:
    """The check above is real: the same binary refuses a typo with file:line:col."""
    binary = require_bin()
    _, text = policy_of(rendered("default"), "example")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("header_from:", "header_form:"))
    proc = subprocess.run([str(binary), "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert re.search(re.escape(str(bad)) + r":\d+:\d+: .*header_form", proc.stdout + proc.stderr)


def test_smtpbind_check_credentials_for_the_kind_tenants(tmp_path: Path) -> None:
    """The kind harness's pins match its Secrets: `check --credentials` on the rendered
    policies with each Secret laid out as the kubelet mounts it."""
    binary = require_bin()
    secrets = {s["metadata"]["name"]: s for s in yaml.safe_load_all((KIND / "tenant-secrets.yaml").read_text())}
    ca = tmp_path / "ca.crt"
    make_ca(ca)
    objs = rendered("kind")
    for t in tenants_of("kind"):
        secret = secrets[t["credentialSecret"]]
        sdir = tmp_path / t["name"] / "secret"
        make_kubelet_secret(sdir, secret["stringData"]["username"], secret["stringData"]["password"])
        _, text = policy_of(objs, t["name"])
        text = text.replace(json.dumps(SECRET_DIR), json.dumps(str(sdir)))
        text = text.replace(f'"{CA_DIR}/ca.crt"', json.dumps(str(ca)))
        path = tmp_path / t["name"] / "policy.yaml"
        path.write_text(text)
        proc = subprocess.run([str(binary), "check", "--credentials", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- embedding the named templates in another chart ---------------------------------------------

def parent_chart(tmp: Path) -> Path:
    """tests/helm/embed-example with this repository's chart as its subchart (as
    `helm dependency build` would place it)."""
    parent = tmp / "embed-example"
    shutil.copytree(EMBED, parent)
    shutil.copytree(CHART, parent / "charts" / "smtpbind")
    return parent


_EMBED_CACHE: list[dict[str, Any]] = []


def embedded_objects() -> list[dict[str, Any]]:
    if not _EMBED_CACHE:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            parent = parent_chart(Path(tmp))
            _EMBED_CACHE.extend(objects_of(render_chart(parent, None, name="billing", namespace="apps")))
    return _EMBED_CACHE


def embedded_policies() -> list[tuple[str, str]]:
    return [(o["metadata"]["name"], o["data"]["policy.yaml"]) for o in of_kind(embedded_objects(), "ConfigMap")
            if "policy.yaml" in o.get("data", {})]


def test_embedding_renders_the_sidecar_in_a_parent_chart() -> None:
    objs = embedded_objects()
    deployments = of_kind(objs, "Deployment")
    # the subchart's own tenants list is empty: only the parent's Deployment
    assert [d["metadata"]["name"] for d in deployments] == ["billing-api"]
    spec = pod_spec(deployments[0])
    where, sb = container(spec, "smtpbind")
    assert where == "initContainers" and sb["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["api"]
    api = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["SMTP_HOST"] == "127.0.0.1" and env["SMTP_PORT"] == "2525"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["smtpbind-credential"]["secret"]["secretName"] == "billing-sendgrid"
    (cm,) = [o for o in of_kind(objs, "ConfigMap") if "policy.yaml" in o["data"]]
    assert volumes["smtpbind-policy"]["configMap"]["name"] == cm["metadata"]["name"]
    policy = yaml.safe_load(cm["data"]["policy.yaml"])
    assert policy["tenant"] == "billing" and policy["upstream"]["address"] == "smtp.sendgrid.net:587"
    assert pod_spec(deployments[0])["terminationGracePeriodSeconds"] > duration_seconds(policy["shutdown"]["drain"])
    for version in K8S_VERSIONS:
        assert validate_objects(objs, version) == []


def test_embedding_example_lints(tmp_path: Path) -> None:
    report = helm_python.lint(parent_chart(tmp_path), strict=True, kube_version="v1.29.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], json.dumps(report, indent=2)


def test_docs_show_the_embedding_example() -> None:
    """docs/kubernetes.md quotes the example's templates; keep them the same."""
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    for rel in ("templates/deployment.yaml", "templates/smtpbind-policy.yaml"):
        body = (EMBED / rel).read_text().strip()
        assert body in doc, f"docs/kubernetes.md does not show tests/helm/embed-example/{rel} verbatim"


# ---- the kind harness's manifests -------------------------------------------------------------

def kind_objects() -> list[dict[str, Any]]:
    objs = []
    for path in sorted(KIND.glob("*.yaml")):
        if path.name == "values.yaml":
            continue
        objs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return objs


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kind_manifests_validate_strict(version: str) -> None:
    objs = kind_objects()
    assert {o["kind"] for o in objs} == {"Namespace", "Secret", "Deployment", "Service"}
    assert validate_objects(objs, version) == []


def test_kind_manifests_agree_with_each_other() -> None:
    objs = kind_objects()
    values = CASES["kind"]
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    (ns,) = [o for o in objs if o["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"  # NET_ADMIN init container
    (deploy,) = [o for o in objs if o["kind"] == "Deployment"]
    (svc,) = [o for o in objs if o["kind"] == "Service"]
    for o in objs:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == ns["metadata"]["name"] == NAMESPACE["kind"]
    capture = pod_spec(deploy)["containers"][0]
    args = capture["args"]
    assert args[0] == "capture"
    opt = lambda name: [args[i + 1] for i, a in enumerate(args) if a == name]  # noqa: E731
    host, port = values["upstream"]["address"].rsplit(":", 1)
    assert host == f"{svc['metadata']['name']}.{ns['metadata']['name']}.svc.cluster.local" == opt("--hostname")[0]
    assert int(port) == svc["spec"]["ports"][0]["port"]
    assert opt("--listen") == [f"0.0.0.0:{port}"] and opt("--tls") == ["starttls"]
    assert capture["image"] == f"{values['image']['repository']}:{values['image']['tag']}"
    accounts = dict(a.split("=", 1) for a in opt("--account"))
    mounts = {m["mountPath"]: m["name"] for m in capture["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deploy)["volumes"]}
    for t in values["tenants"]:
        secret = secrets[t["credentialSecret"]]
        assert secret["type"] == "kubernetes.io/basic-auth"
        password = secret["stringData"]["password"].encode()
        assert t["pins"] == ["sha256:" + hashlib.sha256(password).hexdigest()]
        # the capture knows this tenant's credential as account <tenant>
        assert volumes[mounts[accounts[t["name"]]]]["secret"]["secretName"] == t["credentialSecret"]
    assert {s["stringData"]["username"] for s in secrets.values()} == {"apikey"}


# ---- Dockerfile and scripts ------------------------------------------------------------------

def test_dockerfile_matches_the_chart() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    resolved = [(args.get(img.strip("${}"), img), stage) for img, stage in froms]
    assert resolved[0] == ("rust:1-bookworm", "build")
    assert resolved[-1] == ("gcr.io/distroless/static-debian12:nonroot", "runtime")  # the default target
    # the image's binary is built by the script bench/run.sh and the static-build check use,
    # statically linked: the static runtime image has no libc
    assert "./scripts/build-release.sh" in text
    script = (ROOT / "scripts" / "build-release.sh").read_text()
    assert "cargo build --release --locked" in script and "+crt-static" in script
    runtime = text[text.rindex("FROM"):]
    assert re.search(r"^USER 65532(:65532)?$", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \["/smtpbind"\]$', runtime, re.M)
    assert re.search(r"^EXPOSE 2525 9525$", runtime, re.M)
    # the lock-down image runs the very script pod-sim.sh runs, at the path the chart calls
    assert re.search(r"^COPY --chmod=0755 helm/smtpbind/files/egress-lockdown.sh /usr/local/bin/smtpbind-egress-lockdown$",
                     text, re.M)
    assert "helm/smtpbind/files/egress-lockdown.sh" in (ROOT / "tests" / "e2e" / "pod-sim.sh").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored and "helm" not in ignored


SCRIPTS = {
    "tests/kind/run.sh": "bash",
    "tests/e2e/pod-sim.sh": "bash",
    "tests/e2e/static-build.sh": "bash",
    "scripts/build-release.sh": "bash",
    "scripts/startup-order.sh": "bash",
    "bench/run.sh": "bash",
    "bench/wan.sh": "bash",
    "bench/pss.sh": "bash",
    "bench/profile.sh": "bash",
    "bench/webhook.sh": "bash",
    "bench/lib.sh": "bash",
    "tests/e2e/transparent-sim.sh": "bash",
    "tests/e2e/sim-lib.sh": "bash",
    "tests/helm/run.sh": "bash",
    "helm/smtpbind/files/egress-lockdown.sh": "sh",
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_syntax(script: str) -> None:
    shell = SCRIPTS[script]
    proc = subprocess.run([shell, "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script: str) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (tests/helm/run.sh installs it with apt-get)"
    proc = subprocess.run([shellcheck, "-x", "-s", SCRIPTS[script], "-S", "style", str(ROOT / script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_probe_helper_compiles() -> None:
    subprocess.run([sys.executable, "-m", "py_compile", str(ROOT / "tests" / "e2e" / "smtp_probe.py")], check=True)
