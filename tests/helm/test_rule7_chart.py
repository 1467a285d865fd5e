"""Issue 18 in the chart: rule 7's pins on the sidecars the chart renders,
per-tenant lock-down ports, the webhook's configuration of both, CONNECT
exec/attach in the ValidatingWebhookConfiguration, and rule 5's securityContext
on the mailers the chart renders. Run through tests/helm/run.sh.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_chart import (CASES, CHART, HERE, UID, all_containers, container, make_ca,  # noqa: E402
                        make_kubelet_secret, objects_of, of_kind, pod_spec, policy_of, render_chart, rendered,
                        require_bin, with_change)

TENANT_LABEL = "smtpbind/tenant"
WEBHOOK_VALUES = yaml.safe_load((HERE / "webhook-values.yaml").read_text())


def env_of(c: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["name"], e.get("value")) for e in c.get("env") or []]


def sidecars(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(tenant, smtpbind container, parsed policy) of every chart-rendered tenant pod."""
    out = []
    for deploy in of_kind(objs, "Deployment"):
        labels = deploy["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") != "tenant":
            continue
        tenant = labels[TENANT_LABEL]
        _, sb = container(pod_spec(deploy), "smtpbind")
        policy, _ = policy_of(objs, tenant)
        out.append((tenant, sb, policy))
    assert out
    return out


def pin_admits(env: dict[str, str], policy: dict[str, Any]) -> list[str]:
    """What the sidecar's decision (src/platform_pin.rs) checks, on the
    rendered policy: the reasons it would not be ready."""
    up = policy["upstream"]
    why = []
    pin = env["SMTPBIND_UPSTREAM_PIN"]
    address, _, name = pin.partition("/")
    if up.get("tls", "starttls") == "none" or up.get("insecure"):
        why.append("plain text")
    if up["address"].lower() != address.lower():
        why.append(f"address {up['address']} != {address}")
    host = re.sub(r":[0-9]+$", "", address).strip("[]")
    policy_name = up.get("server_name") or re.sub(r":[0-9]+$", "", up["address"]).strip("[]")
    if policy_name.lower() != (name or host).lower():
        why.append(f"server_name {policy_name} != {name or host}")
    if up.get("ca_file") is not None and \
            up["ca_file"] != env.get("SMTPBIND_UPSTREAM_CA", "/var/run/secrets/smtpbind/ca.crt"):
        why.append("ca_file")
    oauth = (policy.get("credential") or {}).get("oauth2")
    if oauth:
        if oauth["token_url"] != env.get("SMTPBIND_TOKEN_URL_PIN"):
            why.append("token_url")
        if oauth.get("ca_file") is not None and oauth["ca_file"] != env.get("SMTPBIND_TOKEN_CA"):
            why.append("oauth2.ca_file")
    return why


# ---- rule 7: every sidecar the chart renders is pinned, and its own policy passes the pin --------

@pytest.mark.parametrize("case", CASES)
def test_chart_sidecars_carry_the_upstream_pin_last_and_their_policy_passes_it(case: str) -> None:
    for tenant, sb, policy in sidecars(rendered(case)):
        env = env_of(sb)
        assert env, f"{case}/{tenant}: the sidecar has no SMTPBIND_UPSTREAM_PIN"
        assert env[-1][0] == "SMTPBIND_UPSTREAM_PIN", f"{case}/{tenant}: the pin must be the last entry: {env}"
        names = [n for n, _ in env]
        assert len(names) == len(set(names))
        assert set(names) <= {"SMTPBIND_UPSTREAM_PIN", "SMTPBIND_UPSTREAM_CA", "SMTPBIND_TOKEN_URL_PIN",
                              "SMTPBIND_TOKEN_CA"}
        assert pin_admits(dict(env), policy) == [], f"{case}/{tenant}"


