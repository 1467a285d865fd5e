"""The admission webhook's side of tests/e2e/pod-sim.sh: the pod a tenant's
own chart would create, and what the simulated kubelet must run once the
webhook has patched it.

    webhook_pod.py review NAMESPACE [bare]   AdmissionReview (CREATE) of an annotated mailer pod
                                             (bare: the mailer has no securityContext at all)
    webhook_pod.py patched REVIEW RESPONSE   the pod with the response's JSON Patch applied (jsonpatch)
    webhook_pod.py plan POD                  what to run, in order, as JSON (see plan())
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import jsonpatch


def review(namespace: str, bare: bool = False) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "legacy-mailer-", "namespace": namespace,
                     "labels": {"app": "legacy-mailer", "smtpbind.dev/mailer": "true"},
                     "annotations": {"smtpbind.dev/inject": "true"}},
        "spec": {"containers": [{"name": "mailer", "image": "registry.example/legacy-mailer:2.3",
                                 "securityContext": {"runAsUser": 1000, "runAsNonRoot": True}}]},
    }
    if bare:
        del pod["spec"]["containers"][0]["securityContext"]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "pod-sim-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": namespace, "operation": "CREATE",
                        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                        "object": pod, "dryRun": False}}


def patched(review_doc: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    r = response["response"]
    assert r["uid"] == review_doc["request"]["uid"] and r["allowed"] and r["patchType"] == "JSONPatch", r
    patch = json.loads(base64.b64decode(r["patch"]))
    return jsonpatch.JsonPatch(patch).apply(review_doc["request"]["object"])


def plan(pod: dict[str, Any]) -> dict[str, Any]:
    """init: [{name, image, uid, caps, drop, no_new_privs, env, command, args, native,
    mounts: {path: source}, probe}], containers: the same for the app containers.
    A mount's source is `secret:NAME`, `configMap:NAME` or `emptyDir`; `drop` the
    capabilities dropped (lower case), `no_new_privs` allowPrivilegeEscalation: false."""
    volumes = {}
    for v in pod["spec"].get("volumes", []):
        if "secret" in v:
            volumes[v["name"]] = "secret:" + v["secret"]["secretName"]
        elif "configMap" in v:
            volumes[v["name"]] = "configMap:" + v["configMap"]["name"]
        else:
            volumes[v["name"]] = "emptyDir"

    def container(c: dict[str, Any]) -> dict[str, Any]:
        sc = c.get("securityContext", {})
        probe = (c.get("startupProbe") or c.get("readinessProbe") or {}).get("httpGet")
        port = None
        if probe:
            port = next((p["containerPort"] for p in c.get("ports", []) if p.get("name") == probe["port"]),
                        probe["port"])
        return {
            "name": c["name"], "image": c["image"], "uid": sc.get("runAsUser"),
            "caps": [x.lower() for x in sc.get("capabilities", {}).get("add", [])],
            "drop": [x.lower() for x in sc.get("capabilities", {}).get("drop", [])],
            "no_new_privs": sc.get("allowPrivilegeEscalation") is False,
            "env": {e["name"]: e["value"] for e in c.get("env", []) if "value" in e},
            "command": c.get("command", []), "args": c.get("args", []),
            "native": c.get("restartPolicy") == "Always",
            "mounts": {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", [])},
            "probe": {"path": probe["path"], "port": port} if probe else None,
        }

    return {"init": [container(c) for c in pod["spec"].get("initContainers", [])],
            "containers": [container(c) for c in pod["spec"]["containers"]],
            "status": pod["metadata"].get("annotations", {}).get("smtpbind.dev/status")}


def main(argv: list[str]) -> None:
    if argv[0] == "review":
        print(json.dumps(review(argv[1], bare=argv[2:] == ["bare"])))
    elif argv[0] == "patched":
        print(json.dumps(patched(json.load(open(argv[1])), json.load(open(argv[2])))))
    elif argv[0] == "plan":
        print(json.dumps(plan(json.load(open(argv[1])))))
    else:
        sys.exit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
