"""Fleet monitoring in the chart (contract §12): the PrometheusRule's alerts,
unit-tested with `promtool test rules` as the chart renders them, a runbook
section for every alert, the Grafana dashboard ConfigMap, and the PodMonitor.

Run through tests/helm/run.sh (it installs promtool from Debian's
`prometheus` package). That every metric the rules and the dashboard use is
exported by a running sidecar or webhook is tests/monitoring.rs.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_chart import CHART, HERE, ROOT, objects_of, of_kind, render_chart  # noqa: E402

import gen_dashboard  # noqa: E402

RUNBOOK_BASE = "https://runbook.test/runbook.md"
RUNBOOK = ROOT / "docs" / "runbook.md"


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return objects_of(render_chart(CHART, values, "rel", "platform"))


def monitoring_values() -> dict[str, Any]:
    return {
        "prometheusRule": {"enabled": True, "runbookBase": RUNBOOK_BASE, "labels": {"release": "kps"}},
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
    }


def rule_groups() -> list[dict[str, Any]]:
    (rule,) = of_kind(render(monitoring_values()), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    return rule["spec"]["groups"]


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def test_off_by_default() -> None:
    objs = render({})
    assert not of_kind(objs, "PrometheusRule")
    assert not [o for o in of_kind(objs, "ConfigMap") if "grafana_dashboard" in o["metadata"].get("labels", {})]


def test_the_alerts_the_contract_names() -> None:
    names = {a["alert"] for a in alerts()}
    assert names == {
        "SmtpbindIdentityMismatch", "SmtpbindCredentialNotPinned", "SmtpbindNotReady",
        "SmtpbindUpstreamFailures", "SmtpbindTokenRefreshFailing", "SmtpbindRateRefusals",
        "SmtpbindRotationUnfinished", "SmtpbindClientTlsCertificateExpiring",
        "SmtpbindWebhookUnavailable", "SmtpbindWebhookCertificateExpiring",
    }


def test_promtool_unit_tests_pass_on_the_rendered_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: tests/helm/run.sh installs Debian's prometheus package"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    shutil.copy(HERE / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    check = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "alerts.test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    # every alert has a firing case and a quiet case in the unit tests
    cases = yaml.safe_load((HERE / "alerts.test.yaml").read_text())["tests"]
    for alert in alerts():
        runs = [t for c in cases for t in c["alert_rule_test"] if t["alertname"] == alert["alert"]]
        assert any(t["exp_alerts"] for t in runs), f"{alert['alert']}: no firing case"
        assert any(not t["exp_alerts"] for t in runs) or alert["alert"].endswith("Expiring"), \
            f"{alert['alert']}: no quiet case"


def test_every_alert_has_a_runbook_section() -> None:
    headings = {m.group(1) for m in re.finditer(r"^## (\S+)$", RUNBOOK.read_text(), re.M)}
    for alert in alerts():
        name = alert["alert"]
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"
        assert name in headings, f"docs/runbook.md has no section '## {name}'"
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    section = RUNBOOK.read_text().split("\n## ")[1:]
    for text in section:
        for part in ("**Means.**", "**Confirm.**", "**Do.**"):
            assert part in text, f"runbook section {text.splitlines()[0]} lacks {part}"


def test_dashboard_configmap() -> None:
    assert subprocess.run([sys.executable, str(HERE / "gen_dashboard.py"), "--check"]).returncode == 0, \
        "helm/smtpbind/files/dashboard.json is not what tests/helm/gen_dashboard.py writes"
    (cm,) = [o for o in of_kind(render(monitoring_values()), "ConfigMap")
             if o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert cm["metadata"]["namespace"] == "monitoring"
    board = json.loads(cm["data"]["smtpbind.json"])
    assert board == gen_dashboard.dashboard()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Messages", "Rejections", "Upstream", "Credential, policy and readiness",
                    "Tokens (XOAUTH2)", "Sending rate", "Admission webhook"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert re.search(r"\bsmtpbind_[a-z_]+", target["expr"]), target


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels, matchExpressions) against labels."""
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        op, key, values = e["operator"], e["key"], e.get("values", [])
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
    return True


def test_the_podmonitor_selects_chart_managed_and_injected_pods() -> None:
    import test_webhook_chart as w

    values = copy.deepcopy(w.VALUES)
    values["metrics"] = {"podMonitor": {"enabled": True}}
    objs = w.render(values)
    (monitor,) = of_kind(objs, "PodMonitor")
    spec = monitor["spec"]
    namespaces = set(spec["namespaceSelector"]["matchNames"])
    # chart-managed: the tenant Deployments of the release
    deploys = [d for d in of_kind(objs, "Deployment")
               if d["metadata"]["labels"].get("app.kubernetes.io/component") == "tenant"]
    assert deploys
    for d in deploys:
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels["smtpbind.dev/tenant"] == d["metadata"]["labels"]["smtpbind/tenant"]
        assert selects(spec["selector"], labels), labels
        assert w.NAMESPACE in namespaces
    # injected: a pod as /mutate patched it, in a webhook tenant's namespace
    request, _ = w.golden("mutate-inject")
    _, pod = next(p for p in w.patched_pods() if p[0] == "mutate-inject")
    assert pod["metadata"]["labels"]["smtpbind.dev/tenant"] == "acme"
    assert selects(spec["selector"], pod["metadata"]["labels"])
    assert request["request"]["namespace"] in namespaces
    ports = [p["name"] for c in pod["spec"]["initContainers"] for p in c.get("ports", [])]
    assert spec["podMetricsEndpoints"][0]["port"] in ports
    # and the mailer pod before injection is not selected
    assert not selects(spec["selector"], request["request"]["object"]["metadata"].get("labels", {}))
    # webhook mode alone (no chart-managed tenants) still renders it
    values["tenants"] = []
    assert of_kind(w.render(values), "PodMonitor")