def test_pin_names_the_server_name_the_ca_and_the_token_url() -> None:
    def change(v: dict[str, Any]) -> None:
        v["upstream"]["serverName"] = "smtp.sendgrid.net"
        v["tenants"][1]["upstream"] = {"address": "10.0.0.7:2587", "serverName": "relay.internal.example"}
    objs = objects_of(render_chart(CHART, with_change("two-tenants", change), "mail"))
    got = {t: dict(env_of(sb)) for t, sb, _ in sidecars(objs)}
    assert got["acme"] == {"SMTPBIND_UPSTREAM_CA": "/etc/smtpbind/upstream-ca/ca.crt",
                           "SMTPBIND_UPSTREAM_PIN": "smtp.sendgrid.net:587/smtp.sendgrid.net"}
    assert got["globex"]["SMTPBIND_UPSTREAM_PIN"] == "10.0.0.7:2587/relay.internal.example"
    ident = {t: dict(env_of(sb)) for t, sb, _ in sidecars(rendered("identities"))}
    assert ident["m365"]["SMTPBIND_TOKEN_URL_PIN"] == \
        "https://login.microsoftonline.com/acme.example/oauth2/v2.0/token"
    assert ident["google"]["SMTPBIND_UPSTREAM_PIN"] == "smtp.gmail.com:587"


def test_a_tenant_edit_of_the_policy_would_not_pass_the_pin() -> None:
    """The consistency check above is not vacuous: the edits a tenant could
    make to its ConfigMap fail it."""
    (tenant, sb, policy) = sidecars(rendered("two-tenants"))[0]
    env = dict(env_of(sb))
    edits = {
        "address": lambda p: p["upstream"].update(address="collector.attacker.example:587"),
        "plain text": lambda p: p["upstream"].update(tls="none", insecure=True),
        "server_name": lambda p: p["upstream"].update(server_name="collector.attacker.example"),
        "ca_file": lambda p: p["upstream"].update(ca_file="/etc/smtpbind/policy/ca.pem"),
    }
    for what, edit in edits.items():
        p = copy.deepcopy(policy)
        edit(p)
        assert pin_admits(env, p), what


def test_pin_off_for_a_test_upstream_and_refused_with_plain_text() -> None:
    plain = with_change("two-tenants", lambda v: v["upstream"].update(tls="none", insecure=True, caSecret=""))
    with pytest.raises(helm_python.HelmError, match=re.escape("upstream.pin: false")):
        render_chart(CHART, plain, "mail")
    plain["upstream"]["pin"] = False
    for _, sb, _ in sidecars(objects_of(render_chart(CHART, plain, "mail"))):
        assert "env" not in sb
    with pytest.raises(helm_python.HelmValuesError):
        render_chart(CHART, with_change("two-tenants", lambda v: v["upstream"].update(pin="yes")), "mail")


# ---- per-tenant lock-down ports --------------------------------------------------------------------

def lockdown_ports(objs: list[dict[str, Any]]) -> dict[str, list[str]]:
    out = {}
    for deploy in of_kind(objs, "Deployment"):
        tenant = deploy["metadata"]["labels"][TENANT_LABEL]
        _, lock = container(pod_spec(deploy), "smtpbind-egress-lockdown")
        out[tenant] = dict(env_of(lock))["SMTPBIND_LOCKDOWN_PORTS"].split(",")
    return out


def test_lockdown_ports_per_tenant_and_ses_ports() -> None:
    def change(v: dict[str, Any]) -> None:
        v["tenants"][0]["lockdownPorts"] = [25, 587, 8025]
        v["tenants"][1].update(mechanism="ses", ses={"region": "eu-west-1"},
                               accept=[{"username": "app", "password": "sha256:" + "a" * 64}])
    got = lockdown_ports(objects_of(render_chart(CHART, with_change("two-tenants", change), "mail")))
    assert got["acme"] == ["25", "587", "8025"]
    assert got["globex"] == ["25", "465", "587", "2525", "2465", "2587"]


def test_lockdown_ports_refused() -> None:
    for bad in ([], [0], [70000], [25, 25], ["25"], list(range(1, 16))):
        with pytest.raises(helm_python.HelmValuesError):
            render_chart(CHART, with_change("two-tenants", lambda v: v["tenants"][0].update(lockdownPorts=bad)))
    many = list(range(1000, 1014))  # 14 + the upstream's 587 + SES's two: 17
    change = (lambda v: v["tenants"][1].update(lockdownPorts=many, mechanism="ses", ses={"region": "eu-west-1"},
                                               accept=[{"username": "app", "password": "sha256:" + "a" * 64}]))
    with pytest.raises(helm_python.HelmError, match="at most 15"):
        render_chart(CHART, with_change("two-tenants", change))


