"""The chart's PrometheusRule with the real promtool: syntax (`check rules`) and behaviour (`test rules`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from harness import missing_tool
from harness.helm import rendered_rules, write_rules

HERE = Path(__file__).parent


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        missing_tool("promtool missing (apt-get install prometheus; hack/setup.sh does it)")
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
