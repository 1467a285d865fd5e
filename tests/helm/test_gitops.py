"""GitOps (contract §12): `helm template` output is stable from render to
render unless a random value is wanted, and each webhook certificate path
says which tools it fits (docs/kubernetes.md, "Serving certificate")."""

from __future__ import annotations

import base64
import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_chart import CHART, HERE, make_ca, objects_of, of_kind, render_chart  # noqa: E402

VALUES = yaml.safe_load((HERE / "webhook-values.yaml").read_text())


def text(values: dict[str, Any]) -> str:
    rendered = render_chart(CHART, copy.deepcopy(values), "smtpbind", "smtpbind-system")
    return "".join(v for _, v in sorted(rendered.items()))


def with_webhook(**overrides: Any) -> dict[str, Any]:
    values = copy.deepcopy(VALUES)
    values["webhook"]["certManager"] = {"enabled": False, "issuerRef": {"name": "", "kind": "Issuer"}}
    values["webhook"].update(overrides)
    return values


def ca_bundle(tmp_path: Path) -> str:
    crt = tmp_path / "ca.crt"
    make_ca(crt)
    return base64.b64encode(crt.read_bytes()).decode()


def test_existing_secret_renders_the_same_every_time(tmp_path: Path) -> None:
    bundle = ca_bundle(tmp_path)
    values = with_webhook(tls={"existingSecret": "webhook-pair", "caBundle": bundle})
    first = text(values)
    assert first == text(values)
    objs = objects_of(render_chart(CHART, copy.deepcopy(values), "smtpbind", "smtpbind-system"))
    # no pair generated: the platform's Secret is mounted, its CA is the bundle
    assert not [s for s in of_kind(objs, "Secret") if s["type"] == "kubernetes.io/tls"]
    (deploy,) = [d for d in of_kind(objs, "Deployment")
                 if d["metadata"]["labels"].get("app.kubernetes.io/component") == "webhook"]
    secrets = [v["secret"]["secretName"] for v in deploy["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert "webhook-pair" in secrets
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in of_kind(objs, kind)[0]["webhooks"]:
            assert hook["clientConfig"]["caBundle"] == bundle


def test_cert_manager_renders_the_same_every_time() -> None:
    values = with_webhook(certManager={"enabled": True, "issuerRef": {"name": "", "kind": "Issuer"}})
    assert text(values) == text(values)


def test_the_generated_ca_is_new_at_every_render() -> None:
    # why the two paths above exist: without a cluster to look the Secret up
    # in (helm template), the chart's own CA is generated anew each time
    assert text(with_webhook()) != text(with_webhook())


def test_existing_secret_needs_its_ca_and_excludes_cert_manager(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="caBundle"):
        text(with_webhook(tls={"existingSecret": "webhook-pair"}))
    with pytest.raises(Exception, match="choose one"):
        text(with_webhook(tls={"existingSecret": "webhook-pair", "caBundle": ca_bundle(tmp_path)},
                          certManager={"enabled": True, "issuerRef": {"name": "", "kind": "Issuer"}}))
