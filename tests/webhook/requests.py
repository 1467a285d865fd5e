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
           group: str = "", uid: str | None = None) -> dict[str, Any]:
    resource = {"Pod": "pods", "Deployment": "deployments", "ConfigMap": "configmaps"}[kind]
    version = "v1"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or f"uid-{namespace}-{operation.lower()}",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
            "oldObject": copy.deepcopy(obj) if operation == "UPDATE" else None,
            "dryRun": False,
        },
    }


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


def injected(namespace: str, secret: str = "acme-smtp", config_map: str = "acme-smtpbind",
             tenant: str | None = None, **kw: Any) -> dict[str, Any]:
    """An injected pod, built from injected.json (what the webhook patches in)."""
    annotations = {**INJECT, "smtpbind.dev/status": "injected"}
    if tenant:
        annotations["smtpbind.dev/tenant"] = tenant
    p = pod(namespace, annotations, {"smtpbind.dev/mailer": "true"}, **kw)
    lockdown = {**INJECTED["lockdown"], "image": LOCKDOWN_IMAGE}
    sidecar = {**INJECTED["sidecar"], "image": IMAGE}
    p["spec"]["initContainers"] = [lockdown, sidecar] + p["spec"].get("initContainers", [])
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
    "validate-rule3-lockdown-container-exempt": review(injected("shop-acme"), "shop-acme", "UPDATE"),
    "validate-rule3-host-network": review(injected("shop-acme", hostNetwork=True), "shop-acme"),
    "validate-rule3-privileged": review(injected(
        "shop-acme", containers=mailer_with(securityContext={"privileged": True})), "shop-acme"),
    "validate-rule3-net-admin": review(injected(
        "shop-acme", containers=mailer_with(securityContext={"capabilities": {"add": ["NET_ADMIN"]}})),
        "shop-acme"),
    "validate-rule3-net-raw-init": review(injected(
        "shop-acme", initContainers=[{"name": "setup", "image": "busybox:1.36",
                                      "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}]),
        "shop-acme"),
    "validate-rule3-uid-of-the-sidecar": review(injected(
        "shop-acme", securityContext={"runAsUser": 65532}), "shop-acme"),
    "validate-rule3-lockdown-lookalike": review(injected(
        "shop-acme", initContainers=[{"name": "smtpbind-egress-lockdown-2", "image": LOCKDOWN_IMAGE,
                                      "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]),
        "shop-acme"),
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
