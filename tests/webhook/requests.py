"""Writes the golden requests (golden/*.request.json) of the webhook tests.

    python3 tests/webhook/requests.py

Each case is a pod (or another object, or a broken body) sent to /mutate or
/validate; the expected answers are golden/*.response.json, written by
`UPDATE_GOLDEN=1 cargo test --test webhook` and reviewed by hand. The
injected pods of the validate cases are built here from
src/webhook/injected.json, independently of the webhook's own patch code.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
INJECTED = json.loads((HERE.parent.parent / "src" / "webhook" / "injected.json").read_text())
IMAGE = "registry.example/smtpbind:0.1.0"
LOCKDOWN_IMAGE = "registry.example/smtpbind-egress-lockdown:0.1.0"


def review(obj: Any, namespace: str, operation: str = "CREATE", kind: str = "Pod",
           group: str = "", uid: str | None = None, sub_resource: str | None = None,
           name: str = "") -> dict[str, Any]:
    resource = {"Pod": "pods", "Deployment": "deployments", "ConfigMap": "configmaps",
                "PodExecOptions": "pods", "PodAttachOptions": "pods"}[kind]
    version = "v1"
    request: dict[str, Any] = {
        "uid": uid or f"uid-{namespace}-{operation.lower()}",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": obj,
        "oldObject": copy.deepcopy(obj) if operation == "UPDATE" else None,
        "dryRun": False,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    if name:
        request["name"] = name
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def connect(namespace: str, sub: str, container: str | None) -> dict[str, Any]:
    """CONNECT pods/exec or pods/attach, as the API server sends it."""
    kind = "PodExecOptions" if sub == "exec" else "PodAttachOptions"
    obj: dict[str, Any] = {"kind": kind, "apiVersion": "v1", "stdin": True, "stdout": True, "tty": True}
    if sub == "exec":
        obj["command"] = ["sh"]
    if container is not None:
        obj["container"] = container
    r = review(obj, namespace, "CONNECT", kind=kind, name="mailer-7d9f-x2x", sub_resource=sub,
               uid=f"uid-{namespace}-{sub}-{container or 'none'}")
    r["request"]["userInfo"] = {"username": "tenant-dev"}
    return r


def pod(namespace: str, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"generateName": "mailer-7d9f-", "namespace": namespace,
                            "labels": {"app": "mailer", **(labels or {})}}
    if annotations is not None:
        meta["annotations"] = annotations
    body = {"containers": [{"name": "mailer", "image": "registry.example/legacy-mailer:2.3",
                            "env": [{"name": "MAILER_QUEUE", "value": "/var/spool"}]}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


INJECT = {"smtpbind.dev/inject": "true"}


PIN = {"acme": "smtp.example.net:587",
       "beta": "email-smtp.eu-west-1.amazonaws.com:587/email-smtp.eu-west-1.amazonaws.com"}
PORTS = {"acme": "25,465,587,2525", "beta": "25,465,587,2525,2465,2587"}
HARDENED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["NET_RAW", "SETUID", "SETGID"]}}


def set_env(c: dict[str, Any], name: str, value: str) -> None:
    env = c.setdefault("env", [])
    for e in env:
        if e["name"] == name:
            e.clear()
            e.update({"name": name, "value": value})
            return
    env.append({"name": name, "value": value})


def sidecar(tenant: str = "acme") -> dict[str, Any]:
    c = copy.deepcopy({**INJECTED["sidecar"], "image": IMAGE})
    set_env(c, "SMTPBIND_UPSTREAM_PIN", PIN[tenant])
    return c


def lockdown(tenant: str = "acme") -> dict[str, Any]:
    c = copy.deepcopy({**INJECTED["lockdown"], "image": LOCKDOWN_IMAGE})
    set_env(c, "SMTPBIND_LOCKDOWN_PORTS", PORTS[tenant])
    return c


def injected(namespace: str, secret: str = "acme-smtp", config_map: str = "acme-smtpbind",
             tenant: str | None = None, harden: bool = True, **kw: Any) -> dict[str, Any]:
    """An injected pod, built from injected.json (what the webhook patches in),
    its own containers hardened as rule 5 asks unless they bring a securityContext."""
    annotations = {**INJECT, "smtpbind.dev/status": "injected"}
    if tenant:
        annotations["smtpbind.dev/tenant"] = tenant
    owner = tenant or "acme"
    p = pod(namespace, annotations, {"smtpbind.dev/mailer": "true", "smtpbind.dev/tenant": owner}, **kw)
    for c in p["spec"]["containers"] + p["spec"].get("initContainers", []):
        if harden and "securityContext" not in c:
            c["securityContext"] = copy.deepcopy(HARDENED)
    p["spec"]["initContainers"] = [lockdown(owner), sidecar(owner)] + p["spec"].get("initContainers", [])
    volumes = copy.deepcopy(INJECTED["volumes"])
    for v in volumes:
        if "secret" in v:
            v["secret"]["secretName"] = secret
        if "configMap" in v:
            v["configMap"]["name"] = config_map
    p["spec"]["volumes"] = p["spec"].get("volumes", []) + volumes
    for c in p["spec"]["containers"]:
        c["env"] = c.get("env", []) + INJECTED["mailerEnv"]
    return p


def stored(p: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server stores it: its container defaults applied
    (written here independently of src/webhook/defaults.rs)."""
    p = copy.deepcopy(p)
    for c in p["spec"].get("initContainers", []) + p["spec"]["containers"]:
        tag = c["image"].rsplit("/", 1)[-1]
        c.setdefault("imagePullPolicy", "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in c:
                for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                             ("failureThreshold", 3)):
                    c[probe].setdefault(k, v)
                if "httpGet" in c[probe]:
                    c[probe]["httpGet"].setdefault("scheme", "HTTP")
        for port in c.get("ports", []):
            port.setdefault("protocol", "TCP")
    return p


