"""One tenant schema (contract §12): tenants[] and webhook.tenants[] take the
same keys and render through the same policy template; webhook tenants'
policy ConfigMaps land in each of their namespaces; the three-provider
example of docs/kubernetes.md renders and passes `smtpbind check`."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_chart import CHART, ROOT, objects_of, of_kind, render_chart, smtpbind_bin  # noqa: E402

DOC = ROOT / "docs" / "kubernetes.md"
MARK = "<!-- tests/helm/test_tenants.py: three providers -->"
IMAGES = {
    "image": {"repository": "registry.example/smtpbind", "tag": "0.1.0"},
    "egressLockdown": {"enabled": True, "image": {"repository": "registry.example/lockdown", "tag": "0.1.0"}},
    "tenants": [],
}


def doc_example() -> dict[str, Any]:
    text = DOC.read_text()
    block = text.split(MARK, 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    values = yaml.safe_load(block)
    return {**copy.deepcopy(IMAGES), **values}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return objects_of(render_chart(CHART, copy.deepcopy(values), "platform", "smtpbind-system"))


def policies(objs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(cm["metadata"].get("namespace", ""), cm["metadata"]["name"]): cm["data"]["policy.yaml"]
            for cm in of_kind(objs, "ConfigMap") if "policy.yaml" in cm.get("data", {})}


def webhook_config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [o for o in of_kind(objs, "ConfigMap") if "config.yaml" in o.get("data", {})]
    return yaml.safe_load(cm["data"]["config.yaml"])


def check(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text)
    return subprocess.run([str(smtpbind_bin()), "check", str(path)], capture_output=True, text=True)


def test_the_three_provider_example_renders_and_passes_check(tmp_path: Path) -> None:
    objs = render(doc_example())
    found = policies(objs)
    assert set(found) == {("shop-acme", "acme-smtpbind"), ("shop-globex", "globex-smtpbind"),
                          ("shop-initech", "initech-smtpbind"), ("shared-batch", "initech-smtpbind")}
    for (ns, name), text in found.items():
        out = check(tmp_path, f"{ns}-{name}.yaml", text)
        assert out.returncode == 0, f"{ns}/{name}: {out.stdout}{out.stderr}\n{text}"
    globex = yaml.safe_load(found[("shop-globex", "globex-smtpbind")])
    assert globex["upstream"]["max_connections"] == 3
    assert globex["credential"]["mechanism"] == "xoauth2"
    assert globex["credential"]["oauth2"]["user"] == "billing@globex.example"
    initech = yaml.safe_load(found[("shop-initech", "initech-smtpbind")])
    assert initech["credential"]["ses"] == {"region": "eu-west-1"}
    assert initech["upstream"]["chunking"] == "off"
    acme = yaml.safe_load(found[("shop-acme", "acme-smtpbind")])
    assert acme["limits"]["rate"]["messages_per_second"] == 10
    config = webhook_config(objs)
    by_name = {t["name"]: t for t in config["tenants"]}
    assert by_name["initech"]["lockdown_ports"] == [25, 465, 587, 2465, 2587, 2525]
    assert "lockdown_ports" not in by_name["acme"]  # the webhook's default
    assert by_name["globex"]["upstream"] == {"address": "smtp.office365.com:587"}
    # rule 7 for XOAUTH2: the token endpoint is pinned in the injected sidecar too
    assert by_name["globex"]["token_url"] == globex["credential"]["oauth2"]["token_url"]
    assert "token_url" not in by_name["acme"]
    assert by_name["initech"]["policy_config_map"] == "initech-smtpbind"
    out = check(tmp_path, "webhook-config.yaml", yaml.safe_dump(config))
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_template_for_both_kinds_of_tenant() -> None:
    tenant = doc_example()["webhook"]["tenants"][1]
    chart = {k: v for k, v in tenant.items() if k not in ("namespaces", "policyConfigMap")}
    chart["mailer"] = {"image": "registry.example/mailer:1"}
    values = copy.deepcopy(IMAGES)
    values["tenants"] = [chart]
    (chart_policy,) = policies(render(values)).values()
    (webhook_policy,) = policies(render({**copy.deepcopy(IMAGES), "webhook": {
        "enabled": True, "tenants": [tenant]}})).values()
    assert chart_policy == webhook_policy


def with_tenants(*tenants: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(IMAGES), "webhook": {"enabled": True, "tenants": list(tenants)}}


def tenant(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespaces": [f"shop-{name}"], "credentialSecret": f"{name}-smtp",
            "pins": ["sha256:" + "a" * 64], "senders": [f"*@{name}.example"],
            "upstream": {"address": "smtp.sendgrid.net:587"}, **extra}


def test_a_misspelt_key_is_refused_with_the_allowed_keys() -> None:
    with pytest.raises(Exception) as err:
        render(with_tenants(tenant("acme", maxConnections=3)))
    text = str(err.value)
    assert "maxConnections" in text
    for key in ("upstream", "lockdownPorts", "limits", "oauth2", "ses", "clientTls"):
        assert f"'{key}'" in text, text
    with pytest.raises(Exception, match="'maxConnections'"):
        render(with_tenants(tenant("acme", upstream={"address": "a.example:587", "maxConnection": 3})))


@pytest.mark.parametrize("shared", ["credentialSecret", "policyConfigMap"])
def test_two_webhook_tenants_sharing_a_namespace_and_a_secret_or_configmap_are_refused(shared: str) -> None:
    a = tenant("acme", namespaces=["shop", "shared"], policyConfigMap="acme-policy")
    b = tenant("beta", namespaces=["shared"], policyConfigMap="beta-policy")
    b[shared] = a[shared]
    with pytest.raises(Exception, match=f'share namespace "shared" and {shared}'):
        render(with_tenants(a, b))
    # the same names in different namespaces are fine
    b["namespaces"] = ["other"]
    assert render(with_tenants(a, b))


@pytest.mark.parametrize("key,value", [("mailer", {"image": "x"}), ("replicas", 2)])
def test_chart_only_keys_are_refused_on_webhook_tenants(key: str, value: Any) -> None:
    with pytest.raises(Exception, match=f"sets {key}, which only chart-managed tenants"):
        render(with_tenants(tenant("acme", **{key: value})))


def test_webhook_only_keys_are_refused_on_chart_tenants() -> None:
    values = copy.deepcopy(IMAGES)
    t = tenant("acme", mailer={"image": "x"})
    values["tenants"] = [t]
    with pytest.raises(Exception, match="sets namespaces, which only webhook tenants"):
        render(values)


def test_ca_mounts_the_webhook_cannot_make_are_refused() -> None:
    with pytest.raises(Exception, match="upstream.caSecret"):
        render(with_tenants(tenant("acme", upstream={"address": "a.example:587", "caSecret": "ca"})))


def test_every_policy_key_of_the_schema_reaches_the_policy(tmp_path: Path) -> None:
    """Each upstream/limits key a tenant may set shows up in its rendered policy."""
    t = tenant("acme", upstream={"address": "smtp.sendgrid.net:587", "replyTimeout": "30s", "maxConnections": 5,
                                 "chunking": "off", "reuse": {"maxIdle": 2, "idleTimeout": "20s", "prewarm": 0}},
               limits={"rate": {"messagesPerSecond": 2, "burst": 3, "maxWait": "1s"}})
    (text,) = policies(render(with_tenants(t))).values()
    policy = yaml.safe_load(text)
    assert policy["upstream"]["reply_timeout"] == "30s"
    assert policy["upstream"]["max_connections"] == 5
    assert policy["upstream"]["chunking"] == "off"
    assert policy["upstream"]["reuse"] == {"max_idle": 2, "idle_timeout": "20s", "prewarm": 0}
    assert policy["limits"]["rate"] == {"messages_per_second": 2, "burst": 3, "max_wait": "1s"}
    out = check(tmp_path, "p.yaml", text)
    assert out.returncode == 0, out.stdout + out.stderr
