"""Release housekeeping (contract §12): one version for the binary and the
chart, the licence, the changelog, and the SBOM of the shipped binary."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def cargo_version() -> str:
    m = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert m
    return m.group(1)


def test_chart_version_and_app_version_are_the_binarys() -> None:
    chart = yaml.safe_load((ROOT / "helm" / "smtpbind" / "Chart.yaml").read_text())
    assert chart["version"] == cargo_version()
    assert chart["appVersion"] == cargo_version()
    values = yaml.safe_load((ROOT / "helm" / "smtpbind" / "values.yaml").read_text())
    assert values["image"]["tag"] in ("", cargo_version()), "image.tag pins another release"


def test_licence_and_changelog() -> None:
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    assert re.search(r'^license = "Apache-2.0"$', (ROOT / "Cargo.toml").read_text(), re.M)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{cargo_version()}]" in changelog


def test_sbom_of_the_shipped_binary(tmp_path: Path) -> None:
    out = subprocess.run([str(ROOT / "scripts" / "sbom.sh"), str(tmp_path)], capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    bom = json.loads(Path(out.stdout.strip()).read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
    assert bom["metadata"]["component"]["name"] == "smtpbind"
    assert bom["metadata"]["component"]["version"] == cargo_version()
    lock = {(p["name"], p["version"]) for p in _lock_packages()}
    components = {(c["name"], c["version"]) for c in bom["components"]}
    # what the binary links, at the locked versions ...
    for name in ("tokio", "rustls", "hyper", "serde_yaml", "metrics-exporter-prometheus", "base64"):
        assert any(n == name for n, _ in components), name
    assert components <= lock
    # ... and nothing that only tests or builds it
    for name in ("proptest", "tempfile"):
        assert not any(n == name for n, _ in components), name
    for c in bom["components"]:
        assert c["purl"].startswith(f"pkg:cargo/{c['name']}@{c['version']}")


def _lock_packages() -> list[dict[str, str]]:
    text = (ROOT / "Cargo.lock").read_text()
    return [{"name": m.group(1), "version": m.group(2)}
            for m in re.finditer(r'^name = "([^"]+)"\nversion = "([^"]+)"', text, re.M)]