# ---- the webhook: its configuration and its registrations -----------------------------------------

def webhook_objs(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return objects_of(render_chart(CHART, copy.deepcopy(values or WEBHOOK_VALUES), "smtpbind", "smtpbind-system"))


def webhook_config(values: dict[str, Any] | None = None) -> dict[str, Any]:
    (cm,) = [o for o in of_kind(webhook_objs(values), "ConfigMap")
             if o["metadata"]["labels"].get("app.kubernetes.io/component") == "webhook"]
    return yaml.safe_load(cm["data"]["config.yaml"])


def test_webhook_config_names_each_tenants_upstream_and_lockdown_ports() -> None:
    tenants = {t["name"]: t for t in webhook_config()["tenants"]}
    assert tenants["acme"]["upstream"] == {"address": "smtp.example.net:587"}
    assert "lockdown_ports" not in tenants["acme"]  # the webhook's default
    assert tenants["beta"]["upstream"] == {"address": "email-smtp.eu-west-1.amazonaws.com:587",
                                           "server_name": "email-smtp.eu-west-1.amazonaws.com"}
    assert tenants["beta"]["lockdown_ports"] == [25, 465, 587, 2525, 2465, 2587]
    # no upstream of its own: the chart's; an upstream port outside the list is added
    values = copy.deepcopy(WEBHOOK_VALUES)
    values["upstream"] = {"address": "smtp.office365.com:2587", "serverName": "smtp.office365.com"}
    del values["webhook"]["tenants"][0]["upstream"]
    acme = webhook_config(values)["tenants"][0]
    assert acme["upstream"] == {"address": "smtp.office365.com:2587", "server_name": "smtp.office365.com"}
    assert acme["lockdown_ports"] == [25, 465, 587, 2525, 2587]
    # without the lock-down there are no ports to give
    values["egressLockdown"] = {"enabled": False}
    assert "lockdown_ports" not in webhook_config(values)["tenants"][0]


def test_webhook_tenant_upstream_is_checked_by_the_schema() -> None:
    for bad in ({"address": "smtp.example.net"}, {"address": "smtp.example.net:587", "serverName": "a b"},
                {"adress": "smtp.example.net:587"}):
        values = copy.deepcopy(WEBHOOK_VALUES)
        values["webhook"]["tenants"][0]["upstream"] = bad
        with pytest.raises(helm_python.HelmValuesError):
            webhook_objs(values)


def test_validating_webhook_registers_pods_ephemeral_containers_exec_and_attach() -> None:
    (vwc,) = of_kind(webhook_objs(), "ValidatingWebhookConfiguration")
    (hook,) = vwc["webhooks"]
    rules = {(tuple(r["operations"]), tuple(r["resources"])) for r in hook["rules"]}
    assert (("CREATE", "UPDATE"), ("pods", "pods/ephemeralcontainers")) in rules
    assert (("CONNECT",), ("pods/exec", "pods/attach")) in rules
    assert all(r["apiGroups"] == [""] and r["apiVersions"] == ["v1"] for r in hook["rules"])
    assert hook["failurePolicy"] == "Fail"
    assert "objectSelector" not in hook


# ---- rule 5 on the mailers the chart renders ----------------------------------------------------------

@pytest.mark.parametrize("case", [c for c in CASES if c != "two-tenants-native-off"])
def test_chart_mailers_meet_rule_5_under_the_lockdown(case: str) -> None:
    for deploy in of_kind(rendered(case), "Deployment"):
        spec = pod_spec(deploy)
        names = [c["name"] for c in spec.get("initContainers") or []]
        if "smtpbind-egress-lockdown" not in names:
            continue
        assert (spec.get("securityContext") or {}).get("runAsUser") != UID
        for c in all_containers(spec):
            if c["name"] in ("smtpbind", "smtpbind-egress-lockdown"):
                continue
            sc = c.get("securityContext") or {}
            drop = set((sc.get("capabilities") or {}).get("drop") or [])
            assert "ALL" in drop or {"NET_RAW", "SETUID", "SETGID"} <= drop, c["name"]
            assert sc.get("allowPrivilegeEscalation") is False, c["name"]
            assert sc.get("runAsUser") != UID and sc.get("privileged") in (None, False), c["name"]


# ---- the kind harness's webhook step (tests/kind/run.sh; no cluster here) ---------------------------

def test_kind_webhook_policy_passes_the_pin_the_webhook_config_gives_its_tenant() -> None:
    kind = HERE.parent / "kind" / "webhook"
    values = yaml.safe_load((kind / "values.yaml").read_text())
    tenants = {t["name"]: t for t in webhook_config(values)["tenants"]}
    up = tenants["acme"]["upstream"]
    pin = up["address"] + (f"/{up['server_name']}" if "server_name" in up else "")
    policy = yaml.safe_load((kind / "acme-policy.yaml").read_text())
    # the injected sidecar's env: the pin, no SMTPBIND_UPSTREAM_CA (the Secret's ca.crt is the default)
    assert pin_admits({"SMTPBIND_UPSTREAM_PIN": pin}, policy) == []
    assert policy["upstream"]["ca_file"] == "/var/run/secrets/smtpbind/ca.crt"
    # the harness's rule-7 step: the edit it makes is refused
    edited = copy.deepcopy(policy)
    edited["upstream"]["address"] = up["address"].rsplit(":", 1)[0] + ":2526"
    assert pin_admits({"SMTPBIND_UPSTREAM_PIN": pin}, edited) != []
    run_sh = (HERE.parent / "kind" / "run.sh").read_text()
    assert '--from-file=ca.crt="$WORK/ca.pem"' in run_sh and ":2526/" in run_sh


# ---- the real sidecar accepts the pins the chart renders ---------------------------------------------

def _listening(proc: subprocess.Popen, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "listening":
            return event
    raise AssertionError("smtpbind did not report listening")


@pytest.mark.parametrize("case", [c for c in CASES if c != "client-tls"])
def test_the_real_sidecar_accepts_the_chart_s_pins_for_its_own_policy(case: str, tmp_path: Path) -> None:
    """`smtpbind run` with each chart tenant's rendered env and policy (mount paths moved under
    tmp_path, the same way in both): not ready only because the test Secret is not pinned,
    never because of the upstream pin; and the same run with the policy's upstream edited is
    refused by the pin."""
    binary = require_bin()
    make_ca(tmp_path / "ca.pem")
    moves = {"/etc/smtpbind/upstream-ca": tmp_path / "upstream-ca", "/etc/smtpbind/oauth2-ca": tmp_path / "oauth2-ca",
             "/var/run/secrets/smtpbind": tmp_path / "secret"}
    for d in moves.values():
        d.mkdir()
    for name in ("ca.crt", "bundle.pem"):
        for d in ("upstream-ca", "oauth2-ca"):
            shutil.copy(tmp_path / "ca.pem", tmp_path / d / name)
    make_kubelet_secret(tmp_path / "secret" / "s", "apikey", "not-the-pinned-key")

    def moved(text: str) -> str:
        for old, new in moves.items():
            text = text.replace(old, str(new if old != "/var/run/secrets/smtpbind" else new / "s"))
        return text

    for tenant, sb, _ in sidecars(rendered(case)):
        _, text = policy_of(rendered(case), tenant)
        env = {**os.environ, **{k: moved(v or "") for k, v in env_of(sb)}}
        for edit, want in ((None, "matches none of the policy's pins"),
                           ("collector.attacker.example:587", "upstream pin: upstream.address")):
            policy = moved(text)
            if edit:
                policy = re.sub(r"(?m)^  address: .*$", f'  address: "{edit}"', policy)
            path = tmp_path / f"{tenant}-policy.yaml"
            path.write_text(policy)
            proc = subprocess.Popen([str(binary), "run", "--policy", str(path), "--listen", "127.0.0.1:0",
                                     "--admin", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            try:
                admin = _listening(proc)["admin"]
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(f"http://{admin}/readyz", timeout=5)
                body = err.value.read().decode()
                assert want in body, f"{case}/{tenant} ({edit}): {body}"
                if not edit:
                    assert "upstream pin" not in body
            finally:
                proc.terminate()
                proc.wait(timeout=10)
