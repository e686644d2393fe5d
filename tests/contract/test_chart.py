"""The Helm chart without a cluster: CRD copy, documented values, schema, lint and every ci/ scenario rendered.

Uses the real Helm binary of the local toolchain (hack/build-tools.sh); the helm-based tests skip where it is
missing. The install/upgrade/test/uninstall cycle on a real API server is in tests/integration/chart/.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from harness.cluster import REPO
from harness.helm import CHART, helm
from sam_gateway.settings import GatewaySettings
from sam_operator.settings import OperatorSettings

SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


@cache
def render(values_file: str | None = None, *sets: str) -> tuple[dict[str, Any], ...]:
    args = ["template", "rel", str(CHART), "--namespace", "sam-system"]
    if values_file:
        args += ["-f", values_file]
    for s in sets:
        args += ["--set", s]
    out = helm(*args).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# ---------------------------------------------------------------------------------------------- CRD copy
def test_chart_crd_is_a_byte_identical_copy_of_the_source() -> None:
    source = (REPO / "crds" / "sammodels.yaml").read_bytes()
    copy_ = (CHART / "crds" / "sammodels.yaml").read_bytes()
    assert copy_ == source, "charts/sam-operator/crds/sammodels.yaml drifted: run hack/sync-crds.sh"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["sammodels.yaml"]


def test_sync_script_check_mode_agrees() -> None:
    proc = subprocess.run(["bash", str(REPO / "hack" / "sync-crds.sh"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------ values docs
def _schema_paths(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, sub in (schema.get("properties") or {}).items():
        if key == "global":
            continue
        paths.append((*prefix, key))
        if sub.get("additionalProperties") is False:  # chart-defined structure; others are free-form values
            paths += _schema_paths(sub, (*prefix, key))
    return paths


def _key_lines() -> dict[tuple[str, ...], int]:
    """Line (0-based) of every mapping key in values.yaml, by path."""
    root = yaml.compose((CHART / "values.yaml").read_text())
    found: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                found[(*path, key.value)] = key.start_mark.line
                walk(value, (*path, key.value))

    walk(root, ())
    return found


def test_every_chart_value_is_documented_with_a_dash_dash_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = _key_lines()
    undocumented = []
    for path in _schema_paths(SCHEMA):
        assert path in keys, f"schema property {'.'.join(path)} is missing from values.yaml"
        i = keys[path] - 1
        block = []
        while i >= 0 and lines[i].strip().startswith("#"):
            block.append(lines[i].strip())
            i -= 1
        if not any(line.startswith("# --") for line in block):
            undocumented.append(".".join(path))
    assert not undocumented, f"values without a '# --' description: {undocumented}"


def test_every_values_key_is_known_to_the_schema() -> None:
    """A key in values.yaml the schema does not describe would be silently free-form (typos pass)."""
    free_form = {path for path in _schema_paths(SCHEMA)}
    for path in _key_lines():
        parents = [path[:i] for i in range(1, len(path) + 1)]
        assert any(p in free_form for p in parents), f"values.yaml key {'.'.join(path)} not in values.schema.json"


# ---------------------------------------------------------------------------------------------- schema
@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=lambda p: p.name if p else "values.yaml")
def test_values_and_every_ci_scenario_validate_against_the_schema(scenario: Path | None) -> None:
    values = DEFAULTS if scenario is None else merge(DEFAULTS, yaml.safe_load(scenario.read_text()) or {})
    jsonschema.validate(values, SCHEMA)


BAD_VALUES = [
    ("gateway.port=http", {"gateway": {"port": "http"}}),
    ("operator.replicaCount=2", {"operator": {"replicaCount": 2}}),
    ("rbac.scope=everything", {"rbac": {"scope": "everything"}}),
    ("rbac.create=yes", {"rbac": {"create": "yes"}}),
    ("operator.metricsPort=70000", {"operator": {"metricsPort": 70000}}),
    ("gateway.upstreamTimeoutSeconds=150", {"gateway": {"upstreamTimeoutSeconds": 150}}),
    ("metrics.serviceMonitor.interval=soon", {"metrics": {"serviceMonitor": {"interval": "soon"}}}),
    ("dashboards.labels.grafana_dashboard=1", {"dashboards": {"labels": {"grafana_dashboard": 1}}}),
    ("operator.logFormat=xml", {"operator": {"logFormat": "xml"}}),
    ("gatway.enabled=true", {"gatway": {"enabled": True}}),
    ("operator.resources.requests=1", {"operator": {"resources": {"requests": 1}}}),
]


@pytest.mark.parametrize(("label", "override"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_schema_rejects_wrong_types(label: str, override: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merge(DEFAULTS, override), SCHEMA)
    values = tmp_path / "bad.yaml"
    values.write_text(yaml.safe_dump(override))
    proc = helm("template", "rel", str(CHART), "-f", str(values), check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr, (label, proc.stderr)


# ------------------------------------------------------------------------------------------ lint, render
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_helm_lint_passes_strict_for_every_scenario(scenario: Path) -> None:
    proc = helm("lint", "--strict", str(CHART), "-f", str(scenario), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _settings_env(settings_cls: type, prefix: str) -> set[str]:
    return {prefix + name.upper() for name in settings_cls.model_fields}  # type: ignore[attr-defined]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_renders_restricted_probed_workloads_with_known_settings(scenario: Path) -> None:
    docs = render(str(scenario))
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in of_kind(docs, "Deployment")}
    assert "operator" in deployments
    # POD_ID is kopf's own: its identity for peering and writes (the pod name), so that no passwd lookup is needed.
    known = {
        "operator": _settings_env(OperatorSettings, "SAM_OPERATOR_") | {"POD_ID"},
        "gateway": _settings_env(GatewaySettings, "SAM_GATEWAY_"),
        "prometheus-adapter": set(),  # configured by flags only
    }
    for component, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        (container,) = pod["containers"]
        for key, value in RESTRICTED_CONTAINER.items():
            assert container["securityContext"][key] == value
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] in ("/healthz", "/readyz")
        # Every env var the chart sets is a real settings field (a typo would be silently ignored).
        names = {e["name"] for e in container.get("env", [])}
        assert names <= known[component], names - known[component]
        # The selector is the immutable subset of the pod labels.
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_operator_env_parses_into_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values the chart renders are what OperatorSettings/GatewaySettings accept (JSON lists, dicts, ints)."""
    for scenario in SCENARIOS:
        docs = render(str(scenario))
        for deployment in of_kind(docs, "Deployment"):
            component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
            if component not in ("operator", "gateway"):
                continue
            env = {
                e["name"]: e["value"]
                for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                if "value" in e
            }
            with monkeypatch.context() as m:
                for name, value in env.items():
                    m.setenv(name, value)
                settings = OperatorSettings() if component == "operator" else GatewaySettings()
            if component == "operator":
                assert settings.gateway_pod_labels["app.kubernetes.io/component"] == "gateway"  # type: ignore[union-attr]