def with_init(p: dict[str, Any], index: int, **fields: Any) -> dict[str, Any]:
    """`p` with fields of initContainers[index] replaced."""
    p = copy.deepcopy(p)
    p["spec"]["initContainers"][index].update(fields)
    return p


def mailer_with(**container: Any) -> list[dict[str, Any]]:
    return [{"name": "mailer", "image": "registry.example/legacy-mailer:2.3", **container}]


CASES: dict[str, Any] = {
    # ---- /mutate
    "mutate-inject": review(pod(
        "shop-acme", INJECT,
        initContainers=[{"name": "migrate", "image": "registry.example/migrate:1",
                         "env": [{"name": "SMTP_HOST", "value": "mail.internal"}]}],
        volumes=[{"name": "spool", "emptyDir": {}}]), "shop-acme"),
    "mutate-inject-minimal": review({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "m", "namespace": "shop-acme", "annotations": INJECT},
        "spec": {"containers": [{"name": "a", "image": "busybox:1.36"},
                                {"name": "b", "image": "busybox:1.36",
                                 "env": [{"name": "SMTP_PORT", "value": "25"}]}]}}, "shop-acme"),
    "mutate-skip-no-annotation": review(pod("shop-acme"), "shop-acme"),
    "mutate-skip-annotation-false": review(pod("shop-acme", {"smtpbind.dev/inject": "false"}), "shop-acme"),
    "mutate-skip-namespace-of-no-tenant": review(pod("web", INJECT), "web"),
    "mutate-already-injected": review(injected("shop-acme"), "shop-acme"),
    "mutate-wrong-tenant-for-namespace": review(
        pod("shop-acme", {**INJECT, "smtpbind.dev/tenant": "beta"}), "shop-acme"),
    "mutate-tenant-annotation-chooses": review(
        pod("shared", {**INJECT, "smtpbind.dev/tenant": "beta"}), "shared"),
    "mutate-shared-namespace-needs-a-tenant": review(pod("shared", INJECT), "shared"),
    "mutate-update-is-not-mutated": review(pod("shop-acme", INJECT), "shop-acme", "UPDATE"),
    "mutate-non-pod-kind": review({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "x", "namespace": "shop-acme",
                                                "annotations": INJECT}, "data": {}},
                                  "shop-acme", kind="ConfigMap"),
    "mutate-name-collision": review(pod(
        "shop-acme", INJECT, initContainers=[{"name": "smtpbind", "image": "busybox:1.36"}]), "shop-acme"),
    # ---- /validate
    "validate-injected-pod": review(injected("shop-acme"), "shop-acme"),
    "validate-injected-pod-of-chosen-tenant": review(
        injected("shared", "beta-smtp", "beta-smtpbind", tenant="beta"), "shared"),
    "validate-rule1-mailer-without-sidecar": review(
        pod("shop-acme", labels={"smtpbind.dev/mailer": "true"}), "shop-acme"),
    "validate-rule2-secret-volume-in-mailer": review(pod(
        "shop-acme", containers=mailer_with(volumeMounts=[{"name": "creds", "mountPath": "/creds"}]),
        volumes=[{"name": "creds", "secret": {"secretName": "acme-smtp"}}]), "shop-acme"),
    "validate-rule2-projected-volume": review(pod(
        "shop-acme", containers=mailer_with(volumeMounts=[{"name": "all", "mountPath": "/all"}]),
        volumes=[{"name": "all", "projected": {"sources": [
            {"configMap": {"name": "settings"}}, {"secret": {"name": "acme-smtp"}}]}}]), "shop-acme"),
    "validate-rule2-env-valuefrom": review(pod(
        "shop-acme", containers=mailer_with(env=[{"name": "SMTP_PASSWORD", "valueFrom": {
            "secretKeyRef": {"name": "acme-smtp", "key": "password"}}}])), "shop-acme"),
    "validate-rule2-envfrom": review(pod(
        "shop-acme", containers=mailer_with(envFrom=[{"secretRef": {"name": "acme-smtp"}}])), "shop-acme"),
    "validate-rule2-other-tenants-secret-in-sidecar": review(
        injected("shop-acme", secret="beta-smtp"), "shop-acme"),
    "validate-rule2-other-tenants-secret-unmounted": review(pod(
        "shop-acme", volumes=[{"name": "x", "secret": {"secretName": "beta-smtp"}}]), "shop-acme"),
    "validate-rule2-container-named-smtpbind-other-image": review(pod(
        "shop-acme",
        containers=mailer_with() + [{"name": "smtpbind", "image": "registry.example/smtpbind-lookalike:1",
                                     "volumeMounts": [{"name": "smtpbind-credential",
                                                       "mountPath": "/var/run/secrets/smtpbind"}]}],
        volumes=[{"name": "smtpbind-credential", "secret": {"secretName": "acme-smtp"}}]), "shop-acme"),
    "validate-rule2-sidecar-image-with-command": review(pod(
        "shop-acme",
        containers=mailer_with() + [{"name": "smtpbind", "image": IMAGE, "command": ["cat"],
                                     "args": ["/var/run/secrets/smtpbind/password"],
                                     "volumeMounts": [{"name": "c", "mountPath": "/var/run/secrets/smtpbind"}]}],
        volumes=[{"name": "c", "secret": {"secretName": "acme-smtp"}}]), "shop-acme"),
    "validate-rule2-shared-namespace-without-tenant": review(pod(
        "shared", containers=mailer_with(envFrom=[{"secretRef": {"name": "acme-smtp"}}])), "shared"),
    "validate-update-of-an-injected-pod": review(injected("shop-acme"), "shop-acme", "UPDATE"),
    "validate-rule4-host-network": review(injected("shop-acme", hostNetwork=True), "shop-acme"),
    "validate-rule4-privileged": review(injected(
        "shop-acme", containers=mailer_with(securityContext={"privileged": True})), "shop-acme"),
    "validate-rule4-net-admin": review(injected(
        "shop-acme", containers=mailer_with(securityContext={"capabilities": {"add": ["NET_ADMIN"]}})),
        "shop-acme"),
    "validate-rule4-net-raw-init": review(injected(
        "shop-acme", initContainers=[{"name": "setup", "image": "busybox:1.36",
                                      "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}]),
        "shop-acme"),
    "validate-rule5-uid-of-the-sidecar": review(injected(
        "shop-acme", securityContext={"runAsUser": 65532}), "shop-acme"),
    "validate-rule4-lockdown-lookalike": review(injected(
        "shop-acme", initContainers=[{"name": "smtpbind-egress-lockdown-2", "image": LOCKDOWN_IMAGE,
                                      "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]),
        "shop-acme"),
    # ---- issue 18: each attack class
    "validate-rule4-host-path-root": review(injected(
        "shop-acme", containers=mailer_with(securityContext=HARDENED,
                                            volumeMounts=[{"name": "node", "mountPath": "/node"}]),
        volumes=[{"name": "node", "hostPath": {"path": "/"}}]), "shop-acme"),
    "validate-rule4-host-pid": review(injected("shop-acme", hostPID=True), "shop-acme"),
    "validate-rule1-privileged-lookalike-lockdown": review(with_init(
        injected("shop-acme"), 0, securityContext={**lockdown()["securityContext"], "privileged": True,
                                                   "allowPrivilegeEscalation": True}), "shop-acme"),
    "validate-rule1-lookalike-lockdown-with-path": review(with_init(
        injected("shop-acme"), 0, env=lockdown()["env"] + [{"name": "PATH", "value": "/tenant/bin:/usr/bin"}]),
        "shop-acme"),
    "validate-rule1-lookalike-lockdown-uid-0": review(with_init(
        injected("shop-acme"), 0, env=[{"name": "SMTPBIND_UID", "value": "0"},
                                       {"name": "SMTPBIND_LOCKDOWN_PORTS", "value": PORTS["acme"]}]),
        "shop-acme"),
    "validate-rule2-second-smtpbind-image-with-own-args": review(injected(
        "shop-acme", containers=mailer_with(securityContext=HARDENED) + [{
            "name": "relay", "image": IMAGE, "args": ["run", "--policy", "/etc/podinfo/policy"],
            "securityContext": HARDENED,
            "volumeMounts": [{"name": "smtpbind-credential", "mountPath": "/var/run/secrets/smtpbind"},
                             {"name": "podinfo", "mountPath": "/etc/podinfo"}]}],
        volumes=[{"name": "podinfo", "downwardAPI": {"items": [{
            "path": "policy", "fieldRef": {"fieldPath": "metadata.annotations['policy']"}}]}}]), "shop-acme"),
    "validate-rule1-sidecar-with-its-entrypoint-overmounted": review(with_init(
        injected("shop-acme", volumes=[{"name": "tools", "configMap": {"name": "tools"}}]), 1,
        volumeMounts=sidecar()["volumeMounts"] + [
            {"name": "tools", "mountPath": "/usr/local/bin/smtpbind", "subPath": "smtpbind"}]), "shop-acme"),
    "validate-rule5-mailer-without-security-context": review(injected("shop-acme", harden=False), "shop-acme"),
    "mutate-hardens-a-mailer-without-security-context": review(pod(
        "shop-acme", INJECT, {"smtpbind.dev/mailer": "true"},
        containers=mailer_with() + [{"name": "worker", "image": "registry.example/worker:1",
                                     "securityContext": {"runAsNonRoot": True,
                                                         "capabilities": {"drop": ["NET_ADMIN"]}}},
                                    {"name": "strict", "image": "registry.example/strict:1",
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}]),
        "shop-acme"),
    "mutate-rule5-explicit-privilege-escalation": review(pod(
        "shop-acme", INJECT, containers=mailer_with(securityContext={"allowPrivilegeEscalation": True})),
        "shop-acme"),
    "mutate-rule5-explicit-uid-of-the-sidecar": review(pod(
        "shop-acme", INJECT, securityContext={"runAsUser": 65532}), "shop-acme"),
    "mutate-rule5-adds-setuid": review(pod(
        "shop-acme", INJECT, containers=mailer_with(securityContext={"capabilities": {
            "drop": ["ALL"], "add": ["SETUID"]}})), "shop-acme"),
    "validate-rule4-share-process-namespace": review(injected("shop-acme", shareProcessNamespace=True),
                                                     "shop-acme"),
    "validate-rule4-ephemeral-container-targets-the-sidecar": review(injected(
        "shop-acme", ephemeralContainers=[{"name": "debugger", "image": "busybox:1.36",
                                           "targetContainerName": "smtpbind",
                                           "securityContext": HARDENED}]),
        "shop-acme", "UPDATE", sub_resource="ephemeralcontainers"),
    "validate-ephemeral-container-into-the-mailer": review(injected(
        "shop-acme", ephemeralContainers=[{"name": "debugger", "image": "busybox:1.36",
                                           "targetContainerName": "mailer",
                                           "securityContext": HARDENED}]),
        "shop-acme", "UPDATE", sub_resource="ephemeralcontainers"),
    "validate-rule5-ephemeral-container-not-hardened": review(injected(
        "shop-acme", ephemeralContainers=[{"name": "debugger", "image": "busybox:1.36",
                                           "targetContainerName": "mailer"}]),
        "shop-acme", "UPDATE", sub_resource="ephemeralcontainers"),
    "mutate-own-sidecar-and-no-lockdown": review({
        **pod("shop-acme", INJECT, {"smtpbind.dev/mailer": "true"}),
        "spec": {**injected("shop-acme")["spec"],
                 "initContainers": [sidecar()]}}, "shop-acme"),
    "validate-rule1-own-sidecar-and-no-lockdown": review({
        **injected("shop-acme"),
        "spec": {**injected("shop-acme")["spec"], "initContainers": [sidecar()]}}, "shop-acme"),
    "mutate-forged-status-annotation": review(pod(
        "shop-acme", {**INJECT, "smtpbind.dev/status": "injected"}, {"smtpbind.dev/mailer": "true"}),
        "shop-acme"),
    "validate-rule1-forged-status-annotation": review(pod(
        "shop-acme", {"smtpbind.dev/status": "injected"}, {"smtpbind.dev/mailer": "true"},
        containers=mailer_with(securityContext=HARDENED)), "shop-acme"),
    "mutate-ses-tenant-lockdown-ports": review(pod("shop-beta", INJECT), "shop-beta"),
    "validate-injected-pod-of-the-ses-tenant": review(
        injected("shop-beta", "beta-smtp", "beta-smtpbind", tenant="beta"), "shop-beta"),
    "validate-injected-pod-as-stored": review(stored(injected("shop-acme")), "shop-acme"),
    "validate-rule1-sidecar-without-the-upstream-pin": review(with_init(
        injected("shop-acme"), 1, env=[e for e in sidecar()["env"] if e["name"] != "SMTPBIND_UPSTREAM_PIN"]),
        "shop-acme"),
    "validate-rule1-sidecar-pinned-to-another-upstream": review(with_init(
        injected("shop-acme"), 1, env=[{"name": "SMTPBIND_UPSTREAM_PIN", "value": "collector.evil:25"}]),
        "shop-acme"),
    "validate-rule2-csi-node-publish-secret": review(pod(
        "shop-acme", volumes=[{"name": "x", "csi": {"driver": "secrets-store.csi.k8s.io",
                                                    "nodePublishSecretRef": {"name": "beta-smtp"}}}]),
        "shop-acme"),
    "validate-rule6-exec-into-the-sidecar": connect("shop-acme", "exec", "smtpbind"),
    "validate-rule6-attach-to-the-lockdown": connect("shop-acme", "attach", "smtpbind-egress-lockdown"),
    "validate-rule6-exec-without-a-container": connect("shop-acme", "exec", None),
    "validate-exec-into-the-mailer": connect("shop-acme", "exec", "mailer"),
    "validate-exec-in-a-namespace-of-no-tenant": connect("web", "exec", "smtpbind"),
    "validate-namespace-of-no-tenant": review(pod(
        "web", containers=mailer_with(securityContext={"privileged": True}),
        labels={"smtpbind.dev/mailer": "true"}), "web"),
    "validate-wrong-tenant-annotation": review(
        pod("shop-acme", {"smtpbind.dev/tenant": "beta"}), "shop-acme"),
    "validate-non-pod-kind": review({"apiVersion": "apps/v1", "kind": "Deployment",
                                     "metadata": {"name": "d", "namespace": "shop-acme"},
                                     "spec": {"template": {"spec": {"hostNetwork": True}}}},
                                    "shop-acme", kind="Deployment", group="apps"),
}

RAW: dict[str, bytes] = {
    "mutate-malformed-not-json": b"\x00\xffnot json at all",
    "mutate-malformed-truncated": json.dumps(review(pod("shop-acme", INJECT), "shop-acme")).encode()[:200],
    "mutate-malformed-v1beta1": json.dumps(
        {**review(pod("shop-acme", INJECT), "shop-acme"), "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
    "mutate-malformed-no-request": b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}',
    "validate-malformed-spec-type": json.dumps(
        review(pod("shop-acme") | {"spec": {"containers": "SG.not-a-list"}}, "shop-acme")).encode(),
    "validate-malformed-empty": b"",
}


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, body in CASES.items():
        (GOLDEN / f"{name}.request.json").write_text(json.dumps(body, indent=2) + "\n")
    for name, raw in RAW.items():
        (GOLDEN / f"{name}.request.json").write_bytes(raw)


if __name__ == "__main__":
    main()
