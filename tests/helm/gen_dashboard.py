"""Writes helm/smtpbind/files/dashboard.json, the Grafana dashboard the chart
ships (grafanaDashboard.enabled): one row per concern of contract §12.

    python3 tests/helm/gen_dashboard.py          # rewrite the file
    python3 tests/helm/gen_dashboard.py --check  # exit 1 if it differs

tests/helm/test_monitoring.py runs --check, and checks that every metric the
dashboard queries is exported by a running sidecar or webhook.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[2] / "helm" / "smtpbind" / "files" / "dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "[$__rate_interval]"


def sel(extra: str = "") -> str:
    return '{tenant=~"$tenant"' + ("," + extra if extra else "") + "}"


class Board:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0

    def _id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str, *panels: tuple[str, list[tuple[str, str]], str, str, str]) -> None:
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1
        width = 24 // len(panels)
        for i, (title_, targets, unit, kind, desc) in enumerate(panels):
            panel = {
                "type": kind, "title": title_, "id": self._id(), "datasource": DS,
                "gridPos": {"h": 8, "w": width, "x": i * width, "y": self.y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": chr(65 + n), "expr": e, "legendFormat": l, "datasource": DS}
                            for n, (e, l) in enumerate(targets)],
            }
            if desc:
                panel["description"] = desc
            self.panels.append(panel)
        self.y += 8


def p(title: str, targets: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries",
      desc: str = "") -> tuple[str, list[tuple[str, str]], str, str, str]:
    return (title, targets, unit, kind, desc)


def dashboard() -> dict[str, Any]:
    b = Board()
    b.row("Messages",
          p("Messages by outcome",
            [(f"sum by (tenant, result) (rate(smtpbind_messages_total{sel()}{RI}))", "{{tenant}} {{result}}")],
            "ops", desc="relayed: the upstream answered 250 for that message; rejected: by the policy; "
                        "failed: the upstream refused it or broke"),
          p("Message bytes relayed",
            [(f"sum by (tenant) (rate(smtpbind_message_bytes_total{sel()}{RI}))", "{{tenant}}")], "Bps"),
          p("Sessions",
            [(f"sum by (tenant) (smtpbind_active_sessions{sel()})", "{{tenant}} open"),
             (f"sum by (tenant, result) (rate(smtpbind_sessions_total{sel()}{RI}))", "{{tenant}} ended {{result}}")]))
    mismatch = sel('reason="identity_mismatch"')
    b.row("Rejections",
          p("Rejections by reason",
            [(f"sum by (tenant, reason) (rate(smtpbind_rejections_total{sel()}{RI}))", "{{tenant}} {{reason}}")],
            "ops"),
          p("Identity mismatches (24h)",
            [(f"sum by (tenant) (increase(smtpbind_rejections_total{mismatch}[24h]))", "{{tenant}}")],
            "short", "stat", "A mailer presented an identity its pod's policy does not accept: the incident's "
                             "signature (docs/runbook.md#smtpbindidentitymismatch)"))
    q = "sum by (le, tenant) (rate(smtpbind_upstream_connect_seconds_bucket" + sel() + RI + "))"
    b.row("Upstream",
          p("Connect time (TCP, TLS, EHLO, AUTH)",
            [(f"histogram_quantile(0.5, {q})", "{{tenant}} p50"), (f"histogram_quantile(0.99, {q})", "{{tenant}} p99")],
            "s"),
          p("Connections opened and reused",
            [(f"sum by (tenant) (rate(smtpbind_upstream_reuse_total{sel()}{RI}))", "{{tenant}} reused"),
             (f"sum by (tenant) (rate(smtpbind_upstream_connect_seconds_count{sel()}{RI}))", "{{tenant}} opened")],
            "ops"),
          p("Open connections and AUTH failures",
            [(f"sum by (tenant) (smtpbind_upstream_connections{sel()})", "{{tenant}} open"),
             (f"sum by (tenant) (rate(smtpbind_upstream_auth_failures_total{sel()}{RI}))", "{{tenant}} AUTH failures/s")]))
    b.row("Credential, policy and readiness",
          p("Pods ready",
            [(f"sum by (tenant) (smtpbind_ready{sel()})", "{{tenant}} ready"),
             (f"count by (tenant) (smtpbind_ready{sel()})", "{{tenant}} pods")]),
          p("Credentials in force (pins per tenant)",
            [(f"count by (tenant, pin) (smtpbind_credential_info{sel()})", "{{tenant}} {{pin}}")],
            desc="More than one pin for a tenant: a rotation in progress (docs/runbook.md#smtpbindrotationunfinished)"),
          p("Policies in force",
            [(f"count by (tenant, sha256) (smtpbind_policy_info{sel()})", "{{tenant}} {{sha256}}")]))
    b.row("Tokens (XOAUTH2)",
          p("Token lifetime left",
            [(f"min by (tenant) (smtpbind_oauth_token_expiry_seconds{sel()})", "{{tenant}}")], "s"),
          p("Token refreshes (1h)",
            [(f"sum by (tenant, result) (increase(smtpbind_oauth_token_refreshes_total{sel()}[1h]))",
              "{{tenant}} {{result}}")]))
    b.row("Sending rate",
          p("MAILs over limits.rate",
            [(f"sum by (tenant, result) (rate(smtpbind_rate_limited_total{sel()}{RI}))", "{{tenant}} {{result}}")],
            "ops", desc="delayed: waited and went on; refused: answered 451 4.7.0 after max_wait"))
    client_tls = sel('use="client_tls"')
    b.row("Admission webhook",
          p("Requests by endpoint and result",
            [(f"sum by (endpoint, result) (rate(smtpbind_webhook_requests_total{RI}))", "{{endpoint}} {{result}}")],
            "reqps"),
          p("Latency p99",
            [("histogram_quantile(0.99, sum by (le, endpoint) "
              f"(rate(smtpbind_webhook_request_duration_seconds_bucket{RI})))", "{{endpoint}}")], "s"),
          p("Certificates: time left",
            [("min(smtpbind_webhook_certificate_expiry_seconds)", "webhook"),
             (f"min by (tenant) (smtpbind_certificate_expiry_seconds{client_tls})", "{{tenant}} client TLS")], "s"))
    tenant_var = {
        "name": "tenant", "type": "query", "label": "Tenant", "datasource": DS,
        "query": {"query": "label_values(smtpbind_build_info, tenant)", "refId": "tenant"},
        "definition": "label_values(smtpbind_build_info, tenant)",
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    }
    return {
        "title": "smtpbind", "uid": "smtpbind", "schemaVersion": 39, "version": 1, "editable": False,
        "tags": ["smtpbind", "smtp"], "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
        "description": "smtpbind sidecars and admission webhook (contract §12). Alerts: docs/runbook.md.",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            tenant_var,
        ]},
        "panels": b.panels,
    }


def text() -> str:
    return json.dumps(dashboard(), indent=1) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if OUT.read_text() == text() else 1)
    OUT.write_text(text())
