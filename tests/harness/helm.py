"""helm, as the tests run it: the binary built by hack/build-tools.sh, the chart, and its alert rules rendered."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness import missing_tool
from harness.cluster import REPO, Cluster, k8s_bin_dir

__all__ = ["CHART", "helm", "helm_bin", "rendered_rules", "write_rules"]

CHART = REPO / "charts" / "sam-operator"


def helm_bin() -> str:
    """The helm binary; skips (fails in CI) when it was not built."""
    path = k8s_bin_dir() / "helm"
    if not path.exists():
        missing_tool("helm not built (hack/build-tools.sh)")
    return str(path)


def helm(
    *args: str, cluster: Cluster | None = None, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run helm (against ``cluster`` when given); with ``check``, a failure raises with helm's output."""
    command = [cluster.helm_path, "--kubeconfig", str(cluster.kubeconfig)] if cluster else [helm_bin()]
    proc = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def rendered_rules(**sets: str) -> dict[str, Any]:
    """The spec of the chart's PrometheusRule (release "rel"), with ``--set key=value`` for each of ``sets``."""
    args = ["template", "rel", str(CHART), "--set", "metrics.prometheusRule.enabled=true"]
    args += ["--show-only", "templates/prometheusrule.yaml"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    spec: dict[str, Any] = yaml.safe_load(helm(*args).stdout)["spec"]
    return spec


def write_rules(directory: Path, **sets: str) -> Path:
    """``rendered_rules`` as a plain Prometheus rules file, ``directory/rules.yaml``."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rendered_rules(**sets)))
    return path