def test_encoder_network_policy_admits_the_chart_gateway_pods() -> None:
    docs = render(None)
    operator = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-sam-operator")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    admitted = json.loads(env["SAM_OPERATOR_GATEWAY_POD_LABELS"])
    gateway = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "rel-sam-operator-gateway")
    assert admitted.items() <= gateway["spec"]["template"]["metadata"]["labels"].items()


def _rules(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_rbac_is_least_privilege(scenario: Path) -> None:
    rules = _rules(render(str(scenario)))
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not {
            "secrets",
            "configmaps",
            "nodes",
            "clusterroles",
            "roles",
            "rolebindings",
            "clusterrolebindings",
            "serviceaccounts",
        } & set(rule["resources"]), rule
        assert not {"escalate", "bind", "impersonate", "deletecollection", "update"} & set(rule["verbs"]), rule
    text = helm("template", "rel", str(CHART), "-f", str(scenario), "--show-only", "templates/rbac.yaml").stdout
    # Every rule carries a justification comment right above it.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*- apiGroups:", line):
            assert lines[i - 1].strip().startswith("#"), f"rule without a justification comment: {line}"


def test_cluster_scope_uses_cluster_roles_and_namespaced_scope_only_roles() -> None:
    cluster = render(None)
    assert len(of_kind(cluster, "ClusterRole")) == 2 and not of_kind(cluster, "Role")
    namespaced = render(str(CHART / "ci" / "namespaced-rbac-values.yaml"))
    assert not of_kind(namespaced, "ClusterRole") and not of_kind(namespaced, "ClusterRoleBinding")
    roles = of_kind(namespaced, "Role")
    assert sorted({r["metadata"]["namespace"] for r in roles}) == ["team-a", "team-b"]
    for binding in of_kind(namespaced, "RoleBinding"):
        assert binding["subjects"][0]["namespace"] == "sam-system"
    operator = next(
        d
        for d in of_kind(namespaced, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    )
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["SAM_OPERATOR_NAMESPACES"]) == ["team-a", "team-b"]


def test_monitoring_scenario_renders_service_monitors_and_rules() -> None:
    docs = render(str(CHART / "ci" / "monitoring-values.yaml"))
    monitors = of_kind(docs, "ServiceMonitor")
    assert sorted(m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors) == [
        "encoder",
        "gateway",
        "operator",
    ]
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (rule,) = of_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "SamModelNoReadyReplicas",
        "SamLatencyP95High",
        "SamCacheHitRatioCollapsed",
        "SamEncoderOverloaded",
        "SamGatewayErrors",
        "SamOperatorReconcileErrors",
    } <= alerts
    assert not of_kind(render(None), "ServiceMonitor") and not of_kind(render(None), "PrometheusRule")


