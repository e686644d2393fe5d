"""The chart's prometheus-adapter rules serve exactly the Pods metrics a rendered HPA asks for, and their
queries compute what the HPA expects: evaluated by promtool (Prometheus' own engine) on synthetic series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import missing_tool
from harness.cluster import REPO, k8s_bin_dir
from sam_operator.render.autoscaling import ADAPTER_METRICS, LATENCY_METRIC, QUEUE_DEPTH_METRIC

CHART = REPO / "charts" / "sam-operator"


def adapter_rules(*sets: str) -> list[dict[str, Any]]:
    helm = k8s_bin_dir() / "helm"
    if not helm.exists():
        missing_tool("helm not built (hack/build-tools.sh)")
    args = [str(helm), "template", "rel", str(CHART), "--show-only", "templates/prometheus-adapter.yaml"]
    for value in ("prometheusAdapter.rules.enabled=true", *sets):
        args += ["--set", value]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
    (configmap,) = [d for d in yaml.safe_load_all(out) if d]
    assert configmap["kind"] == "ConfigMap"
    rules: list[dict[str, Any]] = yaml.safe_load(configmap["data"]["config.yaml"])["rules"]
    return rules


def expand(rule: dict[str, Any], namespace: str, pods: list[str]) -> str:
    """The query the adapter sends for the pods of one HPA (its template with the HPA's selector filled in)."""
    series = rule["seriesQuery"].split("{")[0].strip("'")
    matchers = f'namespace="{namespace}",pod=~"{"|".join(pods)}"'
    query: str = rule["metricsQuery"]
    return query.replace("<<.Series>>", series).replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", "pod")


def test_the_rules_serve_exactly_the_metrics_the_hpa_asks_for() -> None:
    rules = adapter_rules()
    assert sorted(r["name"]["as"] for r in rules) == sorted(ADAPTER_METRICS)
    for rule in rules:
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}


def test_the_rules_are_off_unless_asked_for() -> None:
    helm = k8s_bin_dir() / "helm"
    if not helm.exists():
        missing_tool("helm not built (hack/build-tools.sh)")
    out = subprocess.run(
        [str(helm), "template", "rel", str(CHART)], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert "prometheus-adapter" not in out and "custom.metrics.k8s.io" not in out


@pytest.mark.parametrize("window", ["2m", "1m"])
def test_promtool_evaluates_the_queries_per_pod(tmp_path: Path, window: str) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        missing_tool("promtool missing (apt-get install prometheus; hack/setup.sh does it)")
    rules = {r["name"]["as"]: r for r in adapter_rules(f"prometheusAdapter.rules.rateWindow={window}")}
    pods = ["enc-a", "enc-b"]
    # enc-a: queue 3, one 0.5 s request a minute; enc-b: queue 5, idle; another namespace's pod must not count.
    series = [
        ('sam_inference_queue_depth{namespace="cvat",pod="enc-a"}', "3x10"),
        ('sam_inference_queue_depth{namespace="cvat",pod="enc-b"}', "5x10"),
        ('sam_inference_queue_depth{namespace="other",pod="enc-a"}', "100x10"),
        ('sam_inference_request_duration_seconds_sum{namespace="cvat",pod="enc-a"}', "0+0.5x10"),
        ('sam_inference_request_duration_seconds_count{namespace="cvat",pod="enc-a"}', "0+1x10"),
        ('sam_inference_request_duration_seconds_sum{namespace="cvat",pod="enc-b"}', "0x10"),
        ('sam_inference_request_duration_seconds_count{namespace="cvat",pod="enc-b"}', "0x10"),
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    {
                        "expr": expand(rules[QUEUE_DEPTH_METRIC], "cvat", pods),
                        "eval_time": "6m",
                        "exp_samples": [
                            {"labels": '{pod="enc-a"}', "value": 3},
                            {"labels": '{pod="enc-b"}', "value": 5},
                        ],
                    },
                    {
                        "expr": expand(rules[LATENCY_METRIC], "cvat", pods),
                        "eval_time": "6m",
                        # enc-b served nothing: 0, not NaN (a NaN would make the HPA drop the pod's metric).
                        "exp_samples": [
                            {"labels": '{pod="enc-a"}', "value": 0.5},
                            {"labels": '{pod="enc-b"}', "value": 0},
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "adapter-test.yaml"
    path.write_text(yaml.safe_dump(tests))
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
