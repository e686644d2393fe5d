"""The chart's PrometheusRule with the real promtool: syntax (`check rules`) and behaviour (`test rules`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from harness import missing_tool
from harness.cluster import REPO, k8s_bin_dir

CHART = REPO / "charts" / "sam-operator"
HERE = Path(__file__).parent


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        missing_tool("promtool missing (apt-get install prometheus; hack/setup.sh does it)")
    return path


def rendered_rules(**sets: str) -> dict[str, Any]:
    """The PrometheusRule's spec (a plain Prometheus rules file) as the chart renders it for release 'rel'."""
    helm = k8s_bin_dir() / "helm"
    if not helm.exists():
        missing_tool("helm not built (hack/build-tools.sh)")
    args = [
        str(helm),
        "template",
        "rel",
        str(CHART),
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    spec: dict[str, Any] = yaml.safe_load(out)["spec"]
    return spec


def write_rules(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rendered_rules()))
    return path


def test_promtool_check_rules_accepts_the_rendered_alerts(tmp_path: Path) -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(write_rules(tmp_path))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_of_every_alert_pass(tmp_path: Path) -> None:
    write_rules(tmp_path)
    shutil.copy(HERE / "rules-test.yaml", tmp_path / "rules-test.yaml")
    proc = subprocess.run(
        [promtool(), "test", "rules", "rules-test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    alerts = {r["alert"] for g in rendered_rules()["groups"] for r in g["rules"]}
    tests = yaml.safe_load((HERE / "rules-test.yaml").read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t["alert_rule_test"] if a["exp_alerts"]}
    assert alerts - fired == set()
    assert {
        "SamModelNoReadyReplicas",
        "SamLatencyP95High",
        "SamCacheHitRatioCollapsed",
        "SamEncoderOverloaded",
        "SamEncoderErrors",
        "SamGatewayErrors",
        "SamOperatorReconcileErrors",
    } <= alerts


def test_thresholds_come_from_values() -> None:
    rules = {
        r["alert"]: r
        for g in rendered_rules(**{"metrics.prometheusRule.latencyP95Seconds": "3"})["groups"]
        for r in g["rules"]
    }
    assert rules["SamLatencyP95High"]["expr"].endswith("> 3")