def test_gateway_service_exposes_dashboard_port_and_direct_mode_range() -> None:
    docs = render(None)
    service = next(d for d in of_kind(docs, "Service") if d["metadata"]["name"] == "rel-sam-operator-gateway")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports["http"] == 8070
    base, size = DEFAULTS["operator"]["directPorts"]["base"], DEFAULTS["operator"]["directPorts"]["rangeSize"]
    assert {v for k, v in ports.items() if k.startswith("direct-")} == set(range(base, base + size))
    off = render(str(CHART / "ci" / "gateway-auth-values.yaml"))
    service = next(d for d in of_kind(off, "Service") if d["metadata"]["name"] == "sam-gateway")
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


# ---------------------------------------------------------------------------------------------- dashboards
def architecture_metrics() -> set[str]:
    """Metric names from docs/architecture.md's Metrics section (the contract)."""
    text = (REPO / "docs" / "architecture.md").read_text().split("## Metrics", 1)[1]
    names: set[str] = set()
    for paragraph in text.split("\n\n"):
        prefix = re.search(r"\(`(sam_\w+)_\*`\)", paragraph)
        if not prefix:
            continue
        for name in re.findall(r"`([a-z_]+)(?:\{[^`]*\})?`", paragraph):
            if not name.startswith("sam_"):
                names.add(f"{prefix.group(1)}_{name}")
    return names


def dashboard_exprs() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((path.name, panel["title"], target["expr"]))
    return out


def metric_names_in(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\b(sam_[a-z_]+)", expr)}


def test_every_dashboard_panel_queries_only_contract_metrics() -> None:
    contract = architecture_metrics()
    assert "sam_inference_cache_hits_total" in contract and "sam_operator_writes_total" in contract
    exprs = dashboard_exprs()
    assert exprs
    used: set[str] = set()
    for dashboard, title, expr in exprs:
        names = metric_names_in(expr)
        assert names, (dashboard, title, expr)
        assert names <= contract, (dashboard, title, names - contract)
        used |= names
    # Every contract metric is on some dashboard.
    assert contract - used == set(), contract - used


def test_dashboards_ship_as_configmaps_for_the_grafana_sidecar() -> None:
    docs = render(None)
    maps = [d for d in of_kind(docs, "ConfigMap") if "dashboard" in d["metadata"]["name"]]
    assert len(maps) == 3
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        (key, body) = next(iter(cm["data"].items()))
        dashboard = json.loads(body)
        assert dashboard["uid"] and dashboard["panels"], key
